"""What a config is: its type, default, validator, and whether Floe acts on it.

Kafka clients and tools read configs through DescribeConfigs and write them
through (Incremental)AlterConfigs and CreateTopics; they expect Kafka's names,
types, defaults, config sources and error messages, so the wire values and the
message texts here are Kafka's (``org.apache.kafka.common.config.ConfigDef``).
Pure: no I/O, nothing of the cluster or the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


class ConfigType(IntEnum):
    """``config_type`` in DescribeConfigs v3+ (Kafka's ``ConfigEntry.ConfigType``)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class Source(IntEnum):
    """``config_source`` in DescribeConfigs (Kafka's ``DescribeConfigsResponse.ConfigSource``)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class InvalidConfig(ValueError):
    """A config name or value Kafka would refuse; the message is Kafka's wording."""


Validator = Callable[[str, object], str | None]  # (name, parsed value) -> why it is invalid, or None


def at_least(least: float) -> Validator:
    def check(name: str, value: object) -> str | None:
        return None if value is None or value >= least else f"Value must be at least {least}"  # type: ignore[operator]
    return check


def between(low: float, high: float) -> Validator:
    def check(name: str, value: object) -> str | None:
        if value is None:
            return None
        if value < low:  # type: ignore[operator]
            return f"Value must be no less than {low}"
        if value > high:  # type: ignore[operator]
            return f"Value must be no more than {high}"
        return None
    return check


def one_of(*allowed: str, case_insensitive: bool = False) -> Validator:
    def check(name: str, value: object) -> str | None:
        found = str(value).lower() if case_insensitive else value
        pool = [a.lower() for a in allowed] if case_insensitive else list(allowed)
        return None if found in pool else f"String must be one of: {', '.join(allowed)}"
    return check


def each_of(*allowed: str) -> Validator:
    """For LIST configs: every element must be one of ``allowed`` (Kafka's ``ValidList``)."""
    def check(name: str, value: object) -> str | None:
        items = value if isinstance(value, list) else []
        bad = [i for i in items if i not in allowed]
        return f"String must be one of: {', '.join(allowed)}" if bad else None
    return check


@dataclass(frozen=True)
class Synonym:
    """A broker config that sets a topic config's default; ``factor`` converts its unit (hours -> ms)."""

    name: str
    factor: int = 1


@dataclass(frozen=True)
class ConfigDef:
    """One config. ``honoured``: Floe acts on it; otherwise it is stored and described for compatibility."""

    name: str
    type: ConfigType
    default: str | None
    doc: str
    validator: Validator | None = None
    honoured: bool = False
    note: str = ""  # what Floe does with it (or why it has no effect)
    synonyms: tuple[Synonym, ...] = ()
    dynamic: bool = False  # broker configs: may be altered at run time (per broker or cluster-wide)
    per_broker_only: bool = False  # broker configs: not settable as the cluster-wide default

    @property
    def sensitive(self) -> bool:
        return self.type is ConfigType.PASSWORD

    def parse(self, raw: str | None) -> object:
        """The typed value of ``raw``, or raise :class:`InvalidConfig` with Kafka's message."""
        if raw is None:
            return None
        text = raw.strip()
        try:
            value = _PARSERS[self.type](text)
        except ValueError as exc:
            raise InvalidConfig(f"Invalid value {raw} for configuration {self.name}: {exc}") from None
        if self.validator is not None:
            why = self.validator(self.name, value)
            if why is not None:
                raise InvalidConfig(f"Invalid value {raw} for configuration {self.name}: {why}")
        return value


def _integer(kind: str, bound: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"Not a number of type {kind}") from None
        if not -bound - 1 <= value <= bound:
            raise ValueError(f"Not a number of type {kind}")
        return value
    return parse


def _double(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("Not a number of type DOUBLE") from None


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise ValueError("Expected value to be either true or false")


def split_list(text: str) -> list[str]:
    """Kafka's LIST parsing: comma separated, blanks trimmed, an empty string is the empty list."""
    return [item.strip() for item in text.split(",")] if text.strip() else []


_PARSERS: dict[ConfigType, Callable[[str], object]] = {
    ConfigType.BOOLEAN: _boolean,
    ConfigType.STRING: str,
    ConfigType.INT: _integer("INT", INT32_MAX),
    ConfigType.SHORT: _integer("SHORT", 2**15 - 1),
    ConfigType.LONG: _integer("LONG", INT64_MAX),
    ConfigType.DOUBLE: _double,
    ConfigType.LIST: split_list,
    ConfigType.CLASS: str,
    ConfigType.PASSWORD: str,
    ConfigType.UNKNOWN: str,
}
