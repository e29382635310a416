"""Fixtures: one in-process broker (``harness``) and a Dispatcher over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floe_broker.app import Broker
from floe_broker.dispatch import Dispatcher
from tests.inprocess.harness import started_broker


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with started_broker() as b:
        yield b


@pytest.fixture
def dispatcher(broker: Broker) -> Dispatcher:
    return Dispatcher(broker.serving)
