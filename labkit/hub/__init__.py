"""labkit on a shared JupyterHub: a hub service holds the Kubernetes rights and submits for users.

* :mod:`~labkit.hub.app` - the process (``labkit hub-service``); :mod:`~labkit.hub.service` - its state: watch caches,
  status reads (cached, or from the API while a cache is not current), cancellations;
* :mod:`~labkit.hub.handlers` - its HTTP API (tornado), errors converted at one place;
* :mod:`~labkit.hub.identity` - who is asking: the hub, asked afresh on every request;
* :mod:`~labkit.hub.fairness` - per-user limits and the pools one user cannot fill;
* :mod:`~labkit.hub.bodies` - what a request may contain (parameters and profile names only);
* :mod:`~labkit.hub.informer` - one list + watch per kind serves every user's status;
* :mod:`~labkit.runners.hub` - the notebook/CLI side: :class:`~labkit.runners.hub.HubJobs`,
  the same interface as :class:`~labkit.runners.cluster.jobs.ClusterJobs`, talking to the service.
"""
