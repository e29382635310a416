"""Operator-wide settings, read once from ``FLOE_OPERATOR_*`` environment variables.

The Helm chart sets these on the operator Deployment; ``floe operator run``
flags override them. One frozen object is passed around instead of reading
the environment in many places, so tests can build one directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BROKER_IMAGE = "ghcr.io/floe-dev/floe:0.1.0"
DEFAULT_BROKER_ADMIN_URL = "http://{service}.{namespace}.svc.{cluster_domain}:{port}"
DEFAULT_KAFKA_BOOTSTRAP = "{service}.{namespace}.svc.{cluster_domain}:{port}"


@dataclass(frozen=True)
class OperatorConfig:
    """Settings that are the operator's, not any one StreamCluster's."""

    # Image used when a StreamCluster has no spec.image. The chart sets it to
    # the operator's own image: one image carries both `floe broker` and
    # `floe operator`, so broker and operator versions move together.
    broker_image: str = DEFAULT_BROKER_IMAGE
    cluster_domain: str = "cluster.local"
    # Empty means every namespace.
    namespaces: tuple[str, ...] = ()
    log_format: str = "json"
    log_level: str = "info"
    # Retry delay while waiting for something a person must fix (a Secret).
    retry_delay_seconds: float = 30.0
    # Where the rebalance loop reaches a cluster's admin API. Placeholders:
    # {service} (the bootstrap Service), {namespace}, {cluster_domain}, {port}
    # (spec.listener.adminPort). Tests and out-of-cluster runs point it elsewhere.
    broker_admin_url: str = DEFAULT_BROKER_ADMIN_URL
    # How often each StreamTopic's Kafka topic is compared with its spec and put
    # back (someone ran kafka-configs --alter); one describe per topic per period.
    topic_resync_seconds: float = 60.0
    # Where the operator's own Kafka admin client (StreamTopics, StreamUsers)
    # bootstraps; placeholders as for broker_admin_url, {port} being the
    # listener's. What applications are given is always the bootstrap Service.
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP

    def admin_url(self, *, service: str, namespace: str, port: int) -> str:
        """The admin base URL of one cluster, from :attr:`broker_admin_url`."""
        return self.broker_admin_url.format(
            service=service, namespace=namespace, cluster_domain=self.cluster_domain, port=port
        )

    def kafka_bootstrap_for(self, *, service: str, namespace: str, port: int) -> str:
        """The operator's Kafka bootstrap address for one listener, from :attr:`kafka_bootstrap`."""
        return self.kafka_bootstrap.format(
            service=service, namespace=namespace, cluster_domain=self.cluster_domain, port=port
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read ``FLOE_OPERATOR_*``; ``env`` is for tests (None = os.environ)."""
        env = os.environ if env is None else env
        namespaces = tuple(ns.strip() for ns in env.get("FLOE_OPERATOR_NAMESPACES", "").split(",") if ns.strip())
        log_format = env.get("FLOE_OPERATOR_LOG_FORMAT", "json")
        if log_format not in ("json", "console"):
            raise ValueError(f"FLOE_OPERATOR_LOG_FORMAT must be json or console, not {log_format!r}")
        return cls(
            broker_image=env.get("FLOE_OPERATOR_BROKER_IMAGE", DEFAULT_BROKER_IMAGE),
            cluster_domain=env.get("FLOE_OPERATOR_CLUSTER_DOMAIN", "cluster.local"),
            namespaces=namespaces,
            log_format=log_format,
            log_level=env.get("FLOE_OPERATOR_LOG_LEVEL", "info"),
            retry_delay_seconds=float(env.get("FLOE_OPERATOR_RETRY_DELAY_SECONDS", "30")),
            broker_admin_url=env.get("FLOE_OPERATOR_BROKER_ADMIN_URL", DEFAULT_BROKER_ADMIN_URL),
            topic_resync_seconds=float(env.get("FLOE_OPERATOR_TOPIC_RESYNC_SECONDS", "60")),
            kafka_bootstrap=env.get("FLOE_OPERATOR_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP),
        )
