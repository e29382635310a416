"""``file://`` object store: S3 semantics on a local directory, shared by processes.

Why it exists: ``floe local`` runs several broker *processes* on one machine
without an S3 server, and tests want a store that crosses process boundaries
(the in-memory store does not). So everything here must be atomic between
processes, not just between coroutines, and nothing may rely on in-process
state for correctness.

On-disk layout: the object ``meta/cluster`` is the regular file
``<root>/meta/cluster`` holding exactly the object's bytes, so the bucket can
be inspected with ``ls``/``cat``/``hexdump``. Consequences of mapping keys onto
a file system:

* A key cannot be both an object and a "directory" of other keys (``a`` and
  ``a/b``); Floe's layout never does that and such a put raises ``ValueError``.
* Key components ``""``, ``.``, ``..`` and anything starting with ``.floe``
  are rejected: the first three would escape or alias paths, ``.floe*`` names
  are reserved for temp files (``.floe-tmp-*``, next to their target so
  ``link``/``rename`` stay on one file system) and the lock stripes
  (``<root>/.floe-locks/NN``). Listing skips reserved names. A temp file left
  behind by a process killed mid-write is invisible garbage.

How each S3 guarantee is reproduced:

* **Immutable files.** A write never modifies an existing file: it writes a
  temp file, (optionally) fsyncs it, and then publishes it atomically. A reader
  opens the file once and takes size and ETag from ``fstat`` of that same fd,
  so data and ETag always belong to the same version.
* **Create-only** (``If-None-Match: *``) publishes with ``os.link(tmp, final)``,
  which the kernel refuses with ``EEXIST`` if the name exists — atomic across
  processes without any lock.
* **Compare-and-swap** (``If-Match``), unconditional puts and deletes take an
  exclusive ``flock`` on one of 64 lock-stripe files chosen by CRC32 of the key
  (stable across processes, bounded number of lock files, none to clean up),
  compare the current ETag and ``os.replace`` the temp file in. Unconditional
  puts and deletes lock too: otherwise one could slip between a CAS's compare
  and its replace, and the CAS would overwrite a version it never saw.
  Create-only needs no lock: ``link`` fails while any version exists, and a
  version can only disappear under the lock.
* **ETags change on every write.** ETag = ``<inode>-<mtime_ns>-<size>`` (hex)
  of the published file. Inodes are recycled (ext4 readily hands a freed inode
  to the next file) and the kernel stamps mtime from a coarse clock (a jiffy),
  so two writes of equal size could otherwise collide and let a stale CAS
  succeed (ABA). Each write therefore sets its mtime explicitly to a
  nanosecond wall-clock stamp that is strictly increasing within the process;
  a collision would need a recycled inode, an equal size *and* an identical
  nanosecond stamp from two processes.
* **Durability.** With ``fsync=True`` (default) the temp file is fsynced
  before publishing, and the directory after, and every directory this store
  creates is made durable in its parent: an acknowledged write survives power
  loss, not just ``kill -9`` (which page-cache writes survive anyway).
  ``fsync=False`` keeps kill -9 safety and is much faster for tests.
* **Listing** walks the tree under the prefix (pruning directories that cannot
  match) and returns sorted keys, like S3 (code-point order equals S3's UTF-8
  byte order).
* Deleting an object also removes the directories it leaves empty (WAL
  session directories would otherwise pile up forever). Writers tolerate a
  directory vanishing under them by recreating it and retrying.

All blocking calls run in a bounded thread pool, never on the event loop.
Errors: missing → :class:`NotFound`; ``PermissionError`` →
:class:`StoreMisconfigured`; any other ``OSError`` (ENOSPC, EIO, …) →
:class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import secrets
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..errors import NotFound, PreconditionFailed, StoreError, StoreMisconfigured, StoreUnavailable
from .objectstore import GetResult, ObjectInfo
from .threaded import ThreadedStore

__all__ = ["FileStore"]

T = TypeVar("T")

RESERVED_PREFIX = ".floe"
TMP_PREFIX = ".floe-tmp-"
LOCK_DIR = ".floe-locks"
LOCK_STRIPES = 64
# How often a writer retries when a concurrent delete removed the directory it
# was about to write into (each retry recreates the directory).
_DIR_RACE_RETRIES = 16

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_stamp_lock = threading.Lock()
_last_stamp = 0


def _next_stamp() -> int:
    """A nanosecond wall-clock stamp, strictly increasing within this process."""
    global _last_stamp
    with _stamp_lock:
        stamp = max(time.time_ns(), _last_stamp + 1)
        _last_stamp = stamp
        return stamp


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _check_key(key: str) -> list[str]:
    """Split a key into path components, refusing ones that cannot map to a file."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {key!r}: empty")
    if key.startswith("/") or key.endswith("/"):
        raise ValueError(f"invalid object key {key!r}: must not start or end with '/'")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise ValueError(f"invalid object key {key!r}: bad component {part!r}")
        if part.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"invalid object key {key!r}: components starting with {RESERVED_PREFIX!r} "
                "are reserved by the file store"
            )
    return parts


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """``pread`` until ``length`` bytes or EOF (a single call may return less)."""
    chunks: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FileStore(ThreadedStore):
    """Object store on a local directory; safe for several processes at once.

    ``root`` is the directory that plays the role of ``<bucket>/<prefix>/``;
    it is created on demand. ``workers`` bounds the thread pool that runs the
    blocking file operations.
    """

    def __init__(self, root: Path | str, *, fsync: bool = True, workers: int = 16) -> None:
        self.root = Path(os.path.abspath(root))
        self.fsync = fsync
        self._root = str(self.root)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floe-file")
        self._closed = False

    def __repr__(self) -> str:
        return f"FileStore({self._root!r}, fsync={self.fsync})"

    # --- plumbing -----------------------------------------------------------

    async def _run(self, key: str, fn: Callable[[], T]) -> T:
        """Run blocking ``fn`` in the pool and translate OS errors into store errors."""
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except StoreError:
            raise
        except PermissionError as exc:
            raise StoreMisconfigured(f"{key}: permission denied under {self._root}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"{key}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down under us
            raise StoreUnavailable(f"{key}: {exc}") from exc

    def _path(self, parts: list[str]) -> str:
        return os.path.join(self._root, *parts)

    def _fsync_dir(self, path: str) -> None:
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ensure_dir(self, path: str) -> None:
        """``mkdir -p`` that makes every directory it creates durable in its parent."""
        missing: list[str] = []
        cur = path
        while not os.path.isdir(cur):
            missing.append(cur)
            parent = os.path.dirname(cur)
            if parent == cur:
                break
            cur = parent
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", d) from None
                continue
            self._fsync_dir(os.path.dirname(d))

    def _write_temp(self, dirpath: str, data: bytes | bytearray | memoryview) -> tuple[str, str]:
        """Write ``data`` to a fresh temp file in ``dirpath``; return (temp path, ETag)."""
        for _ in range(_DIR_RACE_RETRIES):
            tmp = os.path.join(dirpath, TMP_PREFIX + secrets.token_hex(8))
            try:
                self._ensure_dir(dirpath)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # a delete pruned a directory on our path; recreate it
            try:
                _write_all(fd, data)
                stamp = _next_stamp()
                os.utime(fd, ns=(stamp, stamp))
                if self.fsync:
                    os.fsync(fd)
                etag = _etag(os.fstat(fd))
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.close(fd)
            return tmp, etag
        raise StoreUnavailable(f"directory {dirpath} keeps disappearing")

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Exclusive cross-process lock for ``key`` (one of LOCK_STRIPES flock files)."""
        lock_dir = os.path.join(self._root, LOCK_DIR)
        path = os.path.join(lock_dir, f"{zlib.crc32(key.encode()) % LOCK_STRIPES:02x}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
        except FileNotFoundError:
            self._ensure_dir(lock_dir)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only fd of this open file releases the flock

    @staticmethod
    def _is_dir(path: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            return False

    # --- reads --------------------------------------------------------------

    def _open_object(self, key: str) -> tuple[int, os.stat_result]:
        path = self._path(_check_key(key))
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFound(key)
        return fd, st

    def _get(self, key: str) -> GetResult:
        fd, st = self._open_object(key)
        try:
            data = _pread_all(fd, st.st_size, 0)
        finally:
            os.close(fd)
        return GetResult(data, _etag(st))

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0:
            raise ValueError(f"negative range start {start}")
        fd, st = self._open_object(key)
        try:
            if length <= 0 or start >= st.st_size:
                return b""
            return _pread_all(fd, min(length, st.st_size - start), start)
        finally:
            os.close(fd)

    def _get_suffix(self, key: str, length: int) -> bytes:
        fd, st = self._open_object(key)
        try:
            if length <= 0:
                return b""
            start = max(0, st.st_size - length)
            return _pread_all(fd, st.st_size - start, start)
        finally:
            os.close(fd)

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(_check_key(key))
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(key)
        return ObjectInfo(st.st_size, _etag(st))

    def _list(self, prefix: str) -> list[str]:
        # Start the walk at the deepest directory the prefix fully names.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base_parts = base.split("/") if base else []
        for part in base_parts:
            if part in ("", ".", ".."):
                return []  # no valid key can match such a prefix
        out: list[str] = []

        def walk(dirpath: str, rel: str) -> None:
            try:
                entries = list(os.scandir(dirpath))
            except (FileNotFoundError, NotADirectoryError):
                return  # vanished under a concurrent delete: nothing there any more
            for entry in entries:
                if entry.name.startswith(RESERVED_PREFIX):
                    continue
                key = rel + entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    sub = key + "/"
                    if sub.startswith(prefix) or prefix.startswith(sub):
                        walk(entry.path, sub)
                elif key.startswith(prefix):
                    out.append(key)

        walk(self._path(base_parts), base + "/" if base else "")
        out.sort()
        return out

    def _list_etags(self, prefix: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in self._list(prefix):
            try:
                out.append((key, self._head(key).etag))
            except NotFound:
                continue  # deleted since the walk
        return out

    # --- writes -------------------------------------------------------------

    def _put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        if_none_match: bool,
        if_match: str | None,
    ) -> str:
        parts = _check_key(key)
        final = self._path(parts)
        dirpath = os.path.dirname(final)
        if self._is_dir(final):
            raise ValueError(
                f"key {key!r} names a directory of other keys; the file store cannot hold "
                "an object and keys below it under the same name"
            )
        try:
            tmp, etag = self._write_temp(dirpath, data)
        except NotADirectoryError:
            raise ValueError(
                f"key {key!r} lies below an existing object; the file store cannot hold "
                "an object and keys below it under the same name"
            ) from None
        try:
            if if_none_match:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    raise PreconditionFailed(key) from None
            else:
                with self._locked(key):
                    if if_match is not None:
                        try:
                            current = os.stat(final)
                        except (FileNotFoundError, NotADirectoryError):
                            raise PreconditionFailed(key) from None
                        if _etag(current) != if_match:
                            raise PreconditionFailed(key)
                    os.replace(tmp, final)
                    tmp = ""
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._fsync_dir(dirpath)
        return etag

    def _delete(self, key: str) -> None:
        parts = _check_key(key)
        final = self._path(parts)
        with self._locked(key):
            try:
                os.unlink(final)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # absent (a "directory" of other keys is not an object either)
        dirpath = os.path.dirname(final)
        self._fsync_dir(dirpath)
        # Prune directories the delete left empty, up to (not including) the root.
        while dirpath != self._root and dirpath.startswith(self._root + os.sep):
            try:
                os.rmdir(dirpath)
            except OSError:
                break  # not empty (or already gone / raced): stop
            dirpath = os.path.dirname(dirpath)

    def _check(self) -> None:
        root = self._root
        try:
            self._ensure_dir(root)
        except OSError as exc:
            raise StoreMisconfigured(
                f"file store root {root} does not exist and cannot be created: {exc.strerror or exc}"
            ) from exc
        if not os.path.isdir(root):
            raise StoreMisconfigured(f"file store root {root} is not a directory")
        if not os.access(root, os.W_OK | os.X_OK):
            raise StoreMisconfigured(f"file store root {root} is not writable by this user")
        # Exercise the real write path once: temp file, fsync, hard link, lock stripe.
        probe = os.path.join(root, f"{RESERVED_PREFIX}-check-{secrets.token_hex(8)}")
        tmp = ""
        try:
            tmp, _ = self._write_temp(root, b"floe")
            os.link(tmp, probe)
            with open(probe, "rb") as f:
                if f.read() != b"floe":
                    raise StoreMisconfigured(f"file store root {root}: probe read back wrong data")
            with self._locked(probe):
                pass
        except StoreError:
            raise
        except OSError as exc:
            hint = (
                " (the file system must support hard links)"
                if exc.errno
                in (
                    errno.EPERM,
                    errno.ENOTSUP,
                    errno.EOPNOTSUPP,
                    errno.EXDEV,
                )
                else ""
            )
            raise StoreMisconfigured(f"file store root {root} is not usable: {exc.strerror or exc}{hint}") from exc
        finally:
            for p in (tmp, probe):
                if p:
                    with contextlib.suppress(OSError):
                        os.unlink(p)

    # --- ObjectStore API ----------------------------------------------------

    async def check(self) -> None:
        """Create the root if needed and prove we can write, link, read and lock there."""
        try:
            await self._run(self._root, self._check)
        except StoreUnavailable as exc:
            raise StoreMisconfigured(str(exc)) from exc

    async def close(self) -> None:
        """Stop the pool; operations already running finish, later calls fail."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
