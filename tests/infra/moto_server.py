"""A real moto S3 server in a subprocess, for tests that go through boto3 and HTTP.

Why a subprocess and not ``mock_aws``: the code under test runs boto3 in
thread pools, and broker processes started by tests need an endpoint they can
reach; an in-process mock covers neither. The server listens on an ephemeral
127.0.0.1 port chosen by the kernel (``-p 0``; werkzeug prints the real port),
so parallel sessions never collide.

With ``auth=True`` (default) the server *checks SigV4 signatures*: the helper
creates an IAM user with an ``s3:*`` policy while moto still accepts anonymous
calls, then switches authentication on (``/moto-api/reset-auth``). Tests then
get real ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch`` answers for bad
credentials, and anything in between (the fault proxy) is proven not to break
signatures. Use :attr:`access_key` / :attr:`secret_key` (or :meth:`env` for a
subprocess).

moto quirks worth knowing (moto 5.2): bucket names must be valid S3 names
(``"b"`` is refused); ``If-Match`` is compared with quotes stripped on both
sides, so quoted and unquoted ETags both work; ``If-Match`` on a missing key
answers 404 ``NoSuchKey``; conditional checks and the write are not done
under one lock, so concurrent conditional PUTs can both win (hence ``serialize``).

The subprocess is always reaped: :meth:`stop` (also from ``__exit__``, on any
start failure, at interpreter exit via ``atexit``) sends SIGTERM then SIGKILL
to the PID it started, and on Linux the kernel kills it if this process dies
first (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

__all__ = ["MotoServer", "MotoServerError"]

DEFAULT_BUCKET = "floe-test"

# ``python -m moto.server`` with request handling serialized by one lock (see
# MotoServer's ``serialize``). The response is materialized under the lock so
# the whole request, including reading the body, is one critical section.
_SERIALIZED_LAUNCHER = """
import sys, threading
from moto.moto_server import werkzeug_app
_lock = threading.Lock()
_call = werkzeug_app.DomainDispatcherApplication.__call__
def _serialized(self, environ, start_response):
    with _lock:
        return list(_call(self, environ, start_response))
werkzeug_app.DomainDispatcherApplication.__call__ = _serialized
from moto.server import main
main(sys.argv[1:])
"""
_PORT_RE = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


class MotoServerError(RuntimeError):
    """The server did not come up; carries the tail of its log."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """preexec_fn: have the kernel SIGKILL the server if the test process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


_LIVE: weakref.WeakSet[MotoServer] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1, with one bucket created.

    ``serialize=True`` (default) makes the server handle one request at a time
    (connections stay concurrent and keep-alive). Why: moto 5.2 evaluates
    ``If-None-Match``/``If-Match`` and then stores the object without holding a
    lock, and its werkzeug server is threaded, so two racing conditional PUTs
    can both succeed — observed: 2 winners out of 12 concurrent create-only
    PUTs of one key. AWS S3, MinIO and RGW make the check and the write atomic;
    a race test against an unserialized moto would fail for moto's sake.

    Attributes valid after :meth:`start`: ``endpoint`` (``http://127.0.0.1:PORT``),
    ``port``, ``pid``, ``bucket``, ``region``, ``access_key``, ``secret_key``.
    """

    def __init__(
        self,
        *,
        bucket: str | None = DEFAULT_BUCKET,
        auth: bool = True,
        region: str = "us-east-1",
        serialize: bool = True,
    ) -> None:
        self.bucket = bucket
        self.auth = auth
        self.region = region
        self.serialize = serialize
        # Before auth is switched on moto accepts any key; these are replaced by
        # the IAM user's key when auth=True.
        self.access_key = "testing"
        self.secret_key = "testing"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._log_file: Any = None

    # --- lifecycle ----------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("MotoServer not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> MotoServer:
        """Start the server, wait until it answers, set up auth and the bucket."""
        if self.proc is not None:
            raise RuntimeError("already started")
        fd, log_path = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        os.close(fd)
        self._log_path = Path(log_path)
        self._log_file = open(log_path, "wb")  # closed in stop()
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)  # auth is switched on explicitly below
        env["PYTHONUNBUFFERED"] = "1"
        _LIVE.add(self)
        try:
            entry = ["-c", _SERIALIZED_LAUNCHER] if self.serialize else ["-m", "moto.server"]
            self.proc = subprocess.Popen(
                [sys.executable, *entry, "-H", "127.0.0.1", "-p", "0"],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            deadline = time.monotonic() + timeout
            self.port = self._wait_for_port(deadline)
            self._wait_http(deadline)
            if self.auth:
                self._enable_auth()
            if self.bucket:
                self.create_bucket(self.bucket)
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if isinstance(exc, MotoServerError):
                raise MotoServerError(f"{exc}\n--- moto log ---\n{tail}") from None
            raise
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the server by PID (SIGTERM, then SIGKILL after ``grace``)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
        if self._log_file is not None:
            with contextlib.suppress(Exception):
                self._log_file.close()
            self._log_file = None
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
        self.port = 0
        _LIVE.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise MotoServerError(f"moto server exited early (code {code})")

    def _wait_for_port(self, deadline: float) -> int:
        assert self._log_path is not None
        while time.monotonic() < deadline:
            self._alive()
            m = _PORT_RE.search(self._log_path.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            time.sleep(0.02)
        raise MotoServerError("moto server did not report its port in time")

    def _wait_http(self, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._alive()
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2) as resp:
                    if resp.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                last = exc
            except OSError as exc:
                last = exc
            time.sleep(0.02)
        raise MotoServerError(f"moto server at {self.endpoint} did not answer in time: {last}")

    # --- setup --------------------------------------------------------------

    def _moto_api(self, path: str, body: bytes) -> bytes:
        req = urllib.request.Request(
            self.endpoint + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())

    def _enable_auth(self) -> None:
        iam = self._boto("iam", "AKIAFLOEBOOTSTRAP000", "bootstrap")
        iam.create_user(UserName="floe")
        iam.put_user_policy(
            UserName="floe",
            PolicyName="floe-s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="floe")["AccessKey"]
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        # From now on every request must carry a valid SigV4 signature.
        self._moto_api("/moto-api/reset-auth", b"0")

    def _boto(self, service: str, access_key: str, secret_key: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def client(self) -> Any:
        """A boto3 S3 client with this server's credentials (path-style)."""
        return self._boto("s3", self.access_key, self.secret_key)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 in a subprocess at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }
