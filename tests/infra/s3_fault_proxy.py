"""A fault-injecting reverse proxy in front of an S3 endpoint, for outage tests.

Fault tests need the object store to misbehave on command ("the store fails
for a while; producers are not acknowledged during the outage and nothing
acknowledged is lost"), including when the S3 client is another process (a
broker subprocess). So this is a real HTTP server (aiohttp, in its own
thread and event loop) that clients use as their S3 endpoint:

* **pass-through** (default, and after :meth:`S3FaultProxy.heal`): method,
  raw path and query, body, all end-to-end headers (``Authorization``,
  ``X-Amz-*``, ``If-Match``, ``If-None-Match``, ``Range``, ``Host``) and the
  answer (status, headers, body) are forwarded unchanged. ``Host`` is *not*
  rewritten: clients sign their requests for the proxy's ``host:port`` and the
  upstream checks the signature against the same ``Host`` (moto and RGW
  compute it from the header, not from their own address), so SigV4 survives.
  Only hop-by-hop headers are dropped. Path-style addressing is assumed when
  classifying operations.
* :meth:`~S3FaultProxy.fail` — matching requests get ``status`` with a valid
  S3 XML error body (``<Error><Code>…``), after the request body has been read
  so the client sees the answer rather than a reset.
* :meth:`~S3FaultProxy.hang` — matching requests stall without an answer, so
  clients run into their read timeout. When the fault changes (``heal``,
  another ``fail``/``hang``, ``stop``) stalled requests are dropped (connection
  closed, never forwarded): a request that timed out never reaches the store.
* :meth:`~S3FaultProxy.delay` — matching requests are forwarded after a pause.
* :meth:`~S3FaultProxy.reset` — matching requests are forwarded (so a write
  may take effect), then the answer is cut: half its body, or none, and the
  connection is reset. The client cannot tell whether its write happened.

``every=N`` (on ``fail``, ``delay`` and ``reset``) faults only every Nth
matching request and passes the others through: a brownout, not an outage.

Faults can be narrowed to operations (``ops``: ``get``, ``head``, ``put``,
``delete``, ``list``, ``post``), to paths containing a string
(``key_contains``, e.g. ``"/wal/"``) and to the next ``times`` matching
requests.

Control, same semantics both ways: methods on the object, or HTTP at
``<endpoint>/__faults__`` (``GET`` → state JSON; ``POST`` JSON
``{"action": "fail"|"hang"|"delay"|"heal", ...params}``), which :func:`control`
wraps for other processes. Run standalone with
``python -m tests.infra.s3_fault_proxy UPSTREAM [--port N]``; it prints
``endpoint=http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

__all__ = ["S3FaultProxy", "control", "OPS"]

OPS = frozenset({"get", "head", "put", "delete", "list", "post"})
CONTROL_PATH = "/__faults__"

# RFC 7230 hop-by-hop headers, plus Expect (aiohttp answers 100-continue itself;
# it is not signed by SigV4) and Content-Length (recomputed from the body).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

_DEFAULT_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    409: "ConditionalRequestConflict",
    412: "PreconditionFailed",
    416: "InvalidRange",
    500: "InternalError",
    501: "NotImplemented",
    502: "BadGateway",
    503: "SlowDown",
    504: "GatewayTimeout",
}


@dataclass
class _Rule:
    mode: str  # "fail" | "hang" | "delay"
    ops: frozenset[str] | None = None
    key_contains: str | None = None
    times: int | None = None  # remaining matches; None = until changed
    status: int = 503
    code: str | None = None
    seconds: float = 0.0
    every: int = 1  # fault every Nth matching request; the others pass through
    seen: int = 0

    def matches(self, op: str, path: str) -> bool:
        if self.ops is not None and op not in self.ops:
            return False
        return self.key_contains is None or self.key_contains in path


@dataclass
class _Counters:
    requests: int = 0
    forwarded: int = 0
    faulted: int = 0
    hanging: int = 0
    dropped: int = 0
    inflight: int = 0  # forwarded upstream and not answered yet: writes that may still take effect
    by_op: dict[str, int] = field(default_factory=dict)


def classify(method: str, path: str, query: Iterable[str]) -> str:
    """S3 operation family of a path-style request: get/head/put/delete/list/post."""
    method = method.upper()
    if method == "GET":
        segments = [s for s in path.split("/") if s]
        if "list-type" in query or len(segments) <= 1:
            return "list"
        return "get"
    return {"HEAD": "head", "PUT": "put", "DELETE": "delete", "POST": "post"}.get(method, method.lower())


def s3_error_body(status: int, code: str | None, message: str | None = None) -> bytes:
    code = code or _DEFAULT_CODES.get(status, "InternalError")
    message = message or f"injected fault: HTTP {status} {code}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>floe-fault-proxy</RequestId><HostId>floe-fault-proxy</HostId></Error>"
    ).encode()


class S3FaultProxy:
    """Reverse proxy to ``upstream`` (``http://host:port``) with injectable faults."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._rule: _Rule | None = None
        self._counters = _Counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._session: ClientSession | None = None

    # --- lifecycle ----------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("proxy not started")
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> S3FaultProxy:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._thread_main, name="s3-fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("fault proxy did not start in time")
        if self._startup_error is not None:
            err = self._startup_error
            self.stop()
            raise RuntimeError(f"fault proxy failed to start: {err!r}") from err
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Drop stalled requests, close the listener and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and self._stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout)
        self._thread = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() if it happens early
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", CONTROL_PATH, self._control)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        self._session = ClientSession(
            connector=TCPConnector(limit=256, force_close=False),
            timeout=ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
            self._ready.set()
            await self._stop.wait()
        finally:
            self._wake.set()  # release stalled requests (they drop their connection)
            await runner.cleanup()
            await self._session.close()

    # --- fault control ------------------------------------------------------

    def _set(self, rule: _Rule | None) -> None:
        with self._lock:
            self._rule = rule
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_stalled)

    def _wake_stalled(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = asyncio.Event()

    @staticmethod
    def _ops(ops: Iterable[str] | str | None) -> frozenset[str] | None:
        if ops is None:
            return None
        chosen = frozenset([ops] if isinstance(ops, str) else ops)
        unknown = chosen - OPS
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {sorted(OPS)}")
        return chosen

    def fail(
        self,
        status: int = 503,
        ops: Iterable[str] | str | None = None,
        *,
        code: str | None = None,
        times: int | None = None,
        key_contains: str | None = None,
        every: int = 1,
    ) -> None:
        """Answer matching requests with ``status`` and an S3 XML error ``code``."""
        self._set(_Rule("fail", self._ops(ops), key_contains, times, status=status, code=code, every=every))

    def hang(
        self,
        ops: Iterable[str] | str | None = None,
        *,
        times: int | None = None,
        key_contains: str | None = None,
    ) -> None:
        """Stall matching requests (no answer) until the fault changes; then drop them."""
        self._set(_Rule("hang", self._ops(ops), key_contains, times))

    def delay(
        self,
        seconds: float,
        ops: Iterable[str] | str | None = None,
        *,
        times: int | None = None,
        key_contains: str | None = None,
        every: int = 1,
    ) -> None:
        """Forward matching requests after ``seconds``."""
        self._set(_Rule("delay", self._ops(ops), key_contains, times, seconds=seconds, every=every))

    def reset(
        self,
        ops: Iterable[str] | str | None = None,
        *,
        times: int | None = None,
        key_contains: str | None = None,
        every: int = 1,
    ) -> None:
        """Forward matching requests, then reset the connection partway through the answer."""
        self._set(_Rule("reset", self._ops(ops), key_contains, times, every=every))

    def heal(self) -> None:
        """Back to pure pass-through."""
        self._set(None)

    def state(self) -> dict[str, Any]:
        """Current fault (or None) and counters, JSON-friendly."""
        with self._lock:
            rule = None if self._rule is None else asdict(self._rule)
            if rule is not None and rule["ops"] is not None:
                rule["ops"] = sorted(rule["ops"])
            counters = asdict(self._counters)
        return {"fault": rule, **counters}

    @property
    def requests(self) -> int:
        return self._counters.requests

    @property
    def faulted(self) -> int:
        """Requests answered with an injected error, stalled or delayed."""
        return self._counters.faulted

    @property
    def hanging(self) -> int:
        """Requests stalled right now."""
        return self._counters.hanging

    def wait_for(self, predicate: Callable[[S3FaultProxy], bool], timeout: float = 10.0) -> None:
        """Poll until ``predicate(self)`` holds (blocking; use from sync code)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"fault proxy condition not met in {timeout}s: {self.state()}")
            time.sleep(0.01)

    # --- request handling ---------------------------------------------------

    def _pick(self, op: str, path: str) -> _Rule | None:
        with self._lock:
            c = self._counters
            c.requests += 1
            c.by_op[op] = c.by_op.get(op, 0) + 1
            rule = self._rule
            if rule is None or not rule.matches(op, path):
                return None
            rule.seen += 1
            if rule.seen % rule.every:
                return None
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    self._rule = None
            c.faulted += 1
            return rule

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        op = classify(request.method, request.path, request.query.keys())
        rule = self._pick(op, request.path)
        if rule is None:
            return await self._forward(request)
        if rule.mode == "fail":
            await request.read()
            return web.Response(
                status=rule.status,
                body=s3_error_body(rule.status, rule.code),
                headers={"Content-Type": "application/xml", "x-amz-request-id": "floe-fault"},
            )
        if rule.mode == "delay":
            await asyncio.sleep(rule.seconds)
            return await self._forward(request)
        if rule.mode == "reset":
            answer = await self._forward(request)
            body = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b""
            if len(body) > 1:
                cut = web.StreamResponse(status=answer.status, headers=answer.headers)
                cut.content_length = len(body)
                await cut.prepare(request)
                await cut.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        # hang: wait for the fault to change, then drop the connection unanswered.
        assert self._wake is not None
        wake = self._wake
        with self._lock:
            self._counters.hanging += 1
        try:
            await wake.wait()
        finally:
            with self._lock:
                self._counters.hanging -= 1
                self._counters.dropped += 1
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        skip = [h for h in _AUTO_HEADERS if h not in headers]
        url = URL(self.upstream + request.raw_path, encoded=True)
        with self._lock:
            self._counters.inflight += 1
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body if body or request.method in ("PUT", "POST") else None,
                skip_auto_headers=skip,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                out: CIMultiDict[str] = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                )
                status = upstream.status
                length = upstream.headers.get("Content-Length")
        except (TimeoutError, OSError) as exc:
            # The upstream itself is down: answer like an S3 front end would.
            return web.Response(
                status=502,
                body=s3_error_body(502, "BadGateway", f"upstream {self.upstream}: {exc!r}"),
                headers={"Content-Type": "application/xml"},
            )
        finally:
            with self._lock:
                self._counters.inflight -= 1
        with self._lock:
            self._counters.forwarded += 1
        if request.method == "HEAD":
            # No body, but the object's size must survive in Content-Length.
            resp = web.StreamResponse(status=status, headers=out)
            if length is not None:
                resp.content_length = int(length)
            await resp.prepare(request)
            await resp.write_eof()
            return resp
        return web.Response(status=status, body=payload, headers=out)

    async def _control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                params = await request.json()
                action = params.pop("action")
                if action == "heal":
                    self.heal()
                elif action == "fail":
                    self.fail(**params)
                elif action == "hang":
                    self.hang(**params)
                elif action == "delay":
                    self.delay(**params)
                elif action == "reset":
                    self.reset(**params)
                else:
                    raise ValueError(f"unknown action {action!r}")
            except (ValueError, TypeError, KeyError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        elif request.method != "GET":
            return web.json_response({"error": "use GET or POST"}, status=405)
        return web.json_response(self.state())


def control(endpoint: str, action: str, **params: Any) -> dict[str, Any]:
    """Drive a proxy over HTTP (from any process): ``control(ep, "fail", status=503)``."""
    data = json.dumps({"action": action, **params}).encode()
    req = urllib.request.Request(
        endpoint.rstrip("/") + CONTROL_PATH,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("upstream", help="S3 endpoint to forward to, e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    proxy = S3FaultProxy(args.upstream, host=args.host, port=args.port).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"endpoint={proxy.endpoint}", flush=True)
    try:
        done.wait()
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
