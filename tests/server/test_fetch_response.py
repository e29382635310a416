"""The hand-packed Fetch response encoder writes exactly kio's bytes, for every Fetch version served.

``protocol.fetch_response`` replaces kio's generic writer on the fetch path; a
client decodes what it sends, so any difference from kio's encoding of the same
response (a field at the wrong version, a length off by the compact +1, a
tagged-field section missing) is a bug a consumer would see. Each case here is
built once as the encoder's answer and once as kio entities, and the framed
bytes must be equal; kio must also decode ours back to the same response.
"""

from __future__ import annotations

import datetime
import io
import uuid
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from floe_broker.protocol import codec
from floe_broker.protocol.build import mk, nested, response_class
from floe_broker.protocol.codec import RecordsViews
from floe_broker.protocol.fetch_response import FetchAnswer, PartitionAnswer, TopicAnswer
from floe_broker.quota_gate import with_throttle
from tests.infra.batches import record_batch

FETCH = 1
VERSIONS = range(4, 18)
TOPIC_ID = uuid.UUID("6f1c2a4e-3b5d-4c7e-9f10-112233445566")


def _batches(*values: bytes) -> list[memoryview]:
    return [memoryview(record_batch(v)) for v in values]


def _cases() -> dict[str, FetchAnswer]:
    big = _batches(b"x" * 20_000, b"y" * 300)  # record lengths past one varint byte
    many = tuple(PartitionAnswer(i, ErrorCode.none, 1000 + i, 1000 + i, i) for i in range(200))  # > 127 entries
    return {
        "empty": FetchAnswer(),
        "session error": FetchAnswer(error_code=ErrorCode.invalid_fetch_session_epoch),
        "records and errors": FetchAnswer(session_id=123456789, responses=(
            TopicAnswer("orders", TOPIC_ID, (
                PartitionAnswer(0, ErrorCode.none, 10, 10, 0, None, RecordsViews(_batches(b"a", b"bc"))),
                PartitionAnswer(1, ErrorCode.offset_out_of_range, 5, 5, 2),
                PartitionAnswer(2, ErrorCode.not_leader_or_follower),
                PartitionAnswer(3, ErrorCode.none, 7, 7, 0, None, b""),
            )),
            TopicAnswer("t" * 200, uuid.UUID(int=7), (PartitionAnswer(9, ErrorCode.none, 1, 1, 0, None, None),)),
        )),
        "aborted transactions": FetchAnswer(responses=(
            TopicAnswer("txn", TOPIC_ID, (
                PartitionAnswer(0, ErrorCode.none, 40, 30, 0, ((1001, 3), (1002, 17)), RecordsViews(big)),
                PartitionAnswer(1, ErrorCode.none, 8, 8, 0, (), RecordsViews(_batches(b"committed"))),
            )),
        )),
        "many partitions": FetchAnswer(session_id=5, responses=(TopicAnswer("wide", TOPIC_ID, many),)),
        "throttled": with_throttle(FetchAnswer(responses=(TopicAnswer("q", TOPIC_ID, (PartitionAnswer(0),)),)), 1500),
    }


def _as_kio(answer: FetchAnswer, version: int) -> Any:
    cls = response_class(FETCH, version)
    topic_cls, part_cls, aborted_cls = (nested(cls, n) for n in ("FetchableTopicResponse", "PartitionData",
                                                                  "AbortedTransaction"))

    def records(p: PartitionAnswer) -> bytes | None:
        if isinstance(p.records, RecordsViews):
            return b"".join(bytes(v) for v in p.records.views)
        return p.records

    topics = tuple(
        mk(topic_cls, topic=t.topic, topic_id=t.topic_id, partitions=tuple(
            mk(part_cls, partition_index=p.partition_index, error_code=p.error_code, high_watermark=p.high_watermark,
               last_stable_offset=p.last_stable_offset, log_start_offset=p.log_start_offset,
               preferred_read_replica=-1, records=records(p),
               aborted_transactions=None if p.aborted_transactions is None else tuple(
                   mk(aborted_cls, producer_id=pid, first_offset=first) for pid, first in p.aborted_transactions))
            for p in t.partitions))
        for t in answer.responses)
    return mk(cls, throttle_time=datetime.timedelta(milliseconds=answer.throttle_time), error_code=answer.error_code,
              session_id=answer.session_id, responses=topics)


def _joined(frame: codec.Frame) -> bytes:
    return b"".join(bytes(part) for part in frame)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(_cases()))
def test_the_encoder_writes_kios_bytes_for_the_same_response(case: str, version: int) -> None:
    answer = _cases()[case]
    ours = _joined(codec.encode_response(FETCH, version, 42, answer))
    theirs = _joined(codec.encode_response(FETCH, version, 42, _as_kio(answer, version)))
    assert ours == theirs


@pytest.mark.parametrize("version", [4, 11, 12, 17])
def test_kio_decodes_the_encoders_bytes_to_the_same_response(version: int) -> None:
    answer = _cases()["aborted transactions"]
    body = b"".join(bytes(p) for p in answer.encode_body(version))
    decoded, size = entity_reader(response_class(FETCH, version))(body, 0)
    assert size == len(body)
    again = io.BytesIO()
    entity_writer(response_class(FETCH, version))(again, decoded)
    assert again.getvalue() == body
    parts = [p for t in decoded.responses for p in t.partitions]
    assert [p.partition_index for p in parts] == [0, 1]
    assert [(a.producer_id, a.first_offset) for a in parts[0].aborted_transactions] == [(1001, 3), (1002, 17)]


def test_record_batches_are_spliced_by_reference_not_copied() -> None:
    views = _batches(b"payload" * 100)
    answer = FetchAnswer(responses=(TopicAnswer("t", TOPIC_ID, (PartitionAnswer(0, records=RecordsViews(views)),)),))
    frame = codec.encode_response(FETCH, 17, 1, answer)
    assert any(part is views[0] for part in frame)
