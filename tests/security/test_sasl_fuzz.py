"""Fuzzed SaslAuthenticate payloads through the real dispatcher: always an answer with an error code, or a close.

No sockets: each example opens a fresh ``AuthSession`` on a SASL listener,
hands the dispatcher a SaslHandshake and then the fuzzed SaslAuthenticate
messages, exactly as a connection would, and checks what a client would
see. Nothing may raise past the dispatcher except ``FrameError`` (which the
connection turns into a close), no payload may authenticate, and every
refusal must mark the connection for closing.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema
from scramp import ScramClient

from floe_broker.cluster.metadata import ClusterState
from floe_broker.config import BrokerConfig
from floe_broker.dispatch import Dispatcher
from floe_broker.errors import FrameError
from floe_broker.protocol.build import mk
from floe_broker.security.scram_store import from_password
from floe_broker.security.session import SESSION, AuthSession
from tests.inprocess.wire import decode_response, encode_request

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REFUSALS = {58, 34}


def _state() -> ClusterState:
    s = ClusterState()
    s.scram = {"alice": {m: from_password(m, "alice-pw", 4096).to_json() for m in MECHANISMS[1:]}}
    return s


STATE = _state()
CTX = types.SimpleNamespace(state=lambda: STATE, config=BrokerConfig(storage="memory://fuzz"))


async def _call(d: Dispatcher, api_key: int, version: int, **fields: Any) -> Any:
    body = mk(load_request_schema(api_key, version), **fields)
    parts = await d(encode_request(api_key, version, body, correlation_id=7), "127.0.0.1:1")
    assert parts is not None
    return decode_response(api_key, version, parts)[1]


async def _exchange(mechanism: str, payloads: list[bytes], version: int, prefix: bytes | None) -> None:
    d = Dispatcher(CTX)  # type: ignore[arg-type]
    session = AuthSession.open("SASL_SSL", "SASL_SSL", sasl=True, mechanisms=MECHANISMS)
    SESSION.set(session)
    assert (await _call(d, 17, 1, mechanism=mechanism)).error_code == 0
    if prefix is not None:  # a genuine client-first, so the fuzz reaches the final step
        first = await _call(d, 36, version, auth_bytes=prefix)
        assert first.error_code == 0
    for payload in payloads:
        try:
            r = await _call(d, 36, version, auth_bytes=payload)
        except FrameError:
            return  # the connection would close
        assert int(r.error_code) in REFUSALS | {0}
        assert not session.authenticated, "a fuzzed payload must never log in"
        if r.error_code != 0:
            assert session.close_after_response, "a refusal closes the connection"
            return


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mechanism=st.sampled_from(MECHANISMS), version=st.integers(0, 2),
       payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_fuzzed_payloads_are_refused_never_crash(mechanism: str, version: int, payloads: list[bytes]) -> None:
    asyncio.run(_exchange(mechanism, payloads, version, None))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mechanism=st.sampled_from(MECHANISMS[1:]),
       final=st.one_of(st.binary(max_size=300),
                       st.text(max_size=200).map(lambda t: f"c=biws,r={t},p=AAAA".encode()),
                       st.text(max_size=200).map(str.encode)))
def test_fuzzed_scram_finals_are_refused_never_crash(mechanism: str, final: bytes) -> None:
    first = ScramClient([mechanism], "alice", "x").get_client_first().encode()
    asyncio.run(_exchange(mechanism, [final], 2, first))


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(min_size=0, max_size=200))
def test_fuzzed_frames_before_login_are_answered_or_closed(frame: bytes) -> None:
    async def run() -> None:
        d = Dispatcher(CTX)  # type: ignore[arg-type]
        SESSION.set(AuthSession.open("SASL_SSL", "SASL_SSL", sasl=True, mechanisms=MECHANISMS))
        try:
            await d(frame, "127.0.0.1:1")
        except FrameError:
            pass  # closed with a log line

    asyncio.run(run())
