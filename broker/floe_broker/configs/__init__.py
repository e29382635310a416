"""Topic and broker configs as Kafka has them: the registry, how values resolve, and alteration.

* :mod:`.definitions`: a config's type, default, validator, Kafka's wire enums and messages;
* :mod:`.topic_configs`: every Kafka 4.x topic config, and whether Floe honours it;
* :mod:`.broker_configs`: the broker configs clients read, which are dynamic, which come from flags;
* :mod:`.resolve`: value and source of each config (topic override, dynamic broker config per broker
  or cluster-wide, flag, default) and turning alter requests into overrides.

Pure (no I/O, nothing of the cluster, the log or the handlers), so the handlers,
the log manager and the produce path share one answer to "what is retention.ms here".
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..config import BrokerConfig
from .definitions import ConfigDef, ConfigType, InvalidConfig, Source
from .resolve import CLUSTER_DEFAULT, ConfigView, Described, Dynamic

__all__ = ["CLUSTER_DEFAULT", "ConfigDef", "ConfigType", "ConfigView", "Described", "Dynamic", "InvalidConfig",
           "Source", "log_append_time", "topic_value"]

_last: tuple[BrokerConfig, int, Mapping[str, Mapping[str, str]], ConfigView] | None = None


def topic_value(config: BrokerConfig, dynamic: Dynamic, node: int, overrides: Mapping[str, str],
                name: str) -> str | None:
    """A topic config's value on ``node``; the view is kept while the metadata's dynamic configs are the same
    object (a metadata version shares them until they change), so the produce path pays a few lookups."""
    global _last
    if _last is None or _last[0] is not config or _last[1] != node or _last[2] is not dynamic:
        _last = (config, node, dynamic, ConfigView(config, dynamic, node))
    return _last[3].topic_value(name, overrides)


def log_append_time(timestamp_type: str | None) -> int | None:
    """The time to stamp into a topic's batches now if its ``message.timestamp.type`` is LogAppendTime, else None."""
    return int(time.time() * 1000) if timestamp_type == "LogAppendTime" else None
