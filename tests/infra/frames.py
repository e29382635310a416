"""Length-prefixed Kafka frames over a plain blocking socket, for raw-request tests.

Client libraries choose their own brokers, versions and pacing; tests that need
one exact request on one exact connection write frames with these.
"""

from __future__ import annotations

import socket
import struct


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes, or ConnectionError if the broker closes the connection first."""
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        out += chunk
    return out


def read_frame(sock: socket.socket) -> bytes:
    """One response frame without its 4-byte size prefix."""
    (size,) = struct.unpack(">i", recv_exactly(sock, 4))
    return recv_exactly(sock, size)


def send_frame(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(struct.pack(">i", len(frame)) + frame)
