"""A throwaway single-node Ceph cluster with radosgw, for integration tests.

``Radosgw(workdir).start()`` brings up, entirely on 127.0.0.1 and inside a fresh
directory under ``workdir``:

* one ``ceph-mon`` (msgr2 only, auth ``none``),
* one ``ceph-osd`` on ``memstore`` (all data in RAM, ``memstore_device_bytes``),
* one ``radosgw`` serving S3 via the beast frontend on a free port,

and an S3 user with a fixed access/secret key.  No mgr, no systemd, no root needed
(the daemons are run with ``-f`` as children of this process).  ``stop()`` kills every
daemon it started, by PID, waits for it, and removes the directory.

See RADOSGW.md beside this file for packages, timings and observed S3 quirks.

Usage::

    with Radosgw(tmp_path) as rgw:
        s3 = boto3.client("s3", endpoint_url=rgw.endpoint, region_name=rgw.region,
                          aws_access_key_id=rgw.access_key,
                          aws_secret_access_key=rgw.secret_key)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from pathlib import Path

__all__ = ["Radosgw", "RadosgwError", "radosgw_available", "REQUIRED_BINARIES"]

#: Binaries the helper runs.  Debian 12 packages: ceph-mon (ceph-mon), ceph-osd (ceph-osd),
#: radosgw (radosgw), ceph + radosgw-admin (ceph-common), monmaptool (ceph-base).
REQUIRED_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")

APT_INSTALL_HINT = "apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw"

DEFAULT_ACCESS_KEY = "FLOETESTACCESSKEY000"
DEFAULT_SECRET_KEY = "floeTestSecretKey0000000000000000000000000"


class RadosgwError(RuntimeError):
    """Raised when the cluster cannot be brought up; carries a tail of the daemon logs."""


def radosgw_available() -> tuple[bool, str]:
    """(True, "") if every binary the helper needs is on PATH, else (False, reason)."""
    if not sys.platform.startswith("linux"):
        return False, f"radosgw helper needs Linux (platform is {sys.platform})"
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        return False, (f"Ceph binaries not installed: {', '.join(missing)} (Debian: {APT_INSTALL_HINT})")
    return True, ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Daemons of every live instance, so an interpreter exit without stop() still cleans up.
_LIVE: weakref.WeakSet[Radosgw] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for inst in list(_LIVE):
        with contextlib.suppress(Exception):
            inst.stop()


class Radosgw:
    """Single-node Ceph (mon + memstore OSD) plus radosgw, on 127.0.0.1.

    Attributes valid after ``start()``: ``endpoint`` (``http://127.0.0.1:PORT``),
    ``access_key``, ``secret_key``, ``region``, ``dir`` (state directory),
    ``conf`` (path of the generated ceph.conf), ``pids`` (name -> pid),
    ``startup_seconds``.
    """

    #: Region to give boto3.  RGW's default zonegroup is called "default"; with
    #: rgw_relaxed_region_enforcement (set below) any region name would be accepted.
    region = "default"

    def __init__(
        self,
        workdir: Path | str,
        *,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        memstore_bytes: int = 1 << 30,
        rgw_port: int | None = None,
        extra_conf: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.workdir = Path(workdir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.memstore_bytes = memstore_bytes
        self._want_rgw_port = rgw_port
        self.extra_conf = dict(extra_conf or {})
        self.die_with_parent = die_with_parent
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.fsid = str(uuid.uuid4())
        self.mon_port = 0
        self.rgw_port = 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.startup_seconds: float | None = None
        #: seconds since start() at which each phase finished (mon, osd, rgw, user)
        self.timings: dict[str, float] = {}
        self._t0 = 0.0
        self._log_files: list = []

    # ------------------------------------------------------------------ public API

    @property
    def endpoint(self) -> str:
        if not self.rgw_port:
            raise RuntimeError("Radosgw not started")
        return f"http://127.0.0.1:{self.rgw_port}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def __enter__(self) -> Radosgw:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> Radosgw:
        """Bring everything up; raise RadosgwError (after cleaning up) on failure."""
        ok, reason = radosgw_available()
        if not ok:
            raise RadosgwError(reason)
        if self.procs:
            raise RuntimeError("already started")
        t0 = self._t0 = time.monotonic()
        self.timings = {}
        deadline = t0 + timeout
        _LIVE.add(self)
        try:
            self._start(deadline)
        except BaseException as e:
            logs = self.log_tail()
            self.stop()
            if isinstance(e, RadosgwError):
                raise RadosgwError(f"{e}\n{logs}") from None
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Kill every daemon this instance started (by PID), wait, remove state.

        Daemons get SIGTERM one at a time in reverse start order (rgw, OSD, mon: each
        exits in well under a second while the mon is still up), then SIGKILL after
        ``grace`` seconds.
        """
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    p.wait()
        for f in self._log_files:
            with contextlib.suppress(Exception):
                f.close()
        self._log_files.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        _LIVE.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of every daemon log (for error messages)."""
        if self.dir is None:
            return ""
        out = []
        for path in sorted((self.dir / "log").glob("*")):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        """Run the ``ceph`` CLI against this cluster and return stdout."""
        return self._run(["ceph", "-c", str(self.conf), "--connect-timeout", "10", *args], timeout=timeout)

    def radosgw_admin(self, *args: str, timeout: float = 60.0) -> str:
        return self._run(["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw", *args], timeout=timeout)

    # ------------------------------------------------------------------ internals

    def _start(self, deadline: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="ceph-", dir=self.workdir))
        for sub in ("mon", "osd", "log", "run", "rgw"):
            (self.dir / sub).mkdir()
        self.mon_port = _free_port()
        self.rgw_port = self._want_rgw_port or _free_port()
        self.conf = self.dir / "ceph.conf"
        self.conf.write_text(self._conf_text())

        # -- monitor
        monmap = self.dir / "monmap"
        self._run(
            [
                "monmaptool",
                "--create",
                "--clobber",
                "--fsid",
                self.fsid,
                "--addv",
                "a",
                f"[v2:127.0.0.1:{self.mon_port}]",
                str(monmap),
            ]
        )
        self._run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap)])
        self._spawn("mon.a", ["ceph-mon", "-c", str(self.conf), "-f", "-i", "a"])
        self._poll(deadline, "ceph-mon answering", self._mon_up)
        self._mark("mon")

        # -- OSD (memstore)
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RadosgwError(f"unexpected osd id {osd_id!r}")
        (self.dir / "osd" / "ceph-0").mkdir()
        self._run(["ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], timeout=60)
        self._spawn("osd.0", ["ceph-osd", "-c", str(self.conf), "-f", "-i", "0"])
        self._poll(deadline, "osd.0 up", self._osd_up)
        self._mark("osd")

        # -- radosgw
        self._spawn("rgw", ["radosgw", "-c", str(self.conf), "-f", "-n", "client.rgw"])
        self._poll(deadline, "radosgw answering HTTP", self._http_up)
        self._mark("rgw")
        self.radosgw_admin(
            "user",
            "create",
            "--uid",
            "floe",
            "--display-name",
            "floe",
            "--access-key",
            self.access_key,
            "--secret-key",
            self.secret_key,
        )
        self._poll(deadline, "S3 credentials accepted", self._signed_ok)
        self._mark("user")

    def _mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self._t0, 3)

    def _conf_text(self) -> str:
        d = self.dir
        assert d is not None
        opts: dict[str, str] = {
            "fsid": self.fsid,
            "mon host": f"[v2:127.0.0.1:{self.mon_port}]",
            "mon initial members": "a",
            "public addr": "127.0.0.1",
            "cluster addr": "127.0.0.1",
            "ms bind msgr1": "false",
            "ms bind msgr2": "true",
            "auth cluster required": "none",
            "auth service required": "none",
            "auth client required": "none",
            "mon warn on insecure global id reclaim allowed": "false",
            # radosgw defaults ms_mon_client_mode to "secure", which auth=none cannot
            # provide: the daemon then loops on "get_initial_auth_request returned -13".
            "ms mon client mode": "crc",
            "ms mon service mode": "crc",
            "ms mon cluster mode": "crc",
            "ms client mode": "crc",
            "ms service mode": "crc",
            "ms cluster mode": "crc",
            "run dir": f"{d}/run",
            "admin socket": f"{d}/run/$name.asok",
            "pid file": f"{d}/run/$name.pid",
            "log file": f"{d}/log/$name.log",
            "log to stderr": "false",
            "err to stderr": "true",
            "log to file": "true",
            "mon cluster log file": f"{d}/log/cluster.log",
            "crash dir": f"{d}/crash",
            "keyring": f"{d}/keyring",
            # placement / pools
            "osd pool default size": "1",
            "osd pool default min size": "1",
            "osd pool default pg num": "8",
            "osd pool default pgp num": "8",
            "osd pool default pg autoscale mode": "off",
            "osd crush chooseleaf type": "0",
            "mon allow pool size one": "true",
            "mon allow pool delete": "true",
            "mon max pg per osd": "1000",
            "mon warn on pool no redundancy": "false",
            "mon data avail crit": "1",
            "mon data avail warn": "2",
            # every pool rgw creates is one osdmap commit: commit fast, not once a second
            "paxos propose interval": "0.05",
            "paxos min wait": "0.01",
        }
        mon = {
            "mon data": f"{d}/mon/ceph-$id",
        }
        osd = {
            "osd data": f"{d}/osd/ceph-$id",
            "osd objectstore": "memstore",
            "memstore device bytes": str(self.memstore_bytes),
            "osd crush update on start": "true",
            "osd op num shards": "2",
            "osd op num threads per shard": "1",
            "osd scrub min interval": "86400000",
            "osd scrub max interval": "86400000",
            "osd deep scrub interval": "86400000",
        }
        rgw = {
            "rgw frontends": f"beast endpoint=127.0.0.1:{self.rgw_port}",
            "rgw data": f"{d}/rgw",
            "rgw thread pool size": "64",
            "rgw enable lc threads": "false",
            "rgw enable quota threads": "false",
            "rgw dynamic resharding": "false",
            "rgw relaxed region enforcement": "true",
            "rgw enable usage log": "false",
            # overwritten/deleted tail objects (>4 MiB parts) sit in memstore RAM until
            # GC: collect them after 30 s instead of 2 h
            "rgw gc obj min wait": "30",
            "rgw gc processor period": "30",
        }
        rgw.update(self.extra_conf)

        def section(name: str, kv: dict[str, str]) -> str:
            return f"[{name}]\n" + "".join(f"\t{k} = {v}\n" for k, v in kv.items())

        return "\n".join(
            [section("global", opts), section("mon", mon), section("osd", osd), section("client.rgw", rgw)]
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEPH_")}
        env["CEPH_CONF"] = str(self.conf)
        return env

    def _run(self, cmd: list[str], timeout: float = 60.0) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self._env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RadosgwError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
        if r.returncode != 0:
            raise RadosgwError(
                f"{' '.join(cmd)} exited {r.returncode}:\n"
                f"{r.stderr.decode(errors='replace')}{r.stdout.decode(errors='replace')}"
            )
        return r.stdout.decode(errors="replace")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        assert self.dir is not None
        out = open(self.dir / "log" / f"{name}.stderr", "wb")
        self._log_files.append(out)
        # PR_SET_PDEATHSIG (via util-linux setpriv) makes the kernel SIGKILL the daemon
        # if its parent dies without stop() (e.g. pytest killed with -9).  The signal is
        # tied to the *thread* that forked, so only use it from the main thread: a
        # fixture started from a worker thread would otherwise lose its daemons as soon
        # as that thread exits.  atexit covers the normal-exit case either way.
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv and threading.current_thread() is threading.main_thread():
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        self.procs[name] = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,
        )

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RadosgwError(f"{name} (pid {p.pid}) exited with {p.returncode}")

    def _poll(self, deadline: float, what: str, probe) -> None:
        delay = 0.05
        last: object = None
        while True:
            self._check_alive()
            try:
                if probe():
                    return
            except Exception as e:  # noqa: BLE001 - probes may fail while starting
                last = e
            if time.monotonic() > deadline:
                raise RadosgwError(f"timed out waiting for {what} (last error: {last})")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _mon_up(self) -> bool:
        self.ceph("mon", "stat", timeout=15)
        return True

    def _osd_up(self) -> bool:
        st = json.loads(self.ceph("osd", "stat", "-f", "json", timeout=15))
        st = st.get("osdmap", st)  # older releases nest it
        return int(st.get("num_up_osds", 0)) >= 1 and int(st.get("num_in_osds", 0)) >= 1

    def _http_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as r:
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500

    def _signed_ok(self) -> bool:
        """A SigV4-signed ListBuckets succeeds (only if botocore is importable)."""
        try:
            import botocore.session  # type: ignore[import-not-found]
        except ImportError:
            return True
        s3 = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )
        s3.list_buckets()
        return True
