"""Broker configuration: one frozen object, from flags or ``FLOE_*`` variables.

Every flag ``--foo-bar`` can also be given as ``FLOE_FOO_BAR``; a flag on the
command line wins over the variable. The operator relies on that rule to pass
``spec.config`` through a ConfigMap.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from typing import Any


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def authorizer(value: str) -> str:
    if value.strip().lower() not in AUTHORIZERS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(sorted(AUTHORIZERS))}, got {value!r}")
    return value.strip().lower()


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)


# --authorizer values: off (every request allowed, as without ACLs) or on / simple (Kafka's ACL rules)
AUTHORIZERS = {"off": False, "none": False, "on": True, "simple": True}


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    storage: str
    cluster: str = "floe"
    listen: tuple[str, int] = ("0.0.0.0", 9092)
    advertise: tuple[str, int] | None = None
    http: tuple[str, int] = ("0.0.0.0", 9644)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = False
    fsync: bool = True
    log_format: str = "console"
    log_level: str = "info"
    # write path
    flush_interval_ms: int = 10
    flush_bytes: int = 8 * 1024 * 1024
    max_pending_bytes: int = 256 * 1024 * 1024
    max_inflight_flushes: int = 4
    # topics
    auto_create_topics: bool = True
    default_partitions: int = 1
    max_message_bytes: int = 1024 * 1024 + 12 * 1024
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    # connections
    socket_request_max_bytes: int = 100 * 1024 * 1024
    max_inflight_requests: int = 64
    idle_timeout_s: float = 600.0
    # read path
    memory_cache_bytes: int = 256 * 1024 * 1024
    block_cache_bytes: int = 256 * 1024 * 1024
    block_size: int = 1024 * 1024
    # compaction and checkpoints
    compact_after_bytes: int = 64 * 1024 * 1024
    compact_after_ms: int = 60_000
    checkpoint_interval_ms: int = 5_000
    # cluster
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_000
    wal_gc_grace_ms: int = 60_000
    wal_gc_interval_ms: int = 30_000
    per_partition_metrics: bool = True
    # consumer groups
    offsets_topic_partitions: int = 16
    group_min_session_timeout_ms: int = 1_000
    group_max_session_timeout_ms: int = 1_800_000
    group_initial_rebalance_delay_ms: int = 500
    group_max_size: int = 1000
    offset_metadata_max_bytes: int = 4096
    offsets_snapshot_records: int = 10_000
    # authorization (docs/architecture.md#authorization-and-quotas)
    authorizer: str = "off"
    super_users: str = ""
    allow_everyone_if_no_acl_found: bool = False
    # TEST ONLY, never in production: the principal is User:<client id> (until SASL names it)
    insecure_principal_from_client_id: bool = False
    # quotas: how long a window the byte rates are measured over
    quota_window_s: float = 1.0
    quota_windows: int = 11

    def __post_init__(self) -> None:
        if self.authorizer not in AUTHORIZERS:
            raise ValueError(f"--authorizer must be one of {sorted(AUTHORIZERS)}, got {self.authorizer!r}")

    @property
    def authorizer_enabled(self) -> bool:
        return AUTHORIZERS[self.authorizer]

    @property
    def advertised(self) -> tuple[str, int]:
        if self.advertise is not None:
            return self.advertise
        host, port = self.listen
        return ("127.0.0.1" if host in {"0.0.0.0", "", "::"} else host, port)


_HELP = {
    "storage": "object store URL: file:///path or s3://bucket/prefix",
    "cluster": "cluster name; all state lives under <prefix>/<cluster>/",
    "listen": "Kafka listener HOST:PORT",
    "advertise": "HOST:PORT clients should connect to (default: the listener)",
    "http": "admin HTTP HOST:PORT (/healthz, /readyz, /metrics, /v1/...)",
    "s3_endpoint": "S3 endpoint URL (MinIO, Ceph RGW, CubeFS); default AWS",
    "flush_interval_ms": "group-commit interval: max time a produce waits for its WAL PUT",
    "flush_bytes": "flush the WAL as soon as this many bytes are pending",
    "offsets_topic_partitions": "partitions of __consumer_offsets (fixed once the topic exists)",
    "offsets_snapshot_records": "rewrite live offsets and trim __consumer_offsets after this many records",
    "group_initial_rebalance_delay_ms": "wait this long for more members before a new group's first rebalance",
    "authorizer": "off (default: every request allowed) or on/simple: enforce ACLs",
    "super_users": "principals allowed everything, Kafka's syntax: User:admin;User:ops",
    "allow_everyone_if_no_acl_found": "with the authorizer on, allow a resource that has no ACL at all",
    "insecure_principal_from_client_id": "TEST ONLY: take the principal User:<client id> from the client",
    "quota_window_s": "length of one quota sample window",
    "quota_windows": "how many windows a client's byte rate is measured over",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; defaults come from FLOE_* variables, then the dataclass."""
    for f in fields(BrokerConfig):
        flag = "--" + f.name.replace("_", "-")
        env = "FLOE_" + f.name.upper()
        kind: Any
        if f.name in {"listen", "http"}:
            kind = host_port
        elif f.name == "advertise":
            kind = host_port
        elif f.name == "authorizer":
            kind = authorizer
        elif f.type in ("bool", bool):
            kind = _bool
        elif f.type in ("int", int):
            kind = int
        elif f.type in ("float", float):
            kind = float
        else:
            kind = str
        default = os.environ.get(env)
        parsed_default = kind(default) if default is not None else None
        parser.add_argument(
            flag,
            type=kind,
            default=parsed_default,
            required=f.name == "storage" and default is None,
            help=f"{_HELP.get(f.name, '')} (env {env})".strip(),
            nargs="?" if kind is _bool else None,
            const=True if kind is _bool else None,
        )


def from_namespace(ns: argparse.Namespace) -> BrokerConfig:
    values = {f.name: getattr(ns, f.name) for f in fields(BrokerConfig)}
    return BrokerConfig(**{k: v for k, v in values.items() if v is not None})
