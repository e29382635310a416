"""A long-poll fetch over many partitions: woken by the first that moves, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from floe_broker.app import Broker
from floe_broker.dispatch import Dispatcher
from tests.fetch_sessions.test_handler import answered
from tests.infra.batches import record_batch
from tests.inprocess.harness import started_broker
from tests.inprocess.test_core import FETCH, create_topic, produce
from tests.inprocess.wire import call, request
from tests.storage.test_conformance import poll

PARTITIONS = 50


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with started_broker() as b:
        yield b


def long_poll(max_wait_s: float) -> Any:
    return request(
        FETCH, 12, replica_id=-1, max_wait=datetime.timedelta(seconds=max_wait_s), min_bytes=1,
        max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
        topics=[{"topic": "lp", "partitions": [{"partition": i, "fetch_offset": 0, "partition_max_bytes": 1 << 20,
                                                  "current_leader_epoch": -1, "log_start_offset": -1}
                                                 for i in range(PARTITIONS)]}],
        forgotten_topics_data=[])


async def test_one_produce_wakes_a_fetch_waiting_on_many_partitions(broker: Broker) -> None:
    d = Dispatcher(broker.serving)
    await create_topic(d, "lp", PARTITIONS)
    parts = [broker.serving.log.partitions.get("lp", i) for i in range(PARTITIONS)]
    waiting = asyncio.create_task(call(d, FETCH, 12, long_poll(30)))
    await poll(lambda: all(p is not None and p._waiters for p in parts), what="the fetch to wait")
    await produce(d, "lp", 37, record_batch(b"wake"))
    resp = await asyncio.wait_for(waiting, 10)  # far sooner than its 30 s max_wait
    got = {i: p for i, p in answered(resp).items() if p.records}
    assert list(got) == [37]
    assert not any(p._waiters for p in parts if p is not None), "the fetch left futures behind"


async def test_a_long_poll_that_times_out_leaves_nothing_behind(broker: Broker) -> None:
    d = Dispatcher(broker.serving)
    await create_topic(d, "lp", PARTITIONS)
    resp = await call(d, FETCH, 12, long_poll(0.2))
    assert not any(p.records for p in answered(resp).values())
    parts = [broker.serving.log.partitions.get("lp", i) for i in range(PARTITIONS)]
    assert not any(p._waiters for p in parts if p is not None), "idle partitions keep the fetch's futures"
