"""A single-broker file:// cluster shared by a module's tests (one load, many per-client assertions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import BrokerProcess


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"))
    store = StoreSpec(kind="file", url=f"file://{tmp_path_factory.mktemp('bucket')}")
    try:
        yield factory(store)
    finally:
        factory.stop_all()
