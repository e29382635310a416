"""Broker configuration: one frozen object, from flags or ``FLOE_*`` variables.

Every flag ``--foo-bar`` can also be given as ``FLOE_FOO_BAR``; a flag on the
command line wins over the variable. The operator relies on that rule to pass
``spec.config`` through a ConfigMap.

The WAL flush settings come from a *flush profile* unless set one by one
(docs/architecture.md#write-path). A PUT costs the same whether it carries
1 KiB or 8 MiB, so on an object store that bills per request (``s3://``) the
default profile is ``cost``: a produce waits up to 250 ms for its group
commit, and a busy broker flushes by size. On ``file://`` and ``memory://``
requests are free and the default is ``latency`` (10 ms).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

# The secrets themselves may come from these variables; there are no flags for them, so
# they never show up in a process list.
CLUSTER_SECRET_ENV = "FLOE_CLUSTER_SECRET"
ADMIN_TOKEN_ENV = "FLOE_ADMIN_TOKEN"


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
class FlushProfile:
    """Defaults of the WAL group commit for one trade-off between latency and PUTs."""

    name: str
    interval_ms: int  # a flush is cut this long after its first pending byte...
    flush_bytes: int  # ...or at once when this much is pending
    max_inflight: int  # PUTs in flight at once (hides store latency at high rates)
    # Requests a connection may have in progress. Every produce waits for its flush, so a
    # client sending small requests (librdkafka: one per linger.ms) gets at most this many
    # requests' bytes through per interval; a longer interval needs a deeper pipeline.
    connection_inflight: int


MIB = 1024 * 1024

FLUSH_PROFILES = {
    # Every produce waits at most 10 ms for its PUT to start: for stores where requests are free.
    "latency": FlushProfile("latency", interval_ms=10, flush_bytes=8 * MIB, max_inflight=4,
                            connection_inflight=64),
    # At most 4 PUTs/s per broker at low rates, one PUT per 8 MiB at high rates; more PUTs
    # in flight because an 8 MiB PUT to a remote store takes hundreds of milliseconds, and
    # 25 times the interval, so 25 times the requests per connection for the same throughput.
    "cost": FlushProfile("cost", interval_ms=250, flush_bytes=8 * MIB, max_inflight=8,
                         connection_inflight=1024),
}

AUTO_PROFILE = "auto"

# A flush setting left at this value takes the flush profile's default.
FROM_PROFILE = -1


def default_flush_profile(storage: str) -> str:
    """``cost`` where every request is billed (``s3://``), ``latency`` elsewhere."""
    return "cost" if storage.strip().lower().startswith("s3://") else "latency"


def flush_profile_name(value: str) -> str:
    v = value.strip().lower()
    if v != AUTO_PROFILE and v not in FLUSH_PROFILES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join([AUTO_PROFILE, *FLUSH_PROFILES])}, got {value!r}"
        )
    return v


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
    # write path: FROM_PROFILE takes the flush profile's value (resolved in __post_init__)
    flush_profile: str = AUTO_PROFILE
    flush_interval_ms: int = FROM_PROFILE
    flush_bytes: int = FROM_PROFILE
    max_pending_bytes: int = 256 * 1024 * 1024
    max_inflight_flushes: int = FROM_PROFILE
    # topics
    auto_create_topics: bool = True
    default_partitions: int = 1
    max_message_bytes: int = 1024 * 1024 + 12 * 1024
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    # connections
    socket_request_max_bytes: int = 100 * 1024 * 1024
    max_inflight_requests: int = FROM_PROFILE
    idle_timeout_s: float = 600.0
    # read path
    memory_cache_bytes: int = 256 * 1024 * 1024
    block_cache_bytes: int = 256 * 1024 * 1024
    block_size: int = 1024 * 1024
    # consolidation and checkpoints
    compact_after_bytes: int = 64 * 1024 * 1024
    compact_after_ms: int = 60_000
    consolidation_target_bytes: int = 32 * 1024 * 1024
    checkpoint_interval_ms: int = 5_000
    # key compaction (cleanup.policy=compact)
    key_compaction_map_bytes: int = 64 * 1024 * 1024
    # cluster
    session_timeout_ms: int = 3_000
    heartbeat_interval_ms: int = 500
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
    # transactions (docs/architecture.md#transactions)
    transaction_state_partitions: int = 16
    transaction_max_timeout_ms: int = 900_000
    # KIP-848 consumer groups (group.protocol=consumer): Kafka's group.consumer.* settings
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5_000
    # admin API security: paths to files, never the secrets themselves (see load_secrets)
    cluster_secret_file: str | None = None
    admin_token_file: str | None = None
    # authorization (docs/architecture.md#authorization-and-quotas)
    authorizer: str = "off"
    super_users: str = ""
    allow_everyone_if_no_acl_found: bool = False
    # TEST ONLY, never in production: the principal is User:<client id> (until SASL names it)
    insecure_principal_from_client_id: bool = False
    # quotas: how long a window the byte rates are measured over
    quota_window_s: float = 1.0
    quota_windows: int = 11
    # fetch sessions (KIP-227, fetch_sessions.py): Kafka's name and default; 0 turns them off
    max_incremental_fetch_session_cache_slots: int = 1000

    # listeners, TLS and SASL (security/listeners.py, security/tls.py, security/sasl.py)
    listeners: str | None = None
    advertised_listeners: str | None = None
    listener_security_protocol_map: str | None = None
    ssl_dir: str | None = None
    ssl_client_auth: str = "none"
    ssl_principal_mapping_rules: str = "DEFAULT"
    ssl_reload_interval_ms: int = 5_000
    ssl_handshake_timeout_ms: int = 10_000
    sasl_enabled_mechanisms: str = "SCRAM-SHA-256,SCRAM-SHA-512"
    connections_max_reauth_ms: int = 0
    sasl_bootstrap_users_file: str | None = None

    def __post_init__(self) -> None:
        """Resolve the flush profile: the store picks it unless named; a setting given one by one wins."""
        if self.authorizer not in AUTHORIZERS:
            raise ValueError(f"--authorizer must be one of {sorted(AUTHORIZERS)}, got {self.authorizer!r}")
        name = flush_profile_name(self.flush_profile)
        if name == AUTO_PROFILE:
            name = default_flush_profile(self.storage)
        profile = FLUSH_PROFILES[name]
        object.__setattr__(self, "flush_profile", name)
        for attr, default, least in (
            ("flush_interval_ms", profile.interval_ms, 0),
            ("flush_bytes", profile.flush_bytes, 1),
            ("max_inflight_flushes", profile.max_inflight, 1),
            ("max_inflight_requests", profile.connection_inflight, 1),
        ):
            value = getattr(self, attr)
            if value == FROM_PROFILE:
                object.__setattr__(self, attr, default)
            elif value < least:
                raise ValueError(f"{attr} must be at least {least}, got {value}")

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
    "flush_profile": "WAL flush defaults: latency (10 ms), cost (250 ms, flush by size), "
                     "or auto (cost on s3://, latency elsewhere)",
    "flush_interval_ms": "group-commit interval: max time a produce waits for its WAL PUT to start "
                         "(default: from --flush-profile)",
    "flush_bytes": "flush the WAL as soon as this many bytes are pending (default: from --flush-profile)",
    "max_inflight_flushes": "WAL PUTs in flight at once (default: from --flush-profile)",
    "max_inflight_requests": "requests one connection may have in progress (default: from --flush-profile)",
    "offsets_topic_partitions": "partitions of __consumer_offsets (fixed once the topic exists)",
    "offsets_snapshot_records": "rewrite live offsets and trim __consumer_offsets after this many records",
    "transaction_state_partitions": "partitions of __transaction_state (fixed once the topic exists)",
    "transaction_max_timeout_ms": "largest transaction.timeout.ms a producer may ask for (Kafka's "
                                  "transaction.max.timeout.ms)",
    "consolidation_target_bytes": "size of the objects consolidation packs many partitions' WAL ranges into",
    "checkpoint_interval_ms": "one checkpoint batch per broker session this often (bounds the WAL a successor scans)",
    "key_compaction_map_bytes": "memory bound of one key-compaction pass's key map (more keys: more passes)",
    "max_incremental_fetch_session_cache_slots": "fetch sessions (KIP-227) this broker keeps; 0 turns them off",
    "group_initial_rebalance_delay_ms": "wait this long for more members before a new group's first rebalance",
    "group_consumer_session_timeout_ms": "group.protocol=consumer: a member silent this long is removed",
    "group_consumer_heartbeat_interval_ms": "group.protocol=consumer: the heartbeat interval told to members",
    "authorizer": "off (default: every request allowed) or on/simple: enforce ACLs",
    "super_users": "principals allowed everything, Kafka's syntax: User:admin;User:ops",
    "allow_everyone_if_no_acl_found": "with the authorizer on, allow a resource that has no ACL at all",
    "insecure_principal_from_client_id": "TEST ONLY: take the principal User:<client id> from the client",
    "quota_window_s": "length of one quota sample window",
    "quota_windows": "how many windows a client's byte rate is measured over",
    "cluster_secret_file": "file holding the secret every /internal/v1 call between brokers carries "
                           f"(or the secret itself in {CLUSTER_SECRET_ENV})",
    "admin_token_file": "file holding the bearer token /v1/... admin calls must carry "
                        f"(or the token itself in {ADMIN_TOKEN_ENV})",
    "listeners": "Kafka listeners NAME://HOST:PORT,... (default: one PLAINTEXT listener on --listen)",
    "advertised_listeners": "NAME://HOST:PORT,... clients of each listener are given (default: its bind address)",
    "listener_security_protocol_map": "NAME:PROTOCOL,... for listeners not named after their protocol "
                                      "(PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)",
    "ssl_dir": "directory with tls.crt, tls.key and ca.crt (a Kubernetes TLS Secret); re-read when they change",
    "ssl_client_auth": "client certificates on TLS listeners: required, requested or none",
    "ssl_principal_mapping_rules": "Kafka's ssl.principal.mapping.rules: RULE:pattern/replacement/[LU],...,DEFAULT",
    "ssl_reload_interval_ms": "how often the TLS files are checked for changes",
    "sasl_enabled_mechanisms": "SASL mechanisms offered: SCRAM-SHA-256, SCRAM-SHA-512, PLAIN",
    "connections_max_reauth_ms": "SASL sessions last this long, then the client must re-authenticate (0: forever)",
    "sasl_bootstrap_users_file": "file of USER:PASSWORD lines; users not yet known get SCRAM credentials "
                                 "(hashed here; the file itself never reaches the bucket)",
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
        elif f.name == "flush_profile":
            kind = flush_profile_name
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


@dataclass(frozen=True, slots=True)
class Secrets:
    """The admin API's two secrets; None means that side is unauthenticated. Never logged."""

    cluster_secret: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)


def _read_secret(path: str | None, env: str, what: str) -> str | None:
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
        if not value:
            raise ValueError(f"the {what} file {path} is empty")
        return value
    return os.environ.get(env, "").strip() or None


def load_secrets(config: BrokerConfig) -> Secrets:
    """The cluster secret and admin token: from their files if given, else from the variables.

    Read once at start-up; a file given but unreadable or empty is a start-up
    failure (ValueError, worded for the console), not a silently open broker.
    """
    return Secrets(
        cluster_secret=_read_secret(config.cluster_secret_file, CLUSTER_SECRET_ENV, "cluster secret"),
        admin_token=_read_secret(config.admin_token_file, ADMIN_TOKEN_ENV, "admin token"),
    )
