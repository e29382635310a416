"""Fixtures for the object-store conformance suite.

One moto server per session (auth on, so signatures are really checked) keeps
the S3 leg fast; every test gets its own key prefix in the shared bucket, so
tests never see each other's objects. A second S3 leg runs against a real
Ceph radosgw (marker ``radosgw``) when its binaries are installed: moto is
lenient where RGW is strict (RGW refuses a quoted ETag in ``If-Match``).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from floe_broker.storage.factory import open_store
from floe_broker.storage.instrumented import InstrumentedStore
from floe_broker.storage.s3 import S3Store
from tests.infra.moto_server import MotoServer
from tests.infra.radosgw import Radosgw, radosgw_available
from tests.infra.s3_fault_proxy import S3FaultProxy

STORE_KINDS = ("memory", "file", "s3", pytest.param("rgw", marks=pytest.mark.radosgw))
RGW_BUCKET = "floe-test"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def radosgw_server() -> Iterator[Radosgw]:
    ok, reason = radosgw_available()
    if not ok:
        pytest.skip(reason)
    # A short path: Ceph's admin sockets live below it (sun_path is 108 bytes).
    workdir = tempfile.mkdtemp(prefix="floe-rgw-")
    try:
        with Radosgw(workdir, memstore_bytes=256 << 20) as rgw:
            S3Store(
                RGW_BUCKET,
                endpoint_url=rgw.endpoint,
                region=rgw.region,
                path_style=True,
                aws_access_key_id=rgw.access_key,
                aws_secret_access_key=rgw.secret_key,
            )._client.create_bucket(Bucket=RGW_BUCKET)
            yield rgw
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def make_rgw_store(rgw: Radosgw) -> S3Store:
    return S3Store(
        RGW_BUCKET,
        f"t-{uuid.uuid4().hex[:12]}/c1",
        endpoint_url=rgw.endpoint,
        region=rgw.region,
        path_style=True,
        aws_access_key_id=rgw.access_key,
        aws_secret_access_key=rgw.secret_key,
        max_attempts=1,
        connect_timeout=2.0,
        read_timeout=10.0,
    )


def make_s3_store(
    moto: MotoServer,
    *,
    endpoint: str | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    **kwargs: Any,
) -> S3Store:
    """An S3Store on the session moto server (or a proxy in front of it), own prefix."""
    opts: dict[str, Any] = {
        "endpoint_url": endpoint or moto.endpoint,
        "region": moto.region,
        "path_style": True,
        "aws_access_key_id": moto.access_key,
        "aws_secret_access_key": moto.secret_key,
        "max_attempts": 1,
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
    }
    opts.update(kwargs)
    return S3Store(
        bucket or moto.bucket or "floe-test",
        prefix if prefix is not None else f"t-{uuid.uuid4().hex[:12]}/c1",
        **opts,
    )


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store_builder(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A zero-argument callable building a fresh store of ``store_kind``.

    Kept synchronous so the session-scoped moto fixture is only started when an
    S3 case actually runs.
    """
    server: Any = None
    if store_kind == "s3":
        server = request.getfixturevalue("moto_server")
    elif store_kind == "rgw":
        server = request.getfixturevalue("radosgw_server")

    def build() -> InstrumentedStore:
        if store_kind == "memory":
            return open_store("memory://", cluster="c1")
        if store_kind == "file":
            return open_store(f"file://{tmp_path}/bucket", cluster="c1", fsync=True)
        if store_kind == "rgw":
            return InstrumentedStore(make_rgw_store(server))
        return InstrumentedStore(make_s3_store(server))

    return build


@pytest.fixture
async def store(store_builder: Any) -> AsyncIterator[InstrumentedStore]:
    s: InstrumentedStore = store_builder()
    await s.check()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def fault_proxy(moto_server: MotoServer) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(moto_server.endpoint) as proxy:
        yield proxy


@pytest.fixture
async def proxied_store(moto_server: MotoServer, fault_proxy: S3FaultProxy) -> AsyncIterator[S3Store]:
    """An S3Store whose endpoint is the fault proxy; short timeouts, no botocore retries."""
    s = make_s3_store(moto_server, endpoint=fault_proxy.endpoint, read_timeout=1.0, connect_timeout=1.0)
    try:
        yield s
    finally:
        await s.close()
