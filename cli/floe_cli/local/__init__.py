"""``floe local``: the same system as local processes over a local object store.

With ``--autoscale``, ``autoscale`` runs the local scaling loop: broker
processes (``fleet``), an HPA's arithmetic (``hpa``, flags in ``flags``) and
the operator's rebalance core (``floe_operator.balancing``), reading load from
a local Prometheus (``prometheus``) or the brokers' own ``/metrics``.
"""
