"""Turn a ``--storage`` URL into a ready :class:`ObjectStore` rooted at the cluster.

Every store handed to the rest of the broker is rooted at
``<prefix>/<cluster>/`` (docs/architecture.md#bucket-layout), so callers use keys like
``meta/cluster`` or ``wal/3/abc/00000001`` and several clusters can share one
bucket. Rooting is done by the backends themselves (the file store's root
directory, the S3 store's key prefix) rather than by an extra wrapper layer,
and the result is wrapped in :class:`InstrumentedStore` so every request is
counted.

Accepted URLs:

``file:///abs/path`` (also ``file://localhost/abs/path``)
    :class:`FileStore` on ``/abs/path/<cluster>``. Relative forms such as
    ``file://data`` or ``file://./data`` are rejected: several broker
    processes started from different working directories would silently use
    different stores. Write ``file://$PWD/data``.
``s3://bucket`` and ``s3://bucket/some/prefix``
    :class:`S3Store` with keys under ``[some/prefix/]<cluster>/``; endpoint,
    region and path-style come from the keyword arguments, credentials from
    the standard AWS environment variables / boto3 chain.
``memory://`` and ``memory://<name>``
    :class:`MemoryStore`, for tests. The anonymous form is a fresh store on
    every call; the named form is shared by every ``open_store`` call in this
    process with the same name and cluster (several in-process brokers on one
    "bucket").
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .instrumented import InstrumentedStore
from .memory import MemoryStore
from .objectstore import ObjectStore

__all__ = ["open_store", "SCHEMES"]

SCHEMES = ("file", "s3", "memory")

_named_memory: dict[tuple[str, str], MemoryStore] = {}
_named_memory_lock = threading.Lock()


def _check_cluster(cluster: str) -> str:
    if not cluster or "/" in cluster or cluster in (".", "..") or cluster.startswith(".floe"):
        raise ValueError(
            f"invalid cluster name {cluster!r}: it becomes one path component of every key "
            "(non-empty, no '/', not '.', '..' or '.floe*')"
        )
    return cluster


def open_store(
    url: str,
    *,
    cluster: str,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
    s3_path_style: bool = False,
    fsync: bool = True,
) -> InstrumentedStore:
    """Build the store for ``url``, rooted at ``<prefix>/<cluster>/`` and instrumented.

    Does no I/O beyond creating clients; call ``await store.check()`` to find
    out whether the store is usable. Raises ``ValueError`` for a malformed or
    unsupported URL.
    """
    _check_cluster(cluster)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    inner: ObjectStore
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"file store URL {url!r} must hold an absolute path: file:///abs/path "
                f"(relative paths such as file://{parts.netloc}{parts.path} are ambiguous "
                "between processes; use file://$PWD/...)"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file store URL {url!r} must hold an absolute path: file:///abs/path")
        from .local import FileStore

        inner = FileStore(Path(path) / cluster, fsync=fsync)
    elif scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise ValueError(f"S3 store URL {url!r} names no bucket: s3://bucket[/prefix]")
        prefix = unquote(parts.path).strip("/")
        root = f"{prefix}/{cluster}" if prefix else cluster
        from .s3 import S3Store

        inner = S3Store(
            bucket,
            root,
            endpoint_url=s3_endpoint,
            region=s3_region,
            path_style=s3_path_style,
        )
    elif scheme == "memory":
        name = parts.netloc + parts.path
        if name:
            with _named_memory_lock:
                inner = _named_memory.setdefault((name, cluster), MemoryStore())
        else:
            inner = MemoryStore()
    else:
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        raise ValueError(
            f"unsupported object store URL {url!r} (scheme {shown}); use file:///abs/path, "
            "s3://bucket[/prefix] or memory://"
        )
    return InstrumentedStore(inner)
