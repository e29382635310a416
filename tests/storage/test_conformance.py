"""One behaviour suite for every object store: memory, ``file://`` and S3 (moto, radosgw).

The broker's correctness rests on the store semantics in objectstore.py
(create-only and compare-and-swap above all: they are how fencing and the
single-writer invariant are enforced), so every backend must pass the same
tests. The S3 legs go through boto3 over HTTP to a real moto server with
signature checking on, and to a single-node Ceph radosgw where installed
(marker ``radosgw``). The file store's races are run across processes,
because that is how ``floe local`` uses it.

Also here: ``check()`` diagnostics, the fault proxy (outages, stalls, error
mapping), the instrumented wrapper and the URL factory.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from floe_broker.errors import NotFound, PreconditionFailed, StoreMisconfigured, StoreUnavailable
from floe_broker.storage.factory import open_store
from floe_broker.storage.instrumented import InstrumentedStore, key_kind
from floe_broker.storage.local import FileStore
from floe_broker.storage.memory import MemoryStore
from floe_broker.storage.objectstore import GetResult, retrying
from floe_broker.storage.s3 import S3Store, unquote_etag
from tests.infra.moto_server import MotoServer
from tests.infra.s3_fault_proxy import S3FaultProxy, control

from .conftest import make_s3_store

REPO = Path(__file__).resolve().parents[2]


async def poll(predicate: Any, within: float = 10.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true, checking every 10 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------
# Basic semantics (every backend)
# ---------------------------------------------------------------------------


async def test_put_get_head_roundtrip(store: InstrumentedStore) -> None:
    etag = await store.put("meta/cluster", b"hello world")
    assert etag and '"' not in etag
    got = await store.get("meta/cluster")
    assert got.data == b"hello world"
    assert got.etag == etag
    info = await store.head("meta/cluster")
    assert (info.size, info.etag) == (11, etag)

    # bytearray and memoryview bodies are accepted and stored verbatim.
    await store.put("wal/1/s/00000001", bytearray(b"\x00\x01\x02"))
    await store.put("wal/1/s/00000002", memoryview(b"xxabcxx")[2:5])
    assert (await store.get("wal/1/s/00000001")).data == b"\x00\x01\x02"
    assert (await store.get("wal/1/s/00000002")).data == b"abc"

    # Empty objects exist and are empty.
    await store.put("data/t/0/00000000000000000000", b"")
    assert (await store.get("data/t/0/00000000000000000000")).data == b""
    assert (await store.head("data/t/0/00000000000000000000")).size == 0


async def test_missing_objects(store: InstrumentedStore) -> None:
    for op in (
        lambda: store.get("meta/nope"),
        lambda: store.head("meta/nope"),
        lambda: store.get_range("meta/nope", 0, 10),
        lambda: store.get_suffix("meta/nope", 10),
    ):
        with pytest.raises(NotFound):
            await op()
    await store.delete("meta/nope")  # idempotent
    await store.put("meta/x", b"1")
    await store.delete("meta/x")
    await store.delete("meta/x")
    with pytest.raises(NotFound):
        await store.get("meta/x")


async def test_ranged_and_suffix_reads(store: InstrumentedStore) -> None:
    data = bytes(range(256)) * 4  # 1024 bytes
    await store.put("wal/1/s/00000001", data)
    assert await store.get_range("wal/1/s/00000001", 0, 10) == data[:10]
    assert await store.get_range("wal/1/s/00000001", 100, 200) == data[100:300]
    assert await store.get_range("wal/1/s/00000001", 1000, 100) == data[1000:]  # short
    assert await store.get_range("wal/1/s/00000001", 1023, 1) == data[1023:]
    assert await store.get_range("wal/1/s/00000001", 1024, 10) == b""  # past the end
    assert await store.get_range("wal/1/s/00000001", 5000, 10) == b""
    assert await store.get_suffix("wal/1/s/00000001", 16) == data[-16:]
    assert await store.get_suffix("wal/1/s/00000001", 1024) == data
    assert await store.get_suffix("wal/1/s/00000001", 4096) == data  # longer than object
    await store.put("wal/1/s/empty", b"")
    assert await store.get_suffix("wal/1/s/empty", 8) == b""
    assert await store.get_range("wal/1/s/empty", 0, 8) == b""


async def test_list_is_recursive_sorted_and_prefix_exact(store: InstrumentedStore) -> None:
    keys = [
        "wal/1/aaa/00000002",
        "wal/1/aaa/00000001",
        "wal/10/bbb/00000001",
        "wal/2/ccc/00000001",
        "meta/cluster",
        "meta/controller",
        "meta/partitions/t1/0",
        "data/t1/0/00000000000000000000",
    ]
    for k in keys:
        await store.put(k, k.encode())
    assert await store.list("") == sorted(keys)
    assert await store.list("wal/") == sorted(k for k in keys if k.startswith("wal/"))
    # A prefix is a string prefix, not a directory: "wal/1" matches wal/1/ and wal/10/.
    assert await store.list("wal/1") == ["wal/1/aaa/00000001", "wal/1/aaa/00000002", "wal/10/bbb/00000001"]
    assert await store.list("wal/1/") == ["wal/1/aaa/00000001", "wal/1/aaa/00000002"]
    assert await store.list("meta/c") == ["meta/cluster", "meta/controller"]
    assert await store.list("meta/cluster") == ["meta/cluster"]
    assert await store.list("nothing/") == []
    assert await store.list("wal/1/aaa/00000001") == ["wal/1/aaa/00000001"]
    await store.delete("wal/1/aaa/00000001")
    await store.delete("wal/1/aaa/00000002")
    assert await store.list("wal/") == ["wal/10/bbb/00000001", "wal/2/ccc/00000001"]
    # Writing into a "directory" emptied by deletes works again.
    await store.put("wal/1/aaa/00000003", b"x", if_none_match=True)
    assert await store.list("wal/1/") == ["wal/1/aaa/00000003"]


async def test_listed_etags_are_what_a_get_returns(store: InstrumentedStore) -> None:
    """The collector re-reads a checkpoint only when its listed ETag changed: it must match GET's."""
    first = await store.put("meta/partitions/t1/0", b"a")
    await store.put("meta/partitions/t1/1", b"b")
    await store.put("meta/cluster", b"c")
    listed = await store.list_etags("meta/partitions/")
    assert [k for k, _ in listed] == ["meta/partitions/t1/0", "meta/partitions/t1/1"]
    assert listed == [(k, (await store.get(k)).etag) for k, _ in listed]
    assert listed[0][1] == first
    second = await store.put("meta/partitions/t1/0", b"a2")
    assert dict(await store.list_etags("meta/partitions/"))["meta/partitions/t1/0"] == second != first
    await store.delete("meta/partitions/t1/1")
    assert [k for k, _ in await store.list_etags("meta/partitions/")] == ["meta/partitions/t1/0"]


async def test_unconditional_overwrite(store: InstrumentedStore) -> None:
    e1 = await store.put("meta/cluster", b"one")
    e2 = await store.put("meta/cluster", b"two")
    assert e1 != e2
    assert await store.get("meta/cluster") == GetResult(b"two", e2)


async def test_create_only(store: InstrumentedStore) -> None:
    etag = await store.put("wal/1/s/00000001", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await store.put("wal/1/s/00000001", b"second", if_none_match=True)
    got = await store.get("wal/1/s/00000001")
    assert (got.data, got.etag) == (b"first", etag)
    await store.delete("wal/1/s/00000001")
    await store.put("wal/1/s/00000001", b"third", if_none_match=True)
    assert (await store.get("wal/1/s/00000001")).data == b"third"


async def test_compare_and_swap(store: InstrumentedStore) -> None:
    e1 = await store.put("meta/controller", b"v1", if_none_match=True)
    e2 = await store.put("meta/controller", b"v2", if_match=e1)
    assert e2 != e1
    # A stale ETag loses and changes nothing.
    with pytest.raises(PreconditionFailed):
        await store.put("meta/controller", b"v3", if_match=e1)
    got = await store.get("meta/controller")
    assert (got.data, got.etag) == (b"v2", e2)
    # CAS on a missing object loses (S3 itself answers 404 here; we say 412).
    with pytest.raises(PreconditionFailed):
        await store.put("meta/absent", b"x", if_match=e2)
    with pytest.raises(NotFound):
        await store.get("meta/absent")
    # ... also after a delete, with the ETag the object had.
    await store.delete("meta/controller")
    with pytest.raises(PreconditionFailed):
        await store.put("meta/controller", b"v4", if_match=e2)
    with pytest.raises(PreconditionFailed):
        await store.put("meta/controller", b"v4", if_match="garbage-etag")


async def test_etag_changes_on_every_write(store: InstrumentedStore) -> None:
    etags = [await store.put("meta/partitions/t/0", f"v{i}".encode()) for i in range(20)]
    assert len(set(etags)) == 20
    # The current ETag always matches the last write, whatever came before.
    assert (await store.head("meta/partitions/t/0")).etag == etags[-1]
    # Same length, different content, via CAS (the file store's ABA hazard).
    etag = etags[-1]
    seen = set(etags)
    for i in range(20):
        etag = await store.put("meta/partitions/t/0", f"w{i:02d}".encode(), if_match=etag)
        assert etag not in seen
        seen.add(etag)


async def test_etag_changes_even_for_identical_content(store: InstrumentedStore, store_kind: str) -> None:
    if store_kind in ("s3", "rgw"):
        pytest.skip(
            "S3 ETags are the MD5 of the content: rewriting identical bytes keeps the ETag "
            "(harmless for CAS, documented in s3.py)"
        )
    e1 = await store.put("meta/cluster", b"same")
    e2 = await store.put("meta/cluster", b"same")
    e3 = await store.put("meta/cluster", b"same", if_match=e2)
    assert len({e1, e2, e3}) == 3
    with pytest.raises(PreconditionFailed):
        await store.put("meta/cluster", b"same", if_match=e1)


async def test_concurrent_cas_counter_in_process(store: InstrumentedStore, store_kind: str) -> None:
    """N concurrent read-modify-CAS loops on one object: no acknowledged update may be lost.

    The object is a log of tokens, one per write attempt, so the final state
    tells exactly which attempts took effect. A conditional write that raised
    StoreUnavailable has an unknown outcome (radosgw answers some contended
    CAS with 500, see objectstore.py); the writer re-reads to decide, as the
    broker must.
    """
    await store.put("meta/counter", b"", if_none_match=True)
    writers, per_writer = 6, 5
    acked: set[bytes] = set()
    refused: set[bytes] = set()
    unknown: set[bytes] = set()

    async def writer(w: int) -> None:
        wins = attempt = 0
        while wins < per_writer:
            got = await store.get("meta/counter")
            await asyncio.sleep(0)  # let the others read the same version (the memory store never yields)
            token = b"w%da%d" % (w, attempt)
            attempt += 1
            log = got.data + b"," + token if got.data else token
            try:
                await store.put("meta/counter", log, if_match=got.etag)
            except PreconditionFailed:
                refused.add(token)
                continue
            except StoreUnavailable:
                unknown.add(token)
                if token in (await store.get("meta/counter")).data.split(b","):
                    wins += 1  # it did happen
                continue
            acked.add(token)
            wins += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))
    final = (await store.get("meta/counter")).data.split(b",")
    assert len(final) == len(set(final)), "an update was applied twice"
    assert acked <= set(final), f"acknowledged updates lost: {sorted(acked - set(final))}"
    assert not refused & set(final), "a write refused with 412 took effect"
    assert set(final) <= acked | unknown
    assert len(final) == writers * per_writer
    assert refused, "no contention happened; the test proved nothing"
    if store_kind != "rgw":
        assert not unknown, "only radosgw is known to answer contended CAS with 5xx"


async def test_create_only_race_in_process(store: InstrumentedStore) -> None:
    """Many concurrent create-only PUTs of one key: exactly one takes effect."""

    async def attempt(i: int) -> str:
        try:
            await store.put("wal/9/race/00000001", b"%d" % i, if_none_match=True)
            return "won"
        except PreconditionFailed:
            return "lost"
        except StoreUnavailable:
            return "unknown"

    for _ in range(3):
        outcome = await asyncio.gather(*(attempt(i) for i in range(12)))
        won = [i for i, o in enumerate(outcome) if o == "won"]
        maybe = [i for i, o in enumerate(outcome) if o == "unknown"]
        assert len(won) <= 1, f"several create-only PUTs won: {won}"
        content = int((await store.get("wal/9/race/00000001")).data)
        assert content in won + maybe, "the stored object is not from a winning attempt"
        if not maybe:
            assert won == [content]
        await store.delete("wal/9/race/00000001")


async def test_both_conditions_is_a_usage_error(store: InstrumentedStore, store_kind: str) -> None:
    if store_kind == "memory":
        pytest.skip("the reference MemoryStore does not validate arguments")
    with pytest.raises(ValueError):
        await store.put("meta/x", b"1", if_none_match=True, if_match="abc")


# ---------------------------------------------------------------------------
# File store: across processes, durability, layout
# ---------------------------------------------------------------------------

WORKER = r"""
import asyncio, json, sys
from floe_broker.storage.local import FileStore
from floe_broker.errors import PreconditionFailed

async def main() -> None:
    mode, root = sys.argv[1], sys.argv[2]
    store = FileStore(root, fsync=sys.argv[3] == "fsync")
    print("ready", flush=True)
    if mode != "writer":
        sys.stdin.readline()  # start together
    out = {}
    if mode == "cas":
        key, target, conc = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        async def loop():
            wins = conflicts = 0
            while wins < target:
                got = await store.get(key)
                try:
                    await store.put(key, b"%d" % (int(got.data) + 1), if_match=got.etag)
                    wins += 1
                except PreconditionFailed:
                    conflicts += 1
            return wins, conflicts
        res = await asyncio.gather(*(loop() for _ in range(conc)))
        out = {"wins": sum(w for w, _ in res), "conflicts": sum(c for _, c in res)}
    elif mode == "race":
        me, keys = sys.argv[4], int(sys.argv[5])
        won = []
        for i in range(keys):
            try:
                await store.put(f"race/{i:04d}", me.encode(), if_none_match=True)
                won.append(i)
            except PreconditionFailed:
                pass
        out = {"won": won}
    elif mode == "writer":  # write until killed; print every acknowledged key
        i = 0
        while True:
            key = f"wal/1/s/{i:08d}"
            await store.put(key, (b"%08d" % i) * 512, if_none_match=True)
            print("acked", key, flush=True)
            i += 1
    print(json.dumps(out), flush=True)
    await store.close()

asyncio.run(main())
"""


def _spawn_workers(argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "broker"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for argv in argvs
    ]
    return procs


def _run_together(argvs: list[list[str]], timeout: float = 60.0) -> list[dict[str, Any]]:
    """Start workers, wait until all are ready, release them at once, collect JSON."""
    procs = _spawn_workers(argvs)
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


async def test_file_cas_counter_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "bucket" / "c1"
    store = FileStore(root, fsync=False)
    await store.put("meta/counter", b"0", if_none_match=True)
    procs, per, conc = 4, 15, 2
    results = await asyncio.to_thread(
        _run_together,
        [["cas", str(root), "nofsync", "meta/counter", str(per), str(conc)] for _ in range(procs)],
    )
    wins = sum(r["wins"] for r in results)
    conflicts = sum(r["conflicts"] for r in results)
    assert wins == procs * per * conc
    assert int((await store.get("meta/counter")).data) == wins
    assert conflicts > 0, "no contention happened; the test proved nothing"
    await store.close()


async def test_file_create_only_race_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "bucket" / "c1"
    procs, keys = 6, 300
    results = await asyncio.to_thread(
        _run_together,
        [["race", str(root), "fsync", f"p{i}", str(keys)] for i in range(procs)],
    )
    store = FileStore(root)
    owners: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        for k in r["won"]:
            owners.setdefault(k, []).append(i)
    assert sorted(owners) == list(range(keys)), "some key was won by nobody"
    assert all(len(v) == 1 for v in owners.values()), owners
    for k, (winner,) in owners.items():
        assert (await store.get(f"race/{k:04d}")).data == f"p{winner}".encode()
    assert await store.list("") == [f"race/{k:04d}" for k in range(keys)]
    await store.close()


async def test_file_acked_writes_survive_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "bucket" / "c1"
    (proc,) = _spawn_workers([["writer", str(root), "fsync"]])
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        while len(acked) < 25:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, "writer died"
            acked.append(line.split()[1])
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()
    store = FileStore(root)
    listed = await store.list("wal/")
    for key in acked:
        i = int(key.rsplit("/", 1)[1])
        assert (await store.get(key)).data == (b"%08d" % i) * 512
    # Whatever is listed is complete (no torn objects, no temp files).
    assert set(acked) <= set(listed)
    for key in listed:
        i = int(key.rsplit("/", 1)[1])
        assert (await store.get(key)).data == (b"%08d" % i) * 512
    await store.close()


async def test_file_layout_is_plain_files_and_hides_internals(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/bucket", cluster="c1")
    await store.check()
    await store.put("meta/cluster", b"abc", if_none_match=True)
    await store.put("meta/cluster", b"abcd")  # takes a lock stripe
    assert (tmp_path / "bucket" / "c1" / "meta" / "cluster").read_bytes() == b"abcd"
    # A temp file left by a writer killed mid-write is invisible.
    (tmp_path / "bucket" / "c1" / "meta" / ".floe-tmp-deadbeef").write_bytes(b"partial")
    assert await store.list("") == ["meta/cluster"]
    assert (tmp_path / "bucket" / "c1" / ".floe-locks").is_dir()
    # Deleting the last object of a directory prunes the directory.
    await store.put("wal/1/sess/00000001", b"x")
    await store.delete("wal/1/sess/00000001")
    assert not (tmp_path / "bucket" / "c1" / "wal").exists()
    await store.close()


async def test_file_rejects_keys_it_cannot_represent(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root", fsync=False)
    for bad in ("", "/abs", "a/", "a//b", "a/../b", "./a", ".floe-locks/00", "a/.floe-tmp-x"):
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
    await store.put("a/b", b"x")
    with pytest.raises(ValueError):
        await store.put("a", b"y")  # "a" is a directory of keys
    with pytest.raises(ValueError):
        await store.put("a/b/c", b"y")  # "a/b" is an object
    with pytest.raises(NotFound):
        await store.get("a")
    with pytest.raises(NotFound):
        await store.get("a/b/c")
    await store.delete("a")  # not an object: nothing to do
    assert await store.list("") == ["a/b"]
    await store.close()


async def test_file_etags_unique_under_inode_reuse(tmp_path: Path) -> None:
    """Same-size rewrites and delete/recreate cycles recycle inodes; ETags must not repeat."""
    store = FileStore(tmp_path / "root", fsync=False)
    seen: set[str] = set()
    for i in range(150):
        etag = await store.put("meta/k", b"%04d" % (i % 3))
        assert etag not in seen
        seen.add(etag)
        if i % 5 == 0:
            await store.delete("meta/k")
    await store.close()


async def test_file_check_reports_unusable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    for root in (blocker, blocker / "sub"):
        with pytest.raises(StoreMisconfigured) as err:
            await FileStore(root).check()
        assert str(blocker) in str(err.value)
    ok = FileStore(tmp_path / "new" / "deep" / "root")
    await ok.check()  # creates it
    assert (tmp_path / "new" / "deep" / "root").is_dir()
    assert await ok.list("") == []  # the probe left nothing behind
    await ok.close()


# ---------------------------------------------------------------------------
# S3: check() diagnostics, quoting, retries
# ---------------------------------------------------------------------------


async def test_s3_check_missing_bucket(moto_server: MotoServer) -> None:
    store = make_s3_store(moto_server, bucket="floe-no-such-bucket")
    with pytest.raises(StoreMisconfigured) as err:
        await store.check()
    assert "floe-no-such-bucket" in str(err.value)
    assert "does not exist" in str(err.value)
    # ... and at run time too (not retried forever as "unavailable").
    with pytest.raises(StoreMisconfigured):
        await store.get("meta/cluster")
    with pytest.raises(StoreMisconfigured):
        await store.put("wal/1/s/1", b"x", if_none_match=True)
    await store.close()


@pytest.mark.parametrize(
    ("access", "secret", "expect"),
    [
        ("AKIAFLOEUNKNOWN00000", None, "InvalidAccessKeyId"),
        (None, "definitely-not-the-secret", "SignatureDoesNotMatch"),
    ],
)
async def test_s3_check_wrong_credentials(
    moto_server: MotoServer, access: str | None, secret: str | None, expect: str
) -> None:
    store = make_s3_store(
        moto_server,
        aws_access_key_id=access or moto_server.access_key,
        aws_secret_access_key=secret or moto_server.secret_key,
    )
    with pytest.raises(StoreMisconfigured) as err:
        await store.check()
    assert expect in str(err.value)
    with pytest.raises(StoreMisconfigured):
        await store.get("meta/cluster")
    await store.close()


async def test_s3_check_unreachable_endpoint(moto_server: MotoServer) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = make_s3_store(moto_server, endpoint=endpoint, connect_timeout=1.0)
    with pytest.raises(StoreMisconfigured) as err:
        await store.check()
    assert endpoint in str(err.value)
    assert "cannot reach" in str(err.value)
    # At run time the same failure is transient.
    with pytest.raises(StoreUnavailable):
        await store.get("meta/cluster")
    await store.close()


async def test_s3_etags_unquoted_and_quoted_input_accepted(moto_server: MotoServer) -> None:
    store = make_s3_store(moto_server)
    etag = await store.put("meta/cluster", b"v1")
    assert '"' not in etag
    assert unquote_etag(f'"{etag}"') == etag == unquote_etag(f'W/"{etag}"')
    raw = moto_server.client().head_object(Bucket=moto_server.bucket, Key=store.prefix + "meta/cluster")
    assert raw["ETag"] == f'"{etag}"'  # the wire form is quoted; ours is not
    e2 = await store.put("meta/cluster", b"v2", if_match=f'"{etag}"')  # quoted input is unquoted
    assert (await store.get("meta/cluster")).etag == e2
    await store.close()


async def test_s3_conditional_puts_are_not_retried_by_botocore(
    moto_server: MotoServer, fault_proxy: S3FaultProxy
) -> None:
    """A transparent retry could turn our own applied write into a false 412."""
    store = make_s3_store(moto_server, endpoint=fault_proxy.endpoint, max_attempts=3)
    before = fault_proxy.state()["by_op"].get("put", 0)
    fault_proxy.fail(500, ops="put", times=1)
    with pytest.raises(StoreUnavailable):
        await store.put("wal/1/s/00000001", b"x", if_none_match=True)
    assert fault_proxy.state()["by_op"]["put"] - before == 1  # exactly one attempt
    fault_proxy.fail(500, ops="put", times=1)
    await store.put("meta/gc", b"x")  # unconditional: botocore retried past the 500
    assert fault_proxy.state()["by_op"]["put"] - before == 3
    await store.close()


# ---------------------------------------------------------------------------
# Fault proxy: outages, stalls, error mapping
# ---------------------------------------------------------------------------


async def test_proxy_passes_everything_through(proxied_store: S3Store) -> None:
    """Signatures (moto checks them), conditions, ranges and listings survive the proxy."""
    s = proxied_store
    await s.check()
    etag = await s.put("wal/1/s/00000001", b"0123456789", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await s.put("wal/1/s/00000001", b"zzz", if_none_match=True)
    assert await s.get_range("wal/1/s/00000001", 2, 3) == b"234"
    assert await s.get_suffix("wal/1/s/00000001", 4) == b"6789"
    assert (await s.head("wal/1/s/00000001")).size == 10
    e2 = await s.put("wal/1/s/00000001", b"new", if_match=etag)
    with pytest.raises(PreconditionFailed):
        await s.put("wal/1/s/00000001", b"newer", if_match=etag)
    assert (await s.get("wal/1/s/00000001")).etag == e2
    assert await s.list("wal/") == ["wal/1/s/00000001"]


async def test_outage_then_heal(proxied_store: S3Store, fault_proxy: S3FaultProxy) -> None:
    s = proxied_store
    await s.put("meta/cluster", b"before")
    fault_proxy.fail(503)
    for op in (
        lambda: s.get("meta/cluster"),
        lambda: s.head("meta/cluster"),
        lambda: s.get_range("meta/cluster", 0, 2),
        lambda: s.put("meta/cluster", b"during"),
        lambda: s.put("wal/1/s/00000001", b"during", if_none_match=True),
        lambda: s.list("meta/"),
        lambda: s.delete("meta/cluster"),
    ):
        with pytest.raises(StoreUnavailable):
            await op()
    fault_proxy.heal()
    assert (await s.get("meta/cluster")).data == b"before"  # nothing written during the outage
    with pytest.raises(NotFound):
        await s.get("wal/1/s/00000001")
    await s.put("meta/cluster", b"after")
    assert (await s.get("meta/cluster")).data == b"after"


async def test_fault_narrowed_to_ops_and_count(proxied_store: S3Store, fault_proxy: S3FaultProxy) -> None:
    s = proxied_store
    await s.put("meta/cluster", b"v")
    fault_proxy.fail(503, ops=["put"], key_contains="/wal/")
    assert (await s.get("meta/cluster")).data == b"v"  # reads pass
    await s.put("meta/other", b"v")  # puts outside wal/ pass
    with pytest.raises(StoreUnavailable):
        await s.put("wal/1/s/00000001", b"x", if_none_match=True)
    fault_proxy.fail(503, times=2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await s.get("meta/cluster")
    assert (await s.get("meta/cluster")).data == b"v"  # the fault expired by itself
    assert fault_proxy.state()["fault"] is None


async def test_hang_times_out_then_heals(proxied_store: S3Store, fault_proxy: S3FaultProxy) -> None:
    s = proxied_store  # read_timeout=1s
    await s.put("meta/cluster", b"v")
    fault_proxy.hang(ops="get")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(StoreUnavailable):
        await s.get("meta/cluster")
    assert loop.time() - t0 < 5
    # A stalled request is dropped (never forwarded) when the fault changes.
    # (Poll the monotonic ``faulted`` counter: ``hanging`` may still count the
    # first request until the proxy notices its client went away.)
    before = fault_proxy.faulted
    pending = asyncio.ensure_future(s.get_range("meta/cluster", 0, 1))
    await poll(lambda: fault_proxy.faulted > before, what="request to stall")
    fault_proxy.heal()
    with pytest.raises(StoreUnavailable):
        await pending
    assert (await s.get("meta/cluster")).data == b"v"


async def test_retrying_recovers_when_the_store_heals(proxied_store: S3Store, fault_proxy: S3FaultProxy) -> None:
    s = proxied_store
    fault_proxy.fail(503, ops="put")
    retries: list[int] = []
    task = asyncio.ensure_future(
        retrying(
            lambda: s.put("wal/1/s/00000001", b"payload", if_none_match=True),
            base_delay=0.01,
            max_delay=0.05,
            on_retry=lambda n, exc: retries.append(n),
        )
    )
    await poll(lambda: len(retries) >= 3, what="three failed attempts")
    assert not task.done()  # no false acknowledgement during the outage
    with pytest.raises(NotFound):
        await s.get("wal/1/s/00000001")  # and nothing was written
    fault_proxy.heal()
    etag = await asyncio.wait_for(task, 10)
    got = await s.get("wal/1/s/00000001")
    assert (got.data, got.etag) == (b"payload", etag)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (412, "PreconditionFailed", PreconditionFailed),
        (409, "ConditionalRequestConflict", PreconditionFailed),
        (404, "NoSuchKey", NotFound),
        (404, "NoSuchBucket", StoreMisconfigured),
        (403, "AccessDenied", StoreMisconfigured),
        (403, "InvalidAccessKeyId", StoreMisconfigured),
        (403, "SignatureDoesNotMatch", StoreMisconfigured),
        (500, "InternalError", StoreUnavailable),
        (503, "SlowDown", StoreUnavailable),
        (409, "OperationAborted", StoreUnavailable),
    ],
)
async def test_error_mapping(
    proxied_store: S3Store,
    fault_proxy: S3FaultProxy,
    status: int,
    code: str,
    expected: type[Exception],
) -> None:
    fault_proxy.fail(status, code=code)
    with pytest.raises(expected):
        if expected is PreconditionFailed:
            await proxied_store.put("meta/cluster", b"x", if_match="abc")
        else:
            await proxied_store.get("meta/cluster")


async def test_proxy_controlled_over_http_with_a_subprocess_client(
    moto_server: MotoServer, fault_proxy: S3FaultProxy
) -> None:
    """Brokers run as subprocesses: the proxy must serve them and be steerable over HTTP."""
    script = r"""
import sys, boto3, botocore
from botocore.config import Config
c = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(
    s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 1}))
try:
    c.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=b"from-child")
    print(200)
except botocore.exceptions.ClientError as e:
    print(e.response["ResponseMetadata"]["HTTPStatusCode"])
"""
    key = f"t-{uuid.uuid4().hex[:8]}/child"
    env = dict(os.environ, **moto_server.env())

    def child() -> str:
        return subprocess.run(
            [sys.executable, "-c", script, fault_proxy.endpoint, moto_server.bucket or "", key],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout.strip()

    state = control(fault_proxy.endpoint, "fail", status=503, ops=["put"])
    assert state["fault"]["status"] == 503
    assert await asyncio.to_thread(child) == "503"
    control(fault_proxy.endpoint, "heal")
    assert await asyncio.to_thread(child) == "200"
    body = moto_server.client().get_object(Bucket=moto_server.bucket, Key=key)["Body"].read()
    assert body == b"from-child"


# ---------------------------------------------------------------------------
# Instrumentation and the URL factory
# ---------------------------------------------------------------------------


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_instrumented_counts_requests_bytes_and_errors(
    moto_server: MotoServer, fault_proxy: S3FaultProxy
) -> None:
    store = InstrumentedStore(make_s3_store(moto_server, endpoint=fault_proxy.endpoint))
    puts0 = _sample("floe_objectstore_requests_total", op="put", kind="wal")
    written0 = _sample("floe_objectstore_written_bytes_total", kind="wal")
    read0 = _sample("floe_objectstore_read_bytes_total", kind="wal")
    errors0 = _sample("floe_objectstore_errors_total", op="get", kind="cluster")
    lat0 = _sample("floe_objectstore_request_seconds_count", op="put")
    sized0 = _sample("floe_objectstore_put_bytes_count", kind="wal")
    sized_sum0 = _sample("floe_objectstore_put_bytes_sum", kind="wal")

    await store.put("wal/1/s/00000001", b"x" * 100, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await store.put("wal/1/s/00000001", b"y" * 10, if_none_match=True)
    assert await store.get_range("wal/1/s/00000001", 0, 30) == b"x" * 30
    assert await store.get_suffix("wal/1/s/00000001", 5) == b"x" * 5
    with pytest.raises(NotFound):
        await store.get("meta/cluster")
    fault_proxy.fail(503)
    with pytest.raises(StoreUnavailable):
        await store.get("meta/cluster")
    fault_proxy.heal()
    await store.put("elsewhere", b"abc")

    st = store.stats()
    assert st["requests"]["put"] == {"wal": 2, "other": 1}
    assert st["requests"]["get_range"] == {"wal": 1}
    assert st["requests"]["get"] == {"cluster": 2}
    assert st["bytes_written"] == {"wal": 100, "other": 3}  # the losing put wrote nothing
    assert st["bytes_read"] == {"wal": 35}
    assert st["errors"] == {"get": {"cluster": 1}}  # answers (404, 412) are not errors
    assert st["conflicts"] == {"wal": 1}
    assert st["not_found"] == {"cluster": 1}

    assert _sample("floe_objectstore_requests_total", op="put", kind="wal") - puts0 == 2
    assert _sample("floe_objectstore_written_bytes_total", kind="wal") - written0 == 100
    assert _sample("floe_objectstore_read_bytes_total", kind="wal") - read0 == 35
    assert _sample("floe_objectstore_errors_total", op="get", kind="cluster") - errors0 == 1
    assert _sample("floe_objectstore_request_seconds_count", op="put") - lat0 == 3
    # Object sizes: only PUTs that wrote an object are observed.
    assert _sample("floe_objectstore_put_bytes_count", kind="wal") - sized0 == 1
    assert _sample("floe_objectstore_put_bytes_sum", kind="wal") - sized_sum0 == 100

    store.reset_stats()
    assert store.stats()["requests"] == {}
    await store.close()


def test_key_kind() -> None:
    assert key_kind("wal/3/abc/00000001") == "wal"
    assert key_kind("data/t/0/0") == "data"
    assert key_kind("meta/cluster") == "cluster"
    assert key_kind("meta/controller") == "lease"
    assert key_kind("meta/partitions/tid/3") == "checkpoint"
    assert key_kind("meta/partitions/") == "checkpoint"  # a list prefix
    assert key_kind("meta/something-new") == "meta"
    assert key_kind("meta") == "meta"
    assert key_kind("checkpoint/x") == "other"
    assert key_kind("walrus/x") == "other"
    assert key_kind("") == "other"


async def test_factory_roots_file_store_at_cluster(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/bkt", cluster="prod", fsync=False)
    assert isinstance(store, InstrumentedStore) and isinstance(store.inner, FileStore)
    await store.put("meta/cluster", b"m")
    assert (tmp_path / "bkt" / "prod" / "meta" / "cluster").read_bytes() == b"m"
    other = open_store(f"file://localhost{tmp_path}/bkt", cluster="dev", fsync=False)
    assert await other.list("") == []  # clusters do not see each other
    await store.close()
    await other.close()


async def test_factory_roots_s3_store_at_prefix_and_cluster(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in moto_server.env().items():
        monkeypatch.setenv(k, v)
    prefix = f"t-{uuid.uuid4().hex[:8]}/floe"
    store = open_store(
        f"s3://{moto_server.bucket}/{prefix}/",
        cluster="prod",
        s3_endpoint=moto_server.endpoint,
        s3_region=moto_server.region,
        s3_path_style=True,
    )
    assert isinstance(store.inner, S3Store)
    await store.check()
    await store.put("meta/cluster", b"m", if_none_match=True)
    raw = moto_server.client().list_objects_v2(Bucket=moto_server.bucket, Prefix=prefix)
    assert [o["Key"] for o in raw["Contents"]] == [f"{prefix}/prod/meta/cluster"]
    assert await store.list("") == ["meta/cluster"]
    await store.close()


async def test_factory_memory_urls() -> None:
    a = open_store("memory://", cluster="c")
    b = open_store("memory://", cluster="c")
    assert isinstance(a.inner, MemoryStore) and a.inner is not b.inner
    n1 = open_store("memory://shared-test", cluster="c")
    n2 = open_store("memory://shared-test", cluster="c")
    n3 = open_store("memory://shared-test", cluster="other")
    assert n1.inner is n2.inner and n1.inner is not n3.inner
    await n1.put("meta/cluster", b"x")
    assert (await n2.get("meta/cluster")).data == b"x"


@pytest.mark.parametrize(
    ("url", "cluster", "needle"),
    [
        ("file://relative/path", "c", "absolute path"),
        ("file://./data", "c", "absolute path"),
        ("s3://", "c", "names no bucket"),
        ("gs://bucket", "c", "unsupported object store URL"),
        ("/just/a/path", "c", "unsupported object store URL"),
        ("file:///tmp/x", "a/b", "invalid cluster name"),
        ("file:///tmp/x", "", "invalid cluster name"),
    ],
)
def test_factory_rejects_bad_urls(url: str, cluster: str, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        open_store(url, cluster=cluster)
    assert needle in str(err.value)
