"""Which value a config has, and where it came from, as Kafka resolves it.

A topic config is, first found wins: the topic's own override
(``TOPIC_CONFIG``), then each broker synonym in order (``log.retention.ms``
before ``log.retention.hours``) set for this broker (``DYNAMIC_BROKER_CONFIG``),
set cluster-wide (``DYNAMIC_DEFAULT_BROKER_CONFIG``) or by a flag
(``STATIC_BROKER_CONFIG``), then the default (``DEFAULT_CONFIG``). Because the
dynamic broker configs live in the cluster metadata and are looked up on every
read, changing one takes effect live for every topic without an override.

Also here: turning (Incremental)AlterConfigs requests into the overrides to
store, with Kafka's validation and messages. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..config import BrokerConfig
from .broker_configs import BROKER_CONFIGS, default_values, static_values
from .definitions import ConfigDef, ConfigType, InvalidConfig, Source, split_list
from .topic_configs import TOPIC_CONFIGS

CLUSTER_DEFAULT = ""  # the broker resource name of the cluster-wide default (kafka-configs --entity-default)
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3  # IncrementalAlterConfigs operations
OP_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}

Dynamic = Mapping[str, Mapping[str, str]]  # broker resource name ("" or a node id) -> name -> value


@dataclass(frozen=True)
class Described:
    """One DescribeConfigs entry."""

    name: str
    value: str | None
    source: Source
    definition: ConfigDef
    read_only: bool
    synonyms: tuple[tuple[str, str | None, Source], ...]

    @property
    def is_default(self) -> bool:
        return self.source is Source.DEFAULT_CONFIG


class ConfigView:
    """The configs one broker sees: its flags, the dynamic broker configs in metadata, and topic overrides."""

    def __init__(self, config: BrokerConfig, dynamic: Dynamic, node: int,
                 advertised_listeners: str | None = None) -> None:
        self._static = static_values(config)
        self._defaults = default_values(config.storage)
        self._per_broker = dynamic.get(str(node), {})
        self._cluster = dynamic.get(CLUSTER_DEFAULT, {})
        self._node = node
        self._advertised = advertised_listeners
        self._topic_defaults: dict[str, str | None] = {}

    # ---- broker level ----------------------------------------------------------------

    def _broker_chain(self, name: str, factor: int = 1) -> list[tuple[str, str | None, Source]]:
        out: list[tuple[str, str | None, Source]] = []
        if name in self._per_broker:
            out.append((name, self._per_broker[name], Source.DYNAMIC_BROKER_CONFIG))
        if name in self._cluster:
            out.append((name, self._cluster[name], Source.DYNAMIC_DEFAULT_BROKER_CONFIG))
        special = self._special(name)
        if special is not None:
            out.append((name, special, Source.STATIC_BROKER_CONFIG))
        elif name in self._static:
            out.append((name, self._static[name], Source.STATIC_BROKER_CONFIG))
        default = self._defaults.get(name)
        if default is not None:
            out.append((name, default, Source.DEFAULT_CONFIG))
        return out

    def _special(self, name: str) -> str | None:
        if name in ("broker.id", "node.id"):
            return str(self._node)
        if name == "advertised.listeners":
            return self._advertised
        return None

    def broker_value(self, name: str) -> str | None:
        chain = self._broker_chain(name)
        return chain[0][1] if chain else None

    def describe_broker(self, names: Iterable[str] | None = None) -> list[Described]:
        out = []
        for name, d in BROKER_CONFIGS.items() if names is None else _known(names, BROKER_CONFIGS):
            chain = self._broker_chain(name)
            value, source = (chain[0][1], chain[0][2]) if chain else (None, Source.DEFAULT_CONFIG)
            if d.sensitive:
                value = None
                chain = [(n, None, s) for n, _, s in chain]
            out.append(Described(name, value, source, d, read_only=not d.dynamic, synonyms=tuple(chain)))
        return out

    # ---- topic level -----------------------------------------------------------------

    def _topic_chain(self, d: ConfigDef, overrides: Mapping[str, str]) -> list[tuple[str, str | None, Source]]:
        """Every place the value could come from, in precedence order: source level first, then synonym order."""
        found: list[tuple[str, str | None, Source]] = []
        default: tuple[str, str | None, Source] | None = None
        for syn in d.synonyms:
            for name, value, source in self._broker_chain(syn.name):
                if source is Source.DEFAULT_CONFIG:
                    if default is None and syn.factor == 1:
                        default = (name, value, source)
                    continue
                found.append((name, value, source))
        found.sort(key=lambda entry: entry[2])  # stable: synonym order within one source
        if d.name in overrides:
            found.insert(0, (d.name, overrides[d.name], Source.TOPIC_CONFIG))
        found.append(default or (d.synonyms[0].name if d.synonyms else d.name, d.default, Source.DEFAULT_CONFIG))
        return found

    def topic_value(self, name: str, overrides: Mapping[str, str]) -> str | None:
        """The value a topic config has (its override, else the broker-level default); None if unknown."""
        if name in overrides:
            return overrides[name]
        if name not in self._topic_defaults:  # the same for every topic without an override: once per view
            d = TOPIC_CONFIGS.get(name)
            self._topic_defaults[name] = _first_value(d, self._topic_chain(d, {})) if d is not None else None
        return self._topic_defaults[name]

    def describe_topic(self, overrides: Mapping[str, str], names: Iterable[str] | None = None) -> list[Described]:
        out = []
        for name, d in TOPIC_CONFIGS.items() if names is None else _known(names, TOPIC_CONFIGS):
            chain = self._topic_chain(d, overrides)
            out.append(Described(name, _first_value(d, chain), chain[0][2], d, read_only=False,
                                 synonyms=tuple(chain)))
        return out


def _known(names: Iterable[str], table: Mapping[str, ConfigDef]) -> list[tuple[str, ConfigDef]]:
    return [(n, table[n]) for n in names if n in table]


def _first_value(d: ConfigDef, chain: list[tuple[str, str | None, Source]]) -> str | None:
    """The value the chain gives the topic config, in the topic config's unit (log.retention.hours=1 -> 3600000)."""
    name, value, _ = chain[0]
    factor = next((s.factor for s in d.synonyms if s.name == name), 1)
    if value is None or factor == 1:
        return value
    try:
        return str(int(value) * factor)
    except ValueError:
        return value


# ---- validation and alteration ------------------------------------------------------

def validate_topic_configs(configs: Mapping[str, str | None]) -> None:
    """Raise :class:`InvalidConfig` for an unknown name or a bad value (CreateTopics, AlterConfigs)."""
    for name, value in configs.items():
        d = TOPIC_CONFIGS.get(name)
        if d is None:
            raise InvalidConfig(f"Unknown topic config name: {name}")
        if value is None:
            raise InvalidConfig(f"Null value not supported for topic configs: {name}")
        d.parse(value)


def _broker_def(name: str, resource: str) -> ConfigDef:
    d = BROKER_CONFIGS.get(name)
    if d is None:
        raise InvalidConfig(f"Unknown broker config name: {name}")
    if not d.dynamic:
        raise InvalidConfig(f"Cannot update these configs dynamically: Set({name})")
    if resource == CLUSTER_DEFAULT and d.per_broker_only:
        raise InvalidConfig(f"Cannot update these configs at default cluster level, "
                            f"broker id must be specified: Set({name})")
    return d


def incremental(current: Mapping[str, str], changes: Iterable[tuple[str, int, str | None]],
                effective: Mapping[str, str | None], *, broker_resource: str | None = None) -> dict[str, str | None]:
    """The overrides to set (a value) or delete (None) for an IncrementalAlterConfigs resource.

    ``current``: the resource's overrides; ``effective``: the value each config has now (for APPEND and
    SUBTRACT on a config without an override, Kafka starts from it). ``broker_resource``: the broker
    resource name for broker configs, None for a topic.
    """
    out: dict[str, str | None] = {}
    seen: set[str] = set()
    for name, op, value in changes:
        if name in seen:
            raise InvalidConfig(f"Error due to duplicate config keys: {name}")
        seen.add(name)
        if op not in OP_NAMES:
            raise InvalidConfig(f"Unknown operation {op} for config {name}")
        if broker_resource is not None:
            d = _broker_def(name, broker_resource)
        else:
            found = TOPIC_CONFIGS.get(name)
            if found is None:
                if op == DELETE:
                    out[name] = None  # deleting a key this build does not know cleans up, never fails
                    continue
                raise InvalidConfig(f"Unknown topic config name: {name}")
            d = found
        if op == DELETE:
            out[name] = None
            continue
        if value is None:
            raise InvalidConfig(f"Null value not supported for {OP_NAMES[op]} of config {name}")
        if op == SET:
            d.parse(value)
            out[name] = value
            continue
        if d.type is not ConfigType.LIST:
            raise InvalidConfig(f"Can't {OP_NAMES[op]} to key {name} because its type is not LIST.")
        base = current.get(name, effective.get(name))
        items = split_list(base or "")
        given = split_list(value)
        if op == APPEND:
            items += [i for i in given if i not in items]
        else:
            items = [i for i in items if i not in given]
        joined = ",".join(items)
        d.parse(joined)
        out[name] = joined
    return out


def replacement(current: Mapping[str, str], configs: Mapping[str, str | None], *,
                broker_resource: str | None = None) -> dict[str, str | None]:
    """The legacy AlterConfigs: the given configs become the whole set of overrides; the rest is deleted."""
    out: dict[str, str | None] = {}
    for name, value in configs.items():
        if broker_resource is not None:
            d = _broker_def(name, broker_resource)
            if value is None:
                out[name] = None
                continue
            d.parse(value)
            out[name] = value
        else:
            validate_topic_configs({name: value})
            out[name] = value
    for name in current:
        if name not in configs:
            out[name] = None
    return out
