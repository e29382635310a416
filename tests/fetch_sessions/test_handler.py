"""Fetch sessions through the real Dispatcher and fetch handler (in-process broker, encoded requests)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from floe_broker.app import Broker
from floe_broker.dispatch import Dispatcher
from tests.infra.batches import record_batch
from tests.inprocess.harness import started_broker
from tests.inprocess.test_core import FETCH, create_topic, produce
from tests.inprocess.wire import call, request


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with started_broker() as b:
        yield b


def fetch_request(version: int, session_id: int, epoch: int, parts: dict[Any, dict[int, int]],
                  forget: dict[Any, list[int]] | None = None) -> Any:
    by = "topic_id" if version >= 13 else "topic"
    return request(
        FETCH, version, replica_id=-1, max_wait=datetime.timedelta(milliseconds=10), min_bytes=1,
        max_bytes=1 << 20, isolation_level=0, session_id=session_id, session_epoch=epoch,
        topics=[{by: t, "partitions": [{"partition": i, "fetch_offset": o, "partition_max_bytes": 1 << 20,
                                        "current_leader_epoch": -1, "log_start_offset": -1}
                                       for i, o in ps.items()]} for t, ps in parts.items()],
        forgotten_topics_data=[{by: t, "partitions": ps} for t, ps in (forget or {}).items()])


def answered(resp: Any) -> dict[int, Any]:
    return {p.partition_index: p for t in resp.responses for p in t.partitions}


@pytest.mark.parametrize("version", [12, 17])
async def test_full_then_incremental_fetches_answer_only_what_changed(broker: Broker, version: int) -> None:
    d = Dispatcher(broker.serving)
    await create_topic(d, "s", 3)
    await produce(d, "s", 1, record_batch(b"one"))
    key: Any = "s" if version < 13 else uuid.UUID(broker.state().topics["s"].topic_id)

    first = await call(d, FETCH, version, fetch_request(version, 0, 0, {key: {0: 0, 1: 0, 2: 0}}))
    assert first.error_code == ErrorCode.none and first.session_id != 0
    assert sorted(answered(first)) == [0, 1, 2] and answered(first)[1].records
    sid = first.session_id

    # the client moved partition 1's offset past the record: nothing new anywhere
    quiet = await call(d, FETCH, version, fetch_request(version, sid, 1, {key: {1: 1}}))
    assert quiet.error_code == ErrorCode.none and quiet.session_id == sid and answered(quiet) == {}

    await produce(d, "s", 2, record_batch(b"two"))
    news = await call(d, FETCH, version, fetch_request(version, sid, 2, {}))
    assert sorted(answered(news)) == [2] and answered(news)[2].records and answered(news)[2].high_watermark == 1

    # forgetting partition 2 (its record already seen) leaves nothing to answer
    gone = await call(d, FETCH, version, fetch_request(version, sid, 3, {}, forget={key: [2]}))
    assert gone.session_id == sid and answered(gone) == {}


async def test_session_errors_are_kafkas(broker: Broker) -> None:
    d = Dispatcher(broker.serving)
    await create_topic(d, "e", 1)
    first = await call(d, FETCH, 12, fetch_request(12, 0, 0, {"e": {0: 0}}))
    wrong_epoch = await call(d, FETCH, 12, fetch_request(12, first.session_id, 7, {}))
    assert (wrong_epoch.error_code, wrong_epoch.session_id, wrong_epoch.responses) == (
        ErrorCode.invalid_fetch_session_epoch, 0, ())
    unknown = await call(d, FETCH, 12, fetch_request(12, first.session_id + 1, 1, {}))
    assert unknown.error_code == ErrorCode.fetch_session_id_not_found and unknown.session_id == 0
    # the client starts again with a full fetch, which always works
    again = await call(d, FETCH, 12, fetch_request(12, 0, 0, {"e": {0: 0}}))
    assert again.error_code == ErrorCode.none and again.session_id != 0


async def test_sessionless_fetches_still_answer_everything(broker: Broker) -> None:
    d = Dispatcher(broker.serving)
    await create_topic(d, "n", 2)
    for _ in range(2):
        resp = await call(d, FETCH, 12, fetch_request(12, 0, -1, {"n": {0: 0, 1: 0}}))
        assert resp.session_id == 0 and sorted(answered(resp)) == [0, 1]
