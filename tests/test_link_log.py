"""Cluster links in-process: the append path at given offsets, the link metadata ops, the produce check.

The log part runs the real WAL writer, partition manager and log service on
the reference memory store, as the invariant tests do: a mirrored batch keeps
the offsets it carries, gaps stay gaps, offsets never go back, transactions
close only once their marker is durable, and a successor recovers it all.
"""

from __future__ import annotations

import struct

import crc32c
import pytest

from floe_api.internal import CreateTopic, DeleteTopic
from floe_api.links import (
    MIRRORING,
    PROMOTED,
    PROMOTING,
    CreateLink,
    LinkDefinition,
    LinkSource,
    LinkTopics,
    MirroredProducerIds,
    PartitionPromoted,
    PromoteLink,
)
from floe_broker.cluster.controller import fence_session
from floe_broker.cluster.delta import apply as apply_delta
from floe_broker.cluster.delta import diff
from floe_broker.cluster.metadata import ClusterState, allocate_producer_ids, apply_op
from floe_broker.cluster.producer_ids import ProducerIds
from floe_broker.errors import InvalidRecords
from floe_broker.link import produce_refusal
from floe_broker.link.batches import whole_batches
from floe_broker.link.mirror import PartitionMirror, ProducerIdReservation
from floe_broker.link.source import Fetched
from floe_broker.protocol import records
from floe_broker.storage.memory import MemoryStore
from tests.infra.batches import record_batch
from tests.test_log_invariants import Node, topic_state


def at(offset: int, data: bytes) -> bytes:
    """``data`` (one batch) carrying base offset ``offset``, as a source's Fetch answer holds it."""
    return struct.pack(">q", offset) + data[8:]


def control(offset: int, pid: int, epoch: int, *, commit: bool) -> bytes:
    """A transaction marker batch (control, transactional) at ``offset``."""
    key = struct.pack(">hh", 0, 1 if commit else 0)
    value = struct.pack(">hi", 0, 0)
    body = (b"\x00" + bytes([0]) + bytes([0]) + bytes([len(key) * 2]) + key + bytes([len(value) * 2]) + value
            + b"\x00")
    rec = bytes([len(body) * 2]) + body
    after_crc = struct.pack(">hiqqqhii", 0x30, 0, 1, 1, pid, epoch, -1, 1) + rec
    return struct.pack(">qiibI", offset, 9 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


def txn_batch(offset: int, pid: int, epoch: int) -> bytes:
    data = bytearray(record_batch(b"t", producer_id=pid, producer_epoch=epoch, base_sequence=0))
    struct.pack_into(">h", data, 21, 0x10)
    struct.pack_into(">I", data, 17, crc32c.crc32c(bytes(data[21:])))
    return at(offset, bytes(data))


async def mirror(node: Node, part, data: bytes):  # type: ignore[no-untyped-def]
    return await node.log.append_mirrored(part, data, records.scan_batches(data, max_batch_bytes=1 << 20))


async def test_mirrored_batches_keep_their_offsets_gaps_and_survive_a_crash() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    first = await mirror(a, part, at(0, record_batch(count=3)) + at(7, record_batch(count=2)))  # 3..6: compacted
    assert (first.base, first.last, part.next_offset) == (0, 8, 9)
    await mirror(a, part, records.empty_batch(9, 19, 1))  # a range with no batch at the source
    await mirror(a, part, at(20, record_batch()))
    assert part.high_watermark == 21
    assert await a.read_all(part) == [0, 7, 9, 20]
    with pytest.raises(records.OffsetOrderError):
        await mirror(a, part, at(20, record_batch()))  # I4: never below the next offset
    await a.wal.stop()
    await fence_session(store, 1, "sessA")
    b = Node(store, 2, "sessB")
    part_b = await b.pm.open(topic.name, topic.topic_id, 0, epoch=2)
    assert part_b.next_offset == 21 and await b.read_all(part_b) == [0, 7, 9, 20]
    assert (await mirror(b, part_b, at(21, record_batch()))).base == 21  # the successor resumes at the end


async def test_a_mirrored_transaction_closes_once_its_marker_is_durable() -> None:
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    await mirror(a, part, txn_batch(0, 5000, 0))
    assert part.last_stable_offset == 0  # open: read_committed sees nothing yet
    await mirror(a, part, control(1, 5000, 0, commit=False))
    assert part.last_stable_offset == 2 and part.aborted_between(0, 1) == [(5000, 0)]


async def test_transactions_one_after_another_in_one_fetch_answer_each_close_in_turn() -> None:
    """Committed, then aborted, in one answer: the abort is indexed for the second transaction only."""
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    answer = (txn_batch(0, 7, 0) + control(1, 7, 0, commit=True) + txn_batch(2, 7, 0)
              + control(3, 7, 0, commit=False) + at(4, record_batch()))
    done = await mirror(a, part, answer)
    assert (done.base, done.last) == (0, 4)
    assert part.last_stable_offset == 5 and part.txn_aborted == [[7, 2, 3]]


def test_whole_batches_drops_what_precedes_and_a_cut_tail_and_refuses_corruption() -> None:
    blob = at(4, record_batch(count=2)) + at(6, record_batch()) + at(7, record_batch())[:30]
    data, infos = whole_batches(blob, 6)
    assert [i.record_count for i in infos] == [1] and records.base_offsets(data, infos) == [6]
    with pytest.raises(records.OffsetOrderError):
        whole_batches(blob, 5)  # inside the first batch: copying from there would skip records
    broken = bytearray(at(0, record_batch()))
    broken[-1] ^= 1
    with pytest.raises(InvalidRecords):
        whole_batches(bytes(broken), 0)


def test_empty_batch_is_a_valid_batch_with_no_records() -> None:
    batch = records.empty_batch(10, 41, 123)
    (info,) = records.scan_batches(batch, max_batch_bytes=1 << 20)
    assert info.records_count == 0 and info.record_count == 32 and info.producer_id == -1


def _linked_state() -> ClusterState:
    state = ClusterState()
    apply_op(state, CreateTopic(name="orders", partitions=2))
    apply_op(state, CreateLink(definition=LinkDefinition(
        name="dc1", source=LinkSource(bootstrap_servers="kafka:9092", sasl_password_file="/secrets/pw"),
        topics=["orders"])))
    apply_op(state, LinkTopics(name="dc1", topics=["orders"]))
    return state


def test_produce_is_refused_on_a_linked_partition_until_it_is_promoted() -> None:
    state = _linked_state()
    refusal = produce_refusal(state, "orders", 0)
    assert refusal is not None and "read-only mirror of kafka:9092" in refusal and "dc1" in refusal
    assert state.links["dc1"].topics["orders"].state(2) == MIRRORING
    apply_op(state, PartitionPromoted(name="dc1", topic="orders", partition=0))
    assert produce_refusal(state, "orders", 0) is not None  # not asked to promote: a stray report does nothing
    apply_op(state, PromoteLink(name="dc1"))
    apply_op(state, PartitionPromoted(name="dc1", topic="orders", partition=0))
    assert produce_refusal(state, "orders", 0) is None and produce_refusal(state, "orders", 1) is not None
    assert state.links["dc1"].topics["orders"].state(2) == PROMOTING
    apply_op(state, PartitionPromoted(name="dc1", topic="orders", partition=1))
    assert state.links["dc1"].topics["orders"].state(2) == PROMOTED
    assert produce_refusal(state, "other", 0) is None


def test_links_are_durable_metadata_without_secrets() -> None:
    state = _linked_state()
    raw = state.to_bytes()
    assert b"/secrets/pw" in raw and b"password\"" not in raw
    back = ClusterState.from_bytes(raw)
    assert back.links == state.links
    after = state.copy()
    after.version = state.version + 1
    apply_op(after, PromoteLink(name="dc1", topics=["orders"]))
    moved = apply_delta(back, diff(state, after))
    assert moved.links["dc1"].topics["orders"].promoting
    apply_op(moved, DeleteTopic(name="orders"))
    assert "orders" not in moved.links["dc1"].topics  # a topic of that name created later is not linked


def test_the_source_password_comes_from_its_file_and_topics_match_whole_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from floe_broker.link.source import chosen, connection_settings

    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    source = LinkSource(bootstrap_servers="k:9093", security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="floe", sasl_password_file=str(secret))
    settings = connection_settings(source)
    assert settings["sasl_plain_password"] == "s3cret" and settings["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "s3cret" not in source.model_dump_json()  # what the metadata holds
    assert chosen(["a"], r"pay\..*", ["a", "b", "pay.x", "xpay.y", "__consumer_offsets"]) == ["a", "pay.x"]


def test_a_link_with_a_bad_regular_expression_is_refused_when_made() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a regular expression"):
        LinkDefinition(name="x", source=LinkSource(bootstrap_servers="k:9092"), topic_regex="orders[")


class _Source:
    """A source cluster answering one Fetch with fixed batches (what aiokafka's raw Fetch returns)."""

    def __init__(self, data: bytes, high_watermark: int) -> None:
        self.data, self.high_watermark = data, high_watermark

    async def fetch(self, topic: str, partition: int, offset: int, *, max_bytes: int, max_wait_ms: int) -> Fetched:
        return Fetched(0, self.high_watermark, 0, self.data if offset == 0 else b"")


class _Controller:
    """The controller's producer-id allocation over one ClusterState."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    async def producer_ids(self, count: int) -> int:
        return allocate_producer_ids(self.state, count)


async def test_floe_never_hands_out_a_producer_id_a_mirrored_batch_used() -> None:
    """A source producer's id mirrored into a partition would collide with a Floe producer given the same id:
    its first batch (sequence 0) would be taken for the mirrored producer's duplicate."""
    state = _linked_state()
    ids = ProducerIds(_Controller(state), floor=lambda: state.mirrored_producer_id_max)  # type: ignore[arg-type]
    assert await ids.next() == 1000  # this broker now holds the block 1000..1999
    store = MemoryStore()
    _, topic = topic_state()
    a = Node(store, 1, "sessA")
    part = await a.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    source_pid = 1001  # the source's own allocator handed this out: inside Floe's block
    answer = at(0, record_batch(count=3, producer_id=source_pid, producer_epoch=0, base_sequence=0))

    async def reserve(pid: int) -> None:
        apply_op(state, MirroredProducerIds(highest=pid))

    async def promoted(_t: str, _i: int) -> None:
        raise AssertionError("not promoting")

    mirror = PartitionMirror("dc1", _Source(answer, 3), a.log, part, promoting=lambda: False,  # type: ignore[arg-type]
                             promoted=promoted, node_id=1, producer_ids=ProducerIdReservation(
                                 highest=lambda: state.mirrored_producer_id_max, reserve=reserve))
    await mirror.step()
    assert part.next_offset == 3
    fresh = await ids.next()
    assert fresh > source_pid  # skipped inside the block this broker held
    assert await ProducerIds(_Controller(state)).next() > source_pid  # and a new block starts above it
    assert ClusterState.from_bytes(state.to_bytes()).mirrored_producer_id_max == source_pid  # a restart keeps it
    landed = await a.produce_batch(part, record_batch(producer_id=fresh, producer_epoch=0, base_sequence=0))
    assert landed.base == 3  # the Floe producer's first batch is stored, not dropped as a duplicate


def test_a_forced_promotion_is_kept_in_the_metadata() -> None:
    state = _linked_state()
    apply_op(state, PromoteLink(name="dc1", topics=["orders"]))
    assert not state.links["dc1"].topics["orders"].forced
    apply_op(state, PromoteLink(name="dc1", topics=["orders"], force=True))
    apply_op(state, PromoteLink(name="dc1", topics=["orders"]))  # asking again does not take the force back
    assert state.links["dc1"].topics["orders"].forced
