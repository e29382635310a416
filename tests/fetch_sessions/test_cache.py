"""The fetch session cache on its own: full and incremental fetches, what an
incremental answer leaves out, forgotten partitions, Kafka's errors, and the
bounded cache's eviction rule (broker/floe_broker/fetch_sessions.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from kio.schema.errors import ErrorCode

from floe_broker.fetch_sessions import EVICTABLE_AFTER_S, FetchSessionCache, next_epoch

V12, V13 = 12, 13


@dataclass(frozen=True)
class Part:
    partition_index: int
    error_code: ErrorCode = ErrorCode.none
    high_watermark: int = 0
    last_stable_offset: int = 0
    log_start_offset: int = 0
    records: bytes = b""


@dataclass(frozen=True)
class Topic:
    topic: str
    partitions: tuple[Part, ...]
    topic_id: Any = None


def req(session_id: int, epoch: int, topics: dict[str, dict[int, int]] | None = None,
        forget: dict[str, list[int]] | None = None) -> Any:
    """A Fetch request (v12, topics by name): topic -> partition -> fetch offset."""
    return SimpleNamespace(
        session_id=session_id, session_epoch=epoch,
        topics=[SimpleNamespace(topic=t, partitions=[SimpleNamespace(partition=i, fetch_offset=o,
                                                                     partition_max_bytes=1 << 20)
                                                     for i, o in parts.items()])
                for t, parts in (topics or {}).items()],
        forgotten_topics_data=[SimpleNamespace(topic=t, partitions=ps) for t, ps in (forget or {}).items()])


def serve(ctx: Any, hw: dict[tuple[str, int], int] | None = None, data: set[tuple[str, int]] = frozenset(),  # type: ignore[assignment]
          errors: dict[tuple[str, int], ErrorCode] | None = None) -> list[Topic]:
    """What the fetch handler answers for the partitions the context says to read."""
    hw = hw or {}
    out = []
    for t in ctx.topics:
        parts = tuple(Part(fp.partition, (errors or {}).get((t.topic, fp.partition), ErrorCode.none),
                           high_watermark=hw.get((t.topic, fp.partition), 0),
                           records=b"x" if (t.topic, fp.partition) in data else b"")
                      for fp in t.partitions)
        out.append(Topic(t.topic, parts))
    return out


def offsets(ctx: Any) -> dict[tuple[str, int], int]:
    return {(t.topic, fp.partition): fp.fetch_offset for t in ctx.topics for fp in t.partitions}


def answered(topics: list[Topic]) -> set[tuple[str, int]]:
    return {(t.topic, p.partition_index) for t in topics for p in t.partitions}


def opened(cache: FetchSessionCache, topics: dict[str, dict[int, int]]) -> int:
    ctx = cache.context(V12, req(0, 0, topics))
    session_id, _ = ctx.answer(serve(ctx))
    return session_id


ALL = {"a": {0: 0, 1: 0, 2: 0}, "b": {0: 5}}


def test_a_full_fetch_opens_a_session_and_answers_everything() -> None:
    cache = FetchSessionCache(10)
    ctx = cache.context(V12, req(0, 0, ALL))
    session_id, topics = ctx.answer(serve(ctx))
    assert session_id != 0 and len(cache) == 1
    assert answered(topics) == {("a", 0), ("a", 1), ("a", 2), ("b", 0)}


def test_an_incremental_fetch_reads_every_partition_and_answers_only_changes() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, ALL)

    ctx = cache.context(V12, req(sid, 1, {"a": {1: 7}}))  # only the offset that moved
    assert not ctx.error
    assert offsets(ctx) == {("a", 0): 0, ("a", 1): 7, ("a", 2): 0, ("b", 0): 5}
    same_id, topics = ctx.answer(serve(ctx, hw={("a", 2): 3}, data={("b", 0)}))
    assert same_id == sid
    assert answered(topics) == {("a", 2), ("b", 0)}  # a new high watermark, and records

    ctx = cache.context(V12, req(sid, 2))
    _, topics = ctx.answer(serve(ctx, hw={("a", 2): 3}))
    assert topics == []  # nothing new: nothing in the answer


def test_an_error_is_answered_every_time() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, ALL)
    moved = {("a", 1): ErrorCode.not_leader_or_follower}
    for epoch in (1, 2):
        ctx = cache.context(V12, req(sid, epoch))
        _, topics = ctx.answer(serve(ctx, errors=moved))
        assert answered(topics) == {("a", 1)}
    # once the client forgets it, the partition is no longer read or answered
    ctx = cache.context(V12, req(sid, 3, forget={"a": [1]}))
    assert ("a", 1) not in offsets(ctx)
    assert ctx.answer(serve(ctx))[1] == []


def test_partitions_that_returned_records_go_to_the_end() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, {"a": {0: 0, 1: 0, 2: 0}})
    ctx = cache.context(V12, req(sid, 1))
    ctx.answer(serve(ctx, data={("a", 0)}))
    ctx = cache.context(V12, req(sid, 2))
    assert [fp.partition for t in ctx.topics for fp in t.partitions] == [1, 2, 0]


def test_forgetting_every_partition_closes_the_session() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, {"a": {0: 0}})
    ctx = cache.context(V12, req(sid, 1, forget={"a": [0]}))
    assert ctx.answer(serve(ctx)) == (0, [])
    assert len(cache) == 0


def test_kafka_errors_for_unknown_session_wrong_epoch_and_topic_id_mismatch() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, ALL)
    assert cache.context(V12, req(sid + 1, 1)).error == ErrorCode.fetch_session_id_not_found
    assert cache.context(V12, req(sid, 5)).error == ErrorCode.invalid_fetch_session_epoch
    assert cache.context(V13, req(sid, 1)).error == ErrorCode.fetch_session_topic_id_error
    assert not cache.context(V12, req(sid, 1)).error  # the session is still there, at its epoch


def test_a_full_fetch_with_the_final_epoch_closes_the_session_and_opens_none() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, ALL)
    ctx = cache.context(V12, req(sid, -1, ALL))
    session_id, topics = ctx.answer(serve(ctx))
    assert session_id == 0 and len(cache) == 0 and len(answered(topics)) == 4


def test_a_new_full_fetch_replaces_the_clients_old_session() -> None:
    cache = FetchSessionCache(10)
    sid = opened(cache, ALL)
    ctx = cache.context(V12, req(sid, 0, ALL))
    new_id, _ = ctx.answer(serve(ctx))
    assert new_id not in (0, sid) and len(cache) == 1


def test_no_slots_means_no_sessions() -> None:
    cache = FetchSessionCache(0)
    assert opened(cache, ALL) == 0
    assert cache.context(V12, req(1234, 1)).error == ErrorCode.fetch_session_id_not_found


def test_old_versions_never_get_a_session() -> None:
    cache = FetchSessionCache(10)
    ctx = cache.context(6, req(0, 0, ALL))
    assert ctx.answer(serve(ctx))[0] == 0 and len(cache) == 0


def test_topic_ids_key_sessions_from_v13() -> None:
    cache = FetchSessionCache(10)
    tid = uuid.uuid4()
    full = SimpleNamespace(session_id=0, session_epoch=0, forgotten_topics_data=[],
                           topics=[SimpleNamespace(topic_id=tid, partitions=[
                               SimpleNamespace(partition=0, fetch_offset=3, partition_max_bytes=100)])])
    ctx = cache.context(V13, full)
    sid, _ = ctx.answer([Topic("", (Part(0),), topic_id=tid)])
    ctx = cache.context(V13, SimpleNamespace(session_id=sid, session_epoch=1, topics=[], forgotten_topics_data=[]))
    assert [(t.topic, t.topic_id, [fp.fetch_offset for fp in t.partitions]) for t in ctx.topics] == [(None, tid, [3])]
    assert ctx.answer([Topic("", (Part(0, high_watermark=9),), topic_id=tid)])[1][0].partitions[0].high_watermark == 9


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_cache_evicts_a_session_idle_long_enough() -> None:
    clock = Clock()
    cache = FetchSessionCache(2, clock=clock)
    first = opened(cache, {"a": {0: 0, 1: 0}})
    clock.now += 1
    second = opened(cache, {"a": {0: 0, 1: 0}})
    clock.now += 1
    assert opened(cache, {"b": {0: 0}}) == 0  # nobody idle, and not bigger than anyone: no session
    clock.now += EVICTABLE_AFTER_S
    cache.context(V12, req(second, 1))  # second is in use, first is not
    third = opened(cache, {"b": {0: 0}})
    assert third != 0 and cache.get(first) is None and cache.get(second) is not None


def test_a_full_cache_gives_a_bigger_session_the_slot_of_the_smallest() -> None:
    clock = Clock()
    cache = FetchSessionCache(2, clock=clock)
    small = opened(cache, {"a": {0: 0}})
    big = opened(cache, {"a": {0: 0, 1: 0, 2: 0}})
    bigger = opened(cache, {"a": {0: 0, 1: 0, 2: 0, 3: 0}})
    assert bigger != 0 and cache.get(small) is None and cache.get(big) is not None
    assert cache.evicted == 1


def test_epochs_wrap_past_int32_to_one() -> None:
    assert next_epoch(1) == 2
    assert next_epoch(2**31 - 1) == 1
