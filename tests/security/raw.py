"""A bare Kafka client over a socket, for the attacks real client libraries cannot make.

It speaks the same framing as any client (``tests.inprocess.wire`` encodes
with ``kio``), so a test can send a Metadata request before authenticating,
a SCRAM proof that is wrong on purpose, or stop half-way through a login,
and see exactly what comes back: a response with an error code, or a close.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
from typing import Any

from kio.index import load_request_schema
from scramp import ScramClient

from floe_broker.protocol.build import mk
from tests.inprocess.wire import decode_response, encode_request

API_VERSIONS, METADATA, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 3, 17, 36


class Closed(Exception):
    """The broker closed the connection."""


class RawClient:
    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 10) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self._corr = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            try:
                chunk = self.sock.recv(n - len(out))
            except (ConnectionResetError, ssl.SSLError) as exc:
                raise Closed(str(exc)) from None
            if not chunk:
                raise Closed("connection closed by the broker")
            out += chunk
        return out

    def send(self, api_key: int, version: int, body: Any) -> int:
        self._corr += 1
        frame = encode_request(api_key, version, body, self._corr, client_id="raw")
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self._corr

    def call(self, api_key: int, version: int, **fields: Any) -> Any:
        corr = self.send(api_key, version, mk(load_request_schema(api_key, version), **fields))
        (size,) = struct.unpack(">i", self._recv_exactly(4))
        raw = self._recv_exactly(size)
        got, body = decode_response(api_key, version, [struct.pack(">i", size), raw])
        assert got == corr
        return body

    def is_closed(self, timeout: float = 10) -> bool:
        """True once the broker has closed the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    # ---- SASL ---------------------------------------------------------------------------

    def handshake(self, mechanism: str, version: int = 1) -> Any:
        return self.call(SASL_HANDSHAKE, version, mechanism=mechanism)

    def authenticate(self, token: bytes, version: int = 2) -> Any:
        return self.call(SASL_AUTHENTICATE, version, auth_bytes=token)

    def login_plain(self, user: str, password: str) -> Any:
        assert self.handshake("PLAIN").error_code == 0
        return self.authenticate(f"\0{user}\0{password}".encode())

    def login_scram(self, mechanism: str, user: str, password: str, *, forge_proof: bool = False) -> Any:
        """A full SCRAM exchange; the last SaslAuthenticate response (or the first with an error)."""
        assert self.handshake(mechanism).error_code == 0
        client = ScramClient([mechanism], user, password)
        first = self.authenticate(client.get_client_first().encode())
        if first.error_code != 0:
            return first
        if forge_proof:  # skip the PBKDF2: a proof of the right length that is wrong
            server_first = first.auth_bytes.decode()
            nonce = dict(kv.split("=", 1) for kv in server_first.split(","))["r"]
            size = 64 if mechanism.endswith("512") else 32
            final = f"c=biws,r={nonce},p={base64.b64encode(bytes(size)).decode()}"
            return self.authenticate(final.encode())
        client.set_server_first(first.auth_bytes.decode())
        last = self.authenticate(client.get_client_final().encode())
        if last.error_code == 0:
            client.set_server_final(last.auth_bytes.decode())
        return last
