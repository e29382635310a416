"""The broker configs a client or tool reads, and which of them Floe takes from its flags.

Clients read broker configs to learn defaults (``num.partitions``,
``default.replication.factor``, ``log.retention.ms``, ...) and addresses
(``advertised.listeners``). Every broker synonym of a topic config is here and
is *dynamic*: set per broker or cluster-wide (``entity-default``) it becomes
the default of every topic without an override of its own, live. The other
dynamic configs are Kafka's and are stored for compatibility.

A config Floe sets from a command-line flag reports that flag's value; it is
``STATIC_BROKER_CONFIG`` when the flag differs from Floe's default.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from ..config import BrokerConfig
from .definitions import ConfigDef, ConfigType, at_least
from .topic_configs import TOPIC_CONFIG_DEFS

B, S, INT, L, D, LIST, SHORT = (ConfigType.BOOLEAN, ConfigType.STRING, ConfigType.INT, ConfigType.LONG,
                              ConfigType.DOUBLE, ConfigType.LIST, ConfigType.SHORT)
CLASS, PASSWORD = ConfigType.CLASS, ConfigType.PASSWORD
NO_EFFECT = "accepted for compatibility: no effect in Floe"
SECURITY_PROTOCOLS = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _synonym_defs() -> list[ConfigDef]:
    """A broker config for every broker synonym of a topic config (dynamic, defaults of new topics)."""
    out: dict[str, ConfigDef] = {}
    for topic in TOPIC_CONFIG_DEFS:
        for syn in topic.synonyms:
            if syn.name in out:
                continue
            if syn.factor == 1:
                default = topic.default
                kind = topic.type
                validator = topic.validator
            else:  # the coarser unit of a time config (log.retention.hours): Kafka's own defaults
                default = str(int(topic.default) // syn.factor) if syn.name.endswith("hours") and topic.default \
                    else None
                kind, validator = INT, None
            note = f"default of the topic config {topic.name} ({'honoured' if topic.honoured else 'no effect'})"
            out[syn.name] = ConfigDef(syn.name, kind, default, f"The default of the topic config {topic.name}. "
                                      + topic.doc, validator, honoured=topic.honoured, note=note, dynamic=True)
    # Kafka's own default for the finer unit is null: the coarser one (hours) decides.
    out["log.roll.jitter.ms"] = dataclasses.replace(out["log.roll.jitter.ms"], default=None)
    return list(out.values())


_OTHER_DEFS: tuple[ConfigDef, ...] = (
    ConfigDef("advertised.listeners", S, None, "The listeners (NAME://HOST:PORT) this broker gives clients.",
              honoured=True, note="the addresses the broker registered with; set at start (--advertised-listeners)",
              per_broker_only=True),
    ConfigDef("allow.everyone.if.no.acl.found", B, "false",
              "Whether a resource without ACLs is open to everyone.", honoured=True,
              note="--allow-everyone-if-no-acl-found"),
    ConfigDef("authorizer.class.name", CLASS, "", "The authorizer; empty when authorization is off.",
              honoured=True, note="--authorizer acl is the standard ACL authorizer"),
    ConfigDef("auto.create.topics.enable", B, "true", "Whether Metadata and Produce create unknown topics.",
              honoured=True, note="--auto-create-topics"),
    ConfigDef("auto.leader.rebalance.enable", B, "true", "Whether leadership is balanced automatically.",
              note="accepted for compatibility: the operator balances partitions"),
    ConfigDef("broker.id", INT, "-1", "This broker's id.", honoured=True, note="assigned by the controller"),
    ConfigDef("connections.max.idle.ms", L, "600000", "Idle connections are closed after this long.",
              honoured=True, note="--idle-timeout-s"),
    ConfigDef("connections.max.reauth.ms", L, "0", "Longest a SASL session lives before re-authentication.",
              honoured=True, note="--connections-max-reauth-ms"),
    ConfigDef("default.replication.factor", INT, "1", "The replication factor of automatically created topics.",
              note="accepted for compatibility: durability comes from the object store"),
    ConfigDef("delete.topic.enable", B, "true", "Whether topics may be deleted.", honoured=True,
              note="always true"),
    ConfigDef("fetch.max.bytes", INT, "57671680", "The largest Fetch response, whatever the request asks.",
              at_least(1024), note=NO_EFFECT, dynamic=True),
    ConfigDef("group.initial.rebalance.delay.ms", INT, "3000", "How long a new group waits for more members.",
              honoured=True, note="--group-initial-rebalance-delay-ms"),
    ConfigDef("group.max.session.timeout.ms", INT, "1800000", "The largest session timeout a member may ask.",
              honoured=True, note="--group-max-session-timeout-ms"),
    ConfigDef("group.max.size", INT, str(2**31 - 1), "The largest number of members in one group.",
              honoured=True, note="--group-max-size"),
    ConfigDef("group.min.session.timeout.ms", INT, "6000", "The smallest session timeout a member may ask.",
              honoured=True, note="--group-min-session-timeout-ms"),
    ConfigDef("listener.security.protocol.map", S, SECURITY_PROTOCOLS,
              "The security protocol of each listener name.", honoured=True,
              note="--listener-security-protocol-map"),
    ConfigDef("listeners", S, "PLAINTEXT://:9092", "The addresses the broker listens on.", honoured=True,
              note="--listeners (or --listen)", per_broker_only=True),
    ConfigDef("log.cleaner.enable", B, "true", "Whether the log cleaner (key compaction) runs.", note=NO_EFFECT),
    ConfigDef("max.connections", INT, str(2**31 - 1), "The largest number of connections a broker accepts.",
              at_least(0), note=NO_EFFECT, dynamic=True),
    ConfigDef("max.connections.per.ip", INT, str(2**31 - 1), "The largest number of connections from one address.",
              at_least(0), note=NO_EFFECT, dynamic=True),
    ConfigDef("node.id", INT, "-1", "This node's id.", honoured=True, note="assigned by the controller"),
    ConfigDef("num.partitions", INT, "1", "The partition count of topics created without one.", at_least(1),
              honoured=True, note="--default-partitions"),
    ConfigDef("offset.metadata.max.bytes", INT, "4096", "The largest metadata string of a committed offset.",
              honoured=True, note="--offset-metadata-max-bytes"),
    ConfigDef("offsets.retention.minutes", INT, "10080", "How long the offsets of an empty group are kept.",
              at_least(1), note="accepted for compatibility: offsets are kept until the group is deleted"),
    ConfigDef("offsets.topic.num.partitions", INT, "50", "The partition count of __consumer_offsets.",
              at_least(1), honoured=True, note="--offsets-topic-partitions"),
    ConfigDef("offsets.topic.replication.factor", SHORT, "1", "The replication factor of __consumer_offsets.",
              at_least(1), note="accepted for compatibility: durability comes from the object store"),
    ConfigDef("process.roles", LIST, "broker,controller", "The roles of this node.", honoured=True,
              note="every Floe broker may hold the controller lease"),
    ConfigDef("replica.lag.time.max.ms", L, "30000", "How long a follower may lag before it leaves the ISR.",
              note=NO_EFFECT),
    ConfigDef("sasl.enabled.mechanisms", LIST, "GSSAPI", "The SASL mechanisms the broker accepts.",
              honoured=True, note="--sasl-enabled-mechanisms"),
    ConfigDef("socket.request.max.bytes", INT, "104857600", "The largest request the broker reads.",
              at_least(1), honoured=True, note="--socket-request-max-bytes"),
    ConfigDef("ssl.keystore.password", PASSWORD, None, "The password of the key store (never described).",
              note="TLS keys come from --ssl-dir; sensitive, so never described", dynamic=True,
              per_broker_only=True),
    ConfigDef("super.users", S, "", "Principals that every ACL check allows (User:a;User:b).", honoured=True,
              note="--super-users"),
    ConfigDef("transaction.state.log.min.isr", INT, "1", "min.insync.replicas of the transaction state topic.",
              at_least(1), note=NO_EFFECT),
    ConfigDef("transaction.state.log.num.partitions", INT, "50", "The partition count of the transaction state topic.",
              at_least(1), honoured=True, note="--transaction-state-partitions"),
    ConfigDef("transaction.max.timeout.ms", INT, "900000", "The longest transaction.timeout.ms a producer may ask for.",
              at_least(1), honoured=True, note="--transaction-max-timeout-ms"),
    ConfigDef("group.consumer.session.timeout.ms", INT, "45000",
              "How long a consumer-protocol member may stay silent before it is removed.", at_least(1),
              honoured=True, note="--group-consumer-session-timeout-ms"),
    ConfigDef("group.consumer.heartbeat.interval.ms", INT, "5000",
              "The heartbeat interval the broker gives consumer-protocol members.", at_least(1),
              honoured=True, note="--group-consumer-heartbeat-interval-ms"),
    # Kafka's reassignment tools set and clear these throttles on every broker; there is no replica traffic to throttle.
    ConfigDef("leader.replication.throttled.rate", L, str(2**63 - 1), "Replication throttle of leaders, bytes/s.",
              at_least(0), note=NO_EFFECT, dynamic=True),
    ConfigDef("follower.replication.throttled.rate", L, str(2**63 - 1), "Replication throttle of followers, bytes/s.",
              at_least(0), note=NO_EFFECT, dynamic=True),
    ConfigDef("replica.alter.log.dirs.io.max.bytes.per.second", L, str(2**63 - 1),
              "Throttle of moves between log dirs, bytes/s.", at_least(0), note=NO_EFFECT, dynamic=True),
    ConfigDef("transaction.state.log.replication.factor", SHORT, "1",
              "The replication factor of the transaction state topic.", at_least(1), note=NO_EFFECT),
)


def _merge() -> dict[str, ConfigDef]:
    out = {d.name: d for d in _synonym_defs()}
    for d in _OTHER_DEFS:
        out.setdefault(d.name, d)
    return dict(sorted(out.items()))


BROKER_CONFIGS: dict[str, ConfigDef] = _merge()

# Configs Floe takes from its own flags: name -> (BrokerConfig -> value as Kafka writes it)
FROM_FLAGS: dict[str, Callable[[BrokerConfig], str | None]] = {
    "log.retention.ms": lambda c: str(c.retention_ms),
    "log.retention.bytes": lambda c: str(c.retention_bytes),
    "message.max.bytes": lambda c: str(c.max_message_bytes),
    "log.flush.interval.ms": lambda c: str(c.flush_interval_ms),
    "num.partitions": lambda c: str(c.default_partitions),
    "auto.create.topics.enable": lambda c: str(c.auto_create_topics).lower(),
    "offsets.topic.num.partitions": lambda c: str(c.offsets_topic_partitions),
    "transaction.state.log.num.partitions": lambda c: str(c.transaction_state_partitions),
    "transaction.max.timeout.ms": lambda c: str(c.transaction_max_timeout_ms),
    "group.consumer.session.timeout.ms": lambda c: str(c.group_consumer_session_timeout_ms),
    "group.consumer.heartbeat.interval.ms": lambda c: str(c.group_consumer_heartbeat_interval_ms),
    "group.min.session.timeout.ms": lambda c: str(c.group_min_session_timeout_ms),
    "group.max.session.timeout.ms": lambda c: str(c.group_max_session_timeout_ms),
    "group.initial.rebalance.delay.ms": lambda c: str(c.group_initial_rebalance_delay_ms),
    "group.max.size": lambda c: str(c.group_max_size),
    "offset.metadata.max.bytes": lambda c: str(c.offset_metadata_max_bytes),
    "socket.request.max.bytes": lambda c: str(c.socket_request_max_bytes),
    "connections.max.idle.ms": lambda c: str(int(c.idle_timeout_s * 1000)),
    "connections.max.reauth.ms": lambda c: str(c.connections_max_reauth_ms),
    "sasl.enabled.mechanisms": lambda c: c.sasl_enabled_mechanisms,
    "super.users": lambda c: c.super_users,
    "allow.everyone.if.no.acl.found": lambda c: str(c.allow_everyone_if_no_acl_found).lower(),
    "authorizer.class.name": lambda c: STANDARD_AUTHORIZER if c.authorizer_enabled else "",
    "listeners": lambda c: c.listeners or f"PLAINTEXT://{c.listen[0]}:{c.listen[1]}",
    "listener.security.protocol.map": lambda c: c.listener_security_protocol_map or SECURITY_PROTOCOLS,
}
_ALWAYS_STATIC = frozenset({"listeners"})  # its value always comes from a flag


@functools.lru_cache(maxsize=16)
def static_values(config: BrokerConfig) -> dict[str, str | None]:
    """name -> value for the configs this broker's flags set away from Floe's default."""
    defaults = _floe_defaults(config.storage)
    out: dict[str, str | None] = {}
    for name, get in FROM_FLAGS.items():
        value = get(config)
        if name in _ALWAYS_STATIC or value != defaults.get(name):
            out[name] = value
    return out


@functools.lru_cache(maxsize=4)
def _floe_defaults(storage: str) -> dict[str, str | None]:
    base = BrokerConfig(storage=storage)
    return {name: get(base) for name, get in FROM_FLAGS.items()}


@functools.lru_cache(maxsize=4)
def default_values(storage: str) -> dict[str, str | None]:
    """name -> the value a broker reports when nothing sets it: Floe's default where Floe has one."""
    out = {name: d.default for name, d in BROKER_CONFIGS.items()}
    out.update(_floe_defaults(storage))
    return out
