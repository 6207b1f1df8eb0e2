"""Where runs execute, behind one interface (backend: the Backend protocol, Run, the state words;
factory: which one runs here). This machine: local (the papermill runner and child-process runs),
machine (the backend over them), pool and kernel (warm kernels), template and notebooks/ (the
papermill template). Kubernetes: cluster/. The lab hub's service: hub (its client). Argo: argo."""
