"""The config registry on its own (pure) and the config APIs over the wire to an in-process broker.

The client tests (tests/test_configs.py, tests/polyglot) show what users see; these pin the
rules they rest on: resolution order and units, APPEND/SUBTRACT, Kafka's messages, the
metadata section, and the wire fields no client library here exposes (config type,
documentation, ListConfigResources).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kio.schema.errors import ErrorCode

from floe_api.internal import AlterBrokerConfigs, ConfigChange
from floe_broker.cluster.delta import apply, diff
from floe_broker.cluster.metadata import ClusterState, apply_op
from floe_broker.config import BrokerConfig
from floe_broker.configs import ConfigType, ConfigView, InvalidConfig, Source
from floe_broker.configs.resolve import APPEND, DELETE, SET, SUBTRACT, incremental, replacement
from floe_broker.configs.topic_configs import TOPIC_CONFIGS
from floe_broker.dispatch import Dispatcher
from floe_broker.log import record_times
from floe_broker.protocol import records
from tests.infra.batches import record_batch
from tests.inprocess.harness import started_broker
from tests.inprocess.wire import call, request

CONFIG = BrokerConfig(storage="memory://")


def test_resolution_order_source_first_then_synonym_order_with_units() -> None:
    flags = BrokerConfig(storage="memory://", retention_ms=5000)
    dynamic = {"": {"log.retention.hours": "1"}, "7": {"log.retention.minutes": "2"}}
    on_7 = ConfigView(flags, dynamic, 7).describe_topic({}, ["retention.ms"])[0]
    assert (on_7.value, on_7.source) == ("120000", Source.DYNAMIC_BROKER_CONFIG)
    assert [s for _, _, s in on_7.synonyms] == [Source.DYNAMIC_BROKER_CONFIG, Source.DYNAMIC_DEFAULT_BROKER_CONFIG,
                                                 Source.STATIC_BROKER_CONFIG, Source.DEFAULT_CONFIG]
    on_8 = ConfigView(flags, dynamic, 8).describe_topic({}, ["retention.ms"])[0]
    assert (on_8.value, on_8.source) == ("3600000", Source.DYNAMIC_DEFAULT_BROKER_CONFIG)
    overridden = ConfigView(flags, dynamic, 7).describe_topic({"retention.ms": "9"}, ["retention.ms"])[0]
    assert (overridden.value, overridden.source) == ("9", Source.TOPIC_CONFIG)
    static = ConfigView(flags, {}, 1).describe_topic({}, ["retention.ms"])[0]
    assert (static.value, static.source) == ("5000", Source.STATIC_BROKER_CONFIG)
    plain = ConfigView(CONFIG, {}, 1).describe_topic({}, ["retention.ms"])[0]
    assert (plain.value, plain.source) == (str(7 * 24 * 3600 * 1000), Source.DEFAULT_CONFIG)


def test_every_topic_config_parses_its_own_default() -> None:
    for d in TOPIC_CONFIGS.values():
        d.parse(d.default)
    assert TOPIC_CONFIGS["cleanup.policy"].type is ConfigType.LIST
    assert TOPIC_CONFIGS["min.cleanable.dirty.ratio"].type is ConfigType.DOUBLE


@pytest.mark.parametrize(("name", "value", "message"), [
    ("bogus.config", "1", "Unknown topic config name: bogus.config"),
    ("segment.bytes", "1000", "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"),
    ("min.cleanable.dirty.ratio", "1.5",
     "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"),
    ("preallocate", "yes",
     "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
    ("max.message.bytes", "99999999999", "Not a number of type INT"),
    ("compression.type", "brotli", "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
])
def test_invalid_values_get_kafkas_messages(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message.replace(".", r"\.")):
        incremental({}, [(name, SET, value)], {})


def test_append_subtract_and_replacement() -> None:
    effective = {"cleanup.policy": "delete"}
    assert incremental({}, [("cleanup.policy", APPEND, "compact")], effective) == {"cleanup.policy": "delete,compact"}
    assert incremental({"cleanup.policy": "compact,delete"}, [("cleanup.policy", SUBTRACT, "delete")],
                       effective) == {"cleanup.policy": "compact"}
    assert incremental({}, [("cleanup.policy", APPEND, "delete")], effective) == {"cleanup.policy": "delete"}
    with pytest.raises(InvalidConfig, match="because its type is not LIST"):
        incremental({}, [("retention.ms", SUBTRACT, "1")], {})
    assert incremental({"old.gone": "x"}, [("old.gone", DELETE, None)], {}) == {"old.gone": None}
    assert replacement({"retention.ms": "1", "segment.ms": "5"}, {"retention.ms": "2"}) == \
        {"retention.ms": "2", "segment.ms": None}
    with pytest.raises(InvalidConfig, match="Cannot update these configs dynamically"):
        incremental({}, [("num.partitions", SET, "3")], {}, broker_resource="1")
    with pytest.raises(InvalidConfig, match="broker id must be specified"):
        incremental({}, [("ssl.keystore.password", SET, "x")], {}, broker_resource="")


def test_dynamic_broker_configs_are_a_metadata_section_that_travels_in_deltas() -> None:
    before = ClusterState(version=1)
    after = before.copy()
    after.version = 2
    apply_op(after, AlterBrokerConfigs(broker="", changes=[ConfigChange(key="log.retention.ms", kind=0, value="9")]))
    delta = diff(before, after)
    assert delta.sections == {"broker_configs": {"": {"log.retention.ms": "9"}}}
    assert apply(before, delta).broker_configs == {"": {"log.retention.ms": "9"}}
    assert ClusterState.from_bytes(after.to_bytes()).broker_configs == after.broker_configs
    apply_op(after, AlterBrokerConfigs(broker="", changes=[ConfigChange(key="log.retention.ms", kind=1)]))
    assert after.broker_configs == {}


def test_log_append_time_rewrites_only_the_header_and_keeps_the_crc_valid() -> None:
    batch = record_batch(count=2, ts=1000)
    infos = records.scan_batches(batch, max_batch_bytes=1 << 20)
    stamped, stamped_infos = records.stamp_log_append_time(batch, infos, 123456789)
    again = records.scan_batches(stamped, max_batch_bytes=1 << 20)  # raises on a bad CRC
    assert again[0].max_timestamp == stamped_infos[0].max_timestamp == 123456789
    assert again[0].attributes & records.ATTR_LOG_APPEND_TIME
    assert stamped[61:] == batch[61:], "records are not touched"
    found = record_times.first_at_or_after(stamped, 123456789, 0)
    assert found is not None and (found.offset, found.timestamp) == (0, 123456789)


@pytest.fixture
async def dispatcher() -> AsyncIterator[Dispatcher]:
    async with started_broker() as broker:
        await broker.serving.create_topic("t", 1, {"retention.ms": "1000"})
        yield Dispatcher(broker.serving)


async def test_describe_configs_v4_answers_types_and_documentation(dispatcher: Dispatcher) -> None:
    body = request(32, 4, resources=[{"resource_type": 2, "resource_name": "t", "configuration_keys": None}],
                   include_synonyms=True, include_documentation=True)
    result = (await call(dispatcher, 32, 4, body)).results[0]
    entries = {c.name: c for c in result.configs}
    assert entries["retention.ms"].config_type == ConfigType.LONG
    assert entries["cleanup.policy"].config_type == ConfigType.LIST
    assert entries["retention.ms"].synonyms[0].name == "retention.ms"
    assert "Floe:" in (entries["segment.bytes"].documentation or "")
    broker = (await call(dispatcher, 32, 4, request(32, 4, resources=[
        {"resource_type": 4, "resource_name": "1", "configuration_keys": ["advertised.listeners", "broker.id"]}],
        include_synonyms=False, include_documentation=False))).results[0]
    assert {c.name: c.value for c in broker.configs}["broker.id"] == "1"
    assert len(broker.configs) == 2


async def test_list_config_resources_lists_topics_and_brokers(dispatcher: Dispatcher) -> None:
    answer = await call(dispatcher, 74, 1, request(74, 1, resource_types=[]))
    assert answer.error_code == ErrorCode.none
    found = {(r.resource_name, r.resource_type) for r in answer.config_resources}
    assert ("t", 2) in found and ("1", 4) in found
    only_brokers = await call(dispatcher, 74, 1, request(74, 1, resource_types=[4]))
    assert {r.resource_type for r in only_brokers.config_resources} == {4}
    v0 = await call(dispatcher, 74, 0, request(74, 0))
    assert v0.error_code == ErrorCode.none and v0.config_resources == ()  # client metrics: Floe has none
