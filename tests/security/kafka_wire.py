"""One Kafka request over a real socket, encoded and decoded with ``kio``.

For the APIs the Python clients do not offer (DescribeClientQuotas,
AlterClientQuotas) and for asking one particular broker, which client
libraries do not let a test choose.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from tests.infra.frames import read_frame, send_frame
from tests.inprocess.wire import decode_response, encode_request


def request(address: str, api_key: int, version: int, body: Any, *, client_id: str, timeout: float = 10) -> Any:
    host, _, port = address.rpartition(":")
    frame = encode_request(api_key, version, body, correlation_id=7, client_id=client_id)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        send_frame(s, frame)
        raw = read_frame(s)
    corr, decoded = decode_response(api_key, version, [struct.pack(">i", len(raw)), raw])
    assert corr == 7
    return decoded
