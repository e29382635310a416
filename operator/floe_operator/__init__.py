"""The Floe Kubernetes operator: StreamCluster -> brokers, Services, HPA, PDB.

Layers (imports go one way): ``main`` (kopf handlers) -> ``reconcile`` ->
``manifests`` (pure builders), ``planner`` (pure balancer and policy),
``prometheus`` (load), ``broker_client`` (admin API), ``kube`` (API client)
-> ``spec``, ``config``.
"""
