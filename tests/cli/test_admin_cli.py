"""``floe admin`` against real brokers: what the user reads and what the cluster then looks like."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from floe_cli.admin_client import AdminClient
from tests.infra.broker import free_port, wait_until
from tests.test_clients import create_topic


def two_brokers(brokers, file_store):  # type: ignore[no-untyped-def]
    procs = [brokers(file_store), brokers(file_store)]
    client = AdminClient(procs[0].http)
    wait_until(lambda: len(client.cluster().brokers) == 2, 30, message="2 brokers registered")
    return procs, client


def leaders(client: AdminClient, topic: str, partitions: int) -> dict[int, int]:
    """The topic's leaders once this broker's view has every partition (views follow the controller's push)."""
    def seen() -> dict[int, int] | None:
        found = {p.partition: p.leader for p in client.cluster().partitions if p.topic == topic}
        return found if len(found) == partitions else None

    return wait_until(seen, 30, message=f"{partitions} partitions of {topic} in the view")  # type: ignore[no-any-return]


def test_reassign_of_many_moves_from_a_file_shows_progress_and_the_result(brokers, file_store, floe,
                                                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    procs, client = two_brokers(brokers, file_store)
    topic = f"many-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 120)
    nodes = [b.node_id for b in client.cluster().brokers]
    wanted = {p: nodes[1 - nodes.index(leader)] for p, leader in leaders(client, topic, 120).items()}
    moves = tmp_path / "moves.txt"
    moves.write_text("# every partition to the other broker\n"
                     + "\n".join(f"{topic}:{p}:{to}" for p, to in sorted(wanted.items())) + "\n")
    out = floe("admin", "--http", procs[1].http, "reassign", "-f", str(moves), "--chunk", "50")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "moved 50/120 (0 failed) ..." in lines
    assert "moved 100/120 (0 failed) ..." in lines
    assert lines[-1].startswith("moved 120/120 partition(s) in ")
    wait_until(lambda: leaders(client, topic, 120) == wanted, 30, message="every partition led by the other broker")


def test_reassign_from_stdin_reports_each_failed_move_and_exits_1(brokers, file_store, floe) -> None:  # type: ignore[no-untyped-def]
    procs, client = two_brokers(brokers, file_store)
    topic = f"bad-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 2)
    leader = leaders(client, topic, 2)
    out = floe("admin", "reassign", "--http", procs[0].http, "-f", "-", input=f"{topic}:0:{leader[0]} {topic}:1:99\n")
    assert out.returncode == 1
    assert f"{topic}-1: FAILED" in out.stdout
    assert "moved 1/2 partition(s) in" in out.stdout and "1 failed" in out.stdout


def test_a_malformed_move_is_one_line_and_exit_2(floe) -> None:  # type: ignore[no-untyped-def]
    out = floe("admin", "reassign", "orders:three:2")
    assert out.returncode == 2
    assert out.stderr.strip() == "floe admin reassign: bad move 'orders:three:2': expected TOPIC:PARTITION:NODE"


def test_drain_waits_until_the_broker_has_left_and_says_so(brokers, file_store, floe) -> None:  # type: ignore[no-untyped-def]
    procs, client = two_brokers(brokers, file_store)
    topic = f"dr-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 6)
    leaders(client, topic, 6)
    view = client.cluster()
    victim = next(b for b in view.brokers if b.http == procs[1].http)
    survivor = next(b.node_id for b in view.brokers if b is not victim)
    out = floe("admin", "--http", procs[1].http, "drain", "--node", str(victim.node_id), timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"node {victim.node_id} ({procs[1].http}): draining" in out.stdout
    assert out.stdout.splitlines()[-1].startswith(f"node {victim.node_id} has left the cluster after ")
    assert [b.node_id for b in client.cluster().brokers] == [survivor]
    assert set(leaders(client, topic, 6).values()) == {survivor}
    assert procs[1].proc.wait(30) == 0, "a drained broker exits 0 on its own"


def test_drain_of_an_unknown_node_names_the_nodes_there_are(brokers, file_store, floe) -> None:  # type: ignore[no-untyped-def]
    procs, client = two_brokers(brokers, file_store)
    nodes = ", ".join(str(b.node_id) for b in client.cluster().brokers)
    out = floe("admin", "--http", procs[0].http, "drain", "--node", "99")
    assert out.returncode == 1
    assert out.stderr.strip() == f"floe admin drain: node 99 is not in the cluster (nodes: {nodes})"


def test_an_unreachable_broker_is_one_line_and_exit_1(floe) -> None:  # type: ignore[no-untyped-def]
    http = f"127.0.0.1:{free_port()}"
    out = floe("admin", "--http", http, "cluster")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"floe admin cluster: cannot reach the admin API at http://{http}/v1/cluster")


class FakeAdmin(BaseHTTPRequestHandler):
    """Answers ``GET /v1/cluster`` with a refusal, recording the Authorization header."""

    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        FakeAdmin.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error": "unauthorized: bad token"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def fake_admin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAdmin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeAdmin.seen.clear()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_admin_token_is_sent_and_a_refusal_is_one_line(floe, fake_admin: str) -> None:  # type: ignore[no-untyped-def]
    out = floe("admin", "--http", fake_admin, "cluster", env={"FLOE_ADMIN_TOKEN": "s3cret"})
    assert FakeAdmin.seen == ["Bearer s3cret"]
    assert out.returncode == 1
    assert out.stderr == (f"floe admin cluster: GET http://{fake_admin}/v1/cluster: HTTP 401: the broker refused "
                          "the admin token in FLOE_ADMIN_TOKEN; set it to this cluster's token (for floe local up: "
                          "export FLOE_ADMIN_TOKEN=$(cat .floe/secrets/admin-token))\n")


def test_without_a_token_a_401_says_to_set_it(floe, fake_admin: str) -> None:  # type: ignore[no-untyped-def]
    out = floe("admin", "--http", fake_admin, "cluster", env={"FLOE_ADMIN_TOKEN": ""})
    assert FakeAdmin.seen == [None]
    assert out.returncode == 1
    assert "HTTP 401: this cluster's admin API needs a token: set FLOE_ADMIN_TOKEN" in out.stderr
