"""Fixtures for Kafka's command-line tools against Floe: the tools' jars, and a two-broker cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars
from tests.infra.broker import BrokerProcess, wait_until


@pytest.fixture(scope="session", autouse=True)
def kafka_tool_jars() -> None:
    """Kafka's jars through Maven (cached after the first run); without java or mvn these tests skip."""
    try:
        kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))


def start_cluster(factory: BrokerFactory, store: StoreSpec, n: int) -> list[BrokerProcess]:
    procs = [factory(store) for _ in range(n)]
    wait_until(lambda: len(procs[0].get("/v1/cluster")[1].get("brokers", [])) == n, 30, message=f"{n} brokers")
    return procs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    """Two brokers shared by a module's tests, each test on its own topics and groups."""
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"))
    store = StoreSpec(kind="file", url=f"file://{tmp_path_factory.mktemp('bucket')}")
    try:
        yield start_cluster(factory, store, 2)
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def bootstrap(cluster: list[BrokerProcess]) -> str:
    return cluster[0].bootstrap
