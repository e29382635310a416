"""The admin port's two secrets, against real broker processes.

The admin token guards the public ``/v1`` calls (topology, drain,
reassignments); the cluster secret guards the ``/internal/v1`` calls between
brokers. A refused call gets 401 and changes nothing: the broker keeps
serving and leaders stay where they were.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from floe_api.internal import METADATA_PATH, MetadataPush
from floe_api.public import DRAIN_PATH, REASSIGN_PATH
from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic, produce_all

TOKEN = "admin-" + uuid.uuid4().hex
SECRET = "cluster-" + uuid.uuid4().hex


def secret_files(tmp_path: Path, *, secret: str = SECRET, token: str = TOKEN) -> list[str]:
    d = tmp_path / f"secrets-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    (d / "cluster-secret").write_text(secret + "\n")
    (d / "admin-token").write_text(token)
    return ["--cluster-secret-file", str(d / "cluster-secret"), "--admin-token-file", str(d / "admin-token")]


def call(b: BrokerProcess, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(f"http://{b.http}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def leader(b: BrokerProcess, topic: str) -> int:
    status, view = call(b, "GET", "/v1/cluster", headers=bearer())
    assert status == 200, view
    return next(p["leader"] for p in view["partitions"] if p["topic"] == topic and p["partition"] == 0)


@pytest.fixture
def secured(brokers: BrokerFactory, file_store: StoreSpec, tmp_path: Path) -> list[BrokerProcess]:
    flags = secret_files(tmp_path)
    return [brokers(file_store, *flags), brokers(file_store, *flags)]


def test_without_the_token_drain_and_reassign_are_refused_and_nothing_happens(secured: list[BrokerProcess]) -> None:
    first, second = secured
    topic = f"auth-{uuid.uuid4().hex[:6]}"
    create_topic(first.bootstrap, topic, 1)
    before = leader(first, topic)
    other = 2 if before == 1 else 1

    # no token, a wrong one, no scheme, and the cluster secret (which is not the admin token)
    for headers in ({}, bearer("wrong-token"), {"Authorization": TOKEN}, {"X-Floe-Cluster-Secret": SECRET},
                    bearer(SECRET)):
        status, body = call(first, "POST", REASSIGN_PATH,
                            {"moves": [{"topic": topic, "partition": 0, "to": other}]}, headers)
        assert status == 401 and "FLOE_ADMIN_TOKEN" in body["error"]
        status, _ = call(second, "POST", DRAIN_PATH, None, headers)
        assert status == 401
        status, _ = call(first, "GET", "/v1/cluster", None, headers)
        assert status == 401, "the topology is not for anyone who asks"

    assert leader(first, topic) == before
    assert second.get("/readyz")[0] == 200 and second.proc is not None and second.proc.poll() is None
    reports = produce_all(first.bootstrap, [(topic, 0, None, b"still serving", None, None)])
    assert reports[0].error() is None and reports[0].offset() == 0
    # probes and scrapes stay open
    assert first.get("/healthz")[0] == 200 and first.get("/readyz")[0] == 200
    assert "floe_" in first.metrics_text()


def test_with_the_token_reassign_and_drain_work(secured: list[BrokerProcess]) -> None:
    first, second = secured
    topic = f"auth-{uuid.uuid4().hex[:6]}"
    create_topic(first.bootstrap, topic, 1)
    other = 2 if leader(first, topic) == 1 else 1
    status, body = call(first, "POST", REASSIGN_PATH,
                        {"moves": [{"topic": topic, "partition": 0, "to": other}]}, bearer())
    assert status == 200 and body["results"][0]["error"] is None, body
    assert leader(first, topic) == other
    status, body = call(second, "POST", DRAIN_PATH, None, bearer())
    assert status == 202
    assert second.proc is not None and second.proc.wait(60) == 0


def test_a_broker_with_the_wrong_cluster_secret_cannot_join(
        brokers: BrokerFactory, file_store: StoreSpec, tmp_path: Path) -> None:
    first = brokers(file_store, *secret_files(tmp_path))
    intruder = brokers(file_store, *secret_files(tmp_path, secret="not-the-cluster-secret"), wait=False)
    assert intruder.proc is not None and intruder.proc.wait(60) == 2
    assert "the controller refused this broker's cluster secret" in intruder.log_text()
    assert "not-the-cluster-secret" not in intruder.log_text() + first.log_text()
    status, view = call(first, "GET", "/v1/cluster", headers=bearer())
    assert status == 200 and [b["node_id"] for b in view["brokers"]] == [1]

    missing = brokers(file_store, "--admin-token-file", str(tmp_path / "nope"), wait=False)
    assert missing.proc is not None and missing.proc.wait(60) == 2
    assert "cannot read the admin token file" in missing.log_text()


def test_metadata_pushed_without_the_cluster_secret_is_refused(secured: list[BrokerProcess]) -> None:
    first, second = secured
    topic = f"auth-{uuid.uuid4().hex[:6]}"
    create_topic(first.bootstrap, topic, 1)
    status, view = call(second, "GET", "/v1/cluster", headers=bearer())
    forged = {"version": view["version"] + 100, "brokers": {}, "topics": {}}
    push = MetadataPush(state=json.dumps(forged)).model_dump(mode="json")
    for headers in ({}, {"X-Floe-Cluster-Secret": "guess"}, bearer()):
        status, _ = call(second, "POST", METADATA_PATH, push, headers)
        assert status == 401
    _, after = call(second, "GET", "/v1/cluster", headers=bearer())
    assert after["version"] == view["version"] and len(after["brokers"]) == 2
    assert any(p["topic"] == topic for p in after["partitions"])
    assert "admin call refused" in second.log_text()


def test_without_secrets_the_broker_is_open_and_says_so_once(brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store, env={"FLOE_CLUSTER_SECRET": "", "FLOE_ADMIN_TOKEN": ""})
    assert b.get("/v1/cluster")[0] == 200
    wait_until(lambda: "internal calls are unauthenticated" in b.log_text(), 10, message="the warning")
    assert b.log_text().count("internal calls are unauthenticated") == 1


def test_secrets_from_the_environment(brokers: BrokerFactory, file_store: StoreSpec) -> None:
    env = {"FLOE_CLUSTER_SECRET": SECRET, "FLOE_ADMIN_TOKEN": TOKEN}
    first, second = brokers(file_store, env=env), brokers(file_store, env=env)
    assert call(first, "GET", "/v1/cluster")[0] == 401
    status, view = call(first, "GET", "/v1/cluster", headers=bearer())
    assert status == 200 and len(view["brokers"]) == 2
    assert "internal calls are unauthenticated" not in first.log_text() + second.log_text()
