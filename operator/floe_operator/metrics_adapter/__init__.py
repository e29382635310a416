"""Floe's metrics adapter: the HPA's metrics APIs answered from Prometheus.

A broker Deployment's HorizontalPodAutoscaler asks the API server for two
things: the ``Pods`` metric ``floe_broker_bytes_in_per_second`` (the custom
metrics API, ``custom.metrics.k8s.io/v1beta2``) and the pods' CPU (the
resource metrics API, ``metrics.k8s.io/v1beta1``, which the HPA needs for its
CPU target: with one metric unanswered it scales out but never in). Both are
registered as ``APIService`` objects that the aggregation layer proxies to
this server, which turns each request into one PromQL query against the
Prometheus that scrapes the brokers (labels ``namespace`` and ``pod``, as
Prometheus' Kubernetes pod discovery relabels them).

* :mod:`.answers` is pure: the PromQL for a request and the API objects for
  Prometheus' answer;
* :mod:`.server` is the HTTPS server (aiohttp): discovery documents, the two
  metric endpoints, TLS with the aggregator's client certificate checked
  against the cluster's request-header CA.

It stands in for prometheus-adapter with exactly the rules Floe needs
(``examples/prometheus-adapter-rules.yaml`` is the same metric for clusters
that already run prometheus-adapter); the chart installs it behind
``metricsAdapter.enabled``.
"""
