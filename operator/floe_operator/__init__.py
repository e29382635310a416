"""The Floe Kubernetes operator: StreamCluster -> brokers, Services, HPA, PDB.

Layers (imports go one way): ``main`` (kopf handlers) -> ``reconcile`` ->
``manifests`` (pure builders), ``kube`` (API client) -> ``spec``, ``config``.
"""
