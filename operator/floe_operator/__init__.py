"""The Floe Kubernetes operator: StreamCluster -> brokers, Services, HPA, PDB.

Layers (imports go one way): ``main`` (kopf handlers) -> ``reconcile`` ->
``manifests`` (pure builders), ``balancing`` (the rebalance core shared with
the local autoscaler: load readers, admin API client, rounds) -> ``planner``
(pure balancer and policy), ``kube`` (API client) -> ``spec``, ``config``.
"""
