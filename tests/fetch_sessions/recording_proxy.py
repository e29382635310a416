"""A TCP proxy that records every Fetch exchange: request and response bytes, session id and epoch.

It decodes the Fetch request's session fields with our codec (only to look,
the bytes are forwarded unchanged) and pairs each response with its request
by correlation id.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

from floe_broker.protocol.codec import decode_request, peek_header
from tests.infra.kafka_proxy import FrameProxy

FETCH = 1


@dataclass
class FetchExchange:
    version: int
    session_id: int
    session_epoch: int
    partitions: int  # partitions the request names
    forgotten: int
    request_bytes: int
    response_bytes: int = 0
    response_session_id: int | None = None
    response_error: int | None = None


class RecordingProxy(FrameProxy):
    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.fetches: list[FetchExchange] = []
        self._lock = threading.Lock()

    def snapshot(self) -> list[FetchExchange]:
        with self._lock:
            return [f for f in self.fetches if f.response_bytes]

    def new_connection(self) -> dict[int, FetchExchange]:
        return {}  # Fetch requests in flight by correlation id

    def on_request(self, frame: bytes, pending: dict[int, FetchExchange]) -> None:
        api_key, version, correlation = peek_header(frame)
        if api_key != FETCH:
            return
        body = decode_request(frame, {FETCH: (0, 17)}).body
        ex = FetchExchange(version=version, session_id=getattr(body, "session_id", 0),
                           session_epoch=getattr(body, "session_epoch", -1),
                           partitions=sum(len(t.partitions) for t in body.topics),
                           forgotten=sum(len(t.partitions) for t in getattr(body, "forgotten_topics_data", ())),
                           request_bytes=len(frame) + 4)
        pending[correlation] = ex
        with self._lock:
            self.fetches.append(ex)

    def on_response(self, frame: bytes, pending: dict[int, FetchExchange]) -> None:
        (correlation,) = struct.unpack_from(">i", frame, 0)
        ex = pending.pop(correlation, None)
        if ex is None:
            return
        # header: correlation id (+ an empty tag buffer from v12), then throttle_time_ms, error_code, session_id
        if ex.version >= 7:
            at = 4 + (1 if ex.version >= 12 else 0) + 4
            ex.response_error, ex.response_session_id = struct.unpack_from(">hi", frame, at)
        with self._lock:
            ex.response_bytes = len(frame) + 4
