"""``floe local up --autoscale``: the operator's scaling loop for broker processes.

``hpa`` is the Kubernetes HPA's arithmetic (pure); ``autoscaler`` is the loop
that measures load (a local Prometheus, or the brokers' ``/metrics``), runs
the same balancer as the operator (``floe_operator.planner``) and starts or
drains broker processes. The broker's ``local`` command imports this lazily.
"""
