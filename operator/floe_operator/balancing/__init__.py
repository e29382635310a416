"""The rebalance core both scaling loops share: measure, decide, move leaders.

The Kubernetes loop (``floe_operator.reconcile.rebalance``, a kopf daemon)
and the local autoscaler (``floe local up --autoscale``, in ``floe_cli``)
differ only in how brokers are started and stopped (an HPA and pod deletion
costs there, processes here). Everything else is in this package, so a fix to
how load is read or when leaders move reaches both:

* ``load``: the typed snapshot of load and the per-partition load rule;
* ``prometheus`` and ``scrape``: the two readers of that snapshot (PromQL, or
  the brokers' own ``/metrics`` where no Prometheus runs);
* ``admin``: the brokers' admin API (read the cluster, move leaders);
* ``rounds``: the planner's input (with the one rule of what a *new* broker
  is), the policy decision and applying the moves.

Nothing here imports kopf or a Kubernetes client (an import-linter contract
checks it), so the local loop runs without either.
"""
