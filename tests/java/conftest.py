"""Fixtures of the Java tier: the drivers built once per kafka-clients line, and runners bound to one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.java import tier

Java = Callable[..., dict[str, Any]]


def _built(version: str) -> Path:
    try:
        return tier.build(version)
    except tier.JavaUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session", params=tier.CLIENT_VERSIONS)
def java_tier(request: pytest.FixtureRequest) -> Path:
    """The drivers built against one kafka-clients version; every test using it runs once per version."""
    return _built(request.param)


@pytest.fixture(scope="session")
def newest_java_tier() -> Path:
    """The drivers on the newest client line only, for the slow fault scenarios."""
    return _built(tier.CLIENT_VERSIONS[0])


def _runner(built: Path) -> Java:
    def run(scenario: str, bootstrap: str, *args: str, timeout: float = 300) -> dict[str, Any]:
        return tier.run(built, scenario, bootstrap, *args, timeout=timeout)

    return run


@pytest.fixture
def java(java_tier: Path) -> Java:
    """``java(scenario, bootstrap, *args)`` -> the scenario's verdict, on each client line."""
    return _runner(java_tier)


@pytest.fixture(scope="module")
def module_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    """Broker processes shared by a module's tests (one scenario run, many per-step assertions)."""
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"))
    yield factory
    factory.stop_all()


def module_store(tmp_path_factory: pytest.TempPathFactory) -> StoreSpec:
    return StoreSpec(kind="file", url=f"file://{tmp_path_factory.mktemp('bucket')}")


@pytest.fixture(scope="session")
def platform_tier() -> Path:
    """The Kafka Streams application and the Connect worker's classpath, on the newest line."""
    try:
        return tier.build(tier.CLIENT_VERSIONS[0], project=tier.PLATFORM)
    except tier.JavaUnavailable as exc:
        pytest.skip(str(exc))
