"""``floe local``: a cluster of broker processes on this machine over one object store.

``up`` starts and stops the brokers (``processes``, ``brokers``, ``ports``,
``startup_log``). With ``--autoscale``, ``autoscale`` runs the local scaling
loop instead: broker processes (``fleet``), an HPA's arithmetic (``hpa``,
flags in ``flags``) and the operator's rebalance core
(``floe_operator.balancing``), reading load from a local Prometheus
(``prometheus``) or the brokers' own ``/metrics``.
"""
