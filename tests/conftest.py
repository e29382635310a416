"""Shared fixtures: object stores (file://, moto S3) and real broker processes.

``store`` is parametrised so every test that uses it runs against both the
``file://`` store and boto3 against a moto S3 server started here.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.broker import BrokerProcess

_counter = itertools.count()


@dataclass
class StoreSpec:
    kind: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    endpoint: str | None = None


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[object]:
    from tests.infra.moto_server import MotoServer

    with MotoServer() as server:
        yield server


def s3_spec(moto: object, prefix: str, endpoint: str | None = None,
            flush_profile: str | None = "latency") -> StoreSpec:
    """A store on moto's bucket; ``endpoint`` overrides moto's (e.g. a fault proxy in front).

    Brokers on it get ``--flush-profile latency`` unless ``flush_profile`` says otherwise
    (``None``: the s3:// default, ``cost``): the client tests pipeline thousands of one-record
    requests, which at one flush per 250 ms would take minutes and test nothing more.
    """
    endpoint = endpoint or moto.endpoint  # type: ignore[attr-defined]
    profile = ["--flush-profile", flush_profile] if flush_profile else []
    return StoreSpec(
        kind="s3",
        url=f"s3://{moto.bucket}/{prefix}",  # type: ignore[attr-defined]
        env={
            "AWS_ACCESS_KEY_ID": moto.access_key,  # type: ignore[attr-defined]
            "AWS_SECRET_ACCESS_KEY": moto.secret_key,  # type: ignore[attr-defined]
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        flags=["--s3-endpoint", endpoint, "--s3-region", "us-east-1", "--s3-path-style", *profile],
        endpoint=endpoint,
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "file":
        return StoreSpec(kind="file", url=f"file://{tmp_path / 'bucket'}")
    return s3_spec(request.getfixturevalue("moto_s3"), f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
def file_store(tmp_path: Path) -> StoreSpec:
    return StoreSpec(kind="file", url=f"file://{tmp_path / 'bucket'}")


class BrokerFactory:
    """Starts broker processes on a store; everything is killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[BrokerProcess] = []

    def __call__(
        self,
        store: StoreSpec,
        *extra: str,
        cluster: str = "test",
        wait: bool = True,
        env: dict[str, str] | None = None,
        kafka_port: int | None = None,
        http_port: int | None = None,
    ) -> BrokerProcess:
        n = next(_counter)
        proc = BrokerProcess(
            storage=store.url,
            cluster=cluster,
            log_path=self.tmp_path / f"broker-{n}.log",
            env={**store.env, **(env or {})},
            extra=[*store.flags, "--session-timeout-ms", "3000", "--fsync", "false", *extra],
        )
        if kafka_port:
            proc.kafka_port = kafka_port
        if http_port:
            proc.http_port = http_port
        self.started.append(proc)
        return proc.start(wait=wait)

    def stop_all(self) -> None:
        for p in self.started:
            p.stop()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def broker(brokers: BrokerFactory, store: StoreSpec) -> BrokerProcess:
    """One broker on the parametrised store (file:// and moto S3)."""
    return brokers(store)


@pytest.fixture(scope="session")
def radosgw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Ceph radosgw (one mon, one memstore OSD), started once per session."""
    from tests.infra.radosgw import Radosgw, radosgw_available

    ok, reason = radosgw_available()
    if not ok:
        pytest.skip(reason)
    rgw = Radosgw(tmp_path_factory.mktemp("rgw"))
    rgw.start()
    try:
        _rgw_bucket(rgw)
        yield rgw
    finally:
        rgw.stop()


def _rgw_bucket(rgw: object) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=rgw.endpoint, region_name=rgw.region,  # type: ignore[attr-defined]
        aws_access_key_id=rgw.access_key, aws_secret_access_key=rgw.secret_key,  # type: ignore[attr-defined]
    ).create_bucket(Bucket="floe-rgw")


@pytest.fixture(params=["file", pytest.param("radosgw", marks=pytest.mark.radosgw)])
def cluster_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """The cluster tier's stores: the file:// store and Ceph radosgw through boto3."""
    if request.param == "file":
        return StoreSpec(kind="file", url=f"file://{tmp_path / 'bucket'}")
    rgw = request.getfixturevalue("radosgw_server")
    prefix = f"c{uuid.uuid4().hex[:8]}"
    return StoreSpec(
        kind="radosgw",
        url=f"s3://floe-rgw/{prefix}",
        env={"AWS_ACCESS_KEY_ID": rgw.access_key, "AWS_SECRET_ACCESS_KEY": rgw.secret_key,  # type: ignore[attr-defined]
             "AWS_DEFAULT_REGION": rgw.region},  # type: ignore[attr-defined]
        flags=["--s3-endpoint", rgw.endpoint, "--s3-region", rgw.region, "--s3-path-style",  # type: ignore[attr-defined]
               "--flush-profile", "latency"],  # as on moto (s3_spec): the tests' timings assume 10 ms
        endpoint=rgw.endpoint,  # type: ignore[attr-defined]
    )
