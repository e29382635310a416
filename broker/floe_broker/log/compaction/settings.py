"""A topic's key-compaction settings, parsed from its configs with Kafka's defaults.

Read fresh from the topic's configs at every compaction round and every
retention pass, so an IncrementalAlterConfigs that switches
``cleanup.policy`` (``delete`` -> ``compact`` and back) takes effect on the
leader without a restart. A value that does not parse falls back to the
default (validation at CreateTopics/IncrementalAlterConfigs is the topic
configs' business, not this module's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

LONG_MAX = (1 << 63) - 1
POLICIES = frozenset({"delete", "compact", "compact,delete", "delete,compact"})
KEYS = ("cleanup.policy", "min.compaction.lag.ms", "max.compaction.lag.ms", "delete.retention.ms",
        "min.cleanable.dirty.ratio")


def policy_parts(policy: str | None) -> frozenset[str]:
    """``"compact, delete"`` -> {"compact", "delete"}; unset is Kafka's default, delete."""
    if policy is None or not policy.strip():
        return frozenset({"delete"})
    return frozenset(p.strip().lower() for p in policy.split(",") if p.strip())


def is_compacted(policy: str | None) -> bool:
    return "compact" in policy_parts(policy)


def deletes(policy: str | None) -> bool:
    """True when time and size retention apply (``delete`` alone or with ``compact``)."""
    return "delete" in policy_parts(policy)


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    compact: bool = False
    delete: bool = True
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    delete_retention_ms: int = 86_400_000
    min_cleanable_dirty_ratio: float = 0.5

    @classmethod
    def from_topic_configs(cls, configs: Mapping[str, str | None]) -> CompactionSettings:
        policy = configs.get("cleanup.policy")
        return cls(
            compact=is_compacted(policy),
            delete=deletes(policy),
            min_compaction_lag_ms=_int(configs.get("min.compaction.lag.ms"), 0),
            max_compaction_lag_ms=_int(configs.get("max.compaction.lag.ms"), LONG_MAX),
            delete_retention_ms=_int(configs.get("delete.retention.ms"), 86_400_000),
            min_cleanable_dirty_ratio=_ratio(configs.get("min.cleanable.dirty.ratio"), 0.5),
        )

    @classmethod
    def of_topic(cls, topic_config: Callable[[str, str], str | None], topic: str) -> CompactionSettings:
        """From a ``(topic, key) -> value`` lookup, as the partition manager has it."""
        return cls.from_topic_configs({k: topic_config(topic, k) for k in KEYS})


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _ratio(value: str | None, default: float) -> float:
    try:
        ratio = float(value) if value is not None else default
    except ValueError:
        return default
    return min(max(ratio, 0.0), 1.0)
