"""labkit on a shared JupyterHub: a hub service holds the Kubernetes rights and submits for users.

* :mod:`~labkit.hub.service` - the service (``labkit hub-service``): tornado + JupyterHub's HubAuth;
* :mod:`~labkit.hub.bodies` - what a request may contain (parameters and profile names only);
* :mod:`~labkit.hub.informer` - one list + watch per kind serves every user's status;
* :mod:`~labkit.hub.client` - the notebook/CLI side: :class:`~labkit.hub.client.HubJobs`,
  the same interface as :class:`~labkit.cluster.jobs.ClusterJobs`, talking to the service.
"""
