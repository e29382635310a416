"""``floe local up`` tells the user, on the console, why a cluster did not start and what each broker does."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import time

from floe_cli.admin_client import AdminClient
from tests.cli.conftest import floe_command, floe_env, read
from tests.infra.broker import wait_until


def test_a_taken_admin_port_is_named_with_the_remedy_before_anything_starts(floe, free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka, http = free_ranges(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", http + 1))
        squatter.listen()
        begun = time.monotonic()
        out = floe("local", "up", "--brokers", "2", "--dir", str(tmp_path), "--kafka-port", str(kafka),
                   "--http-port", str(http), timeout=30)
        elapsed = time.monotonic() - begun
    assert out.returncode != 0
    assert elapsed < 15, f"took {elapsed:.1f}s: the conflict must be found before waiting for brokers"
    assert f"{http + 1} (admin HTTP of broker 1)" in out.stderr
    assert f"{http} (admin HTTP" not in out.stderr, "only the taken port is named"
    assert "--kafka-port" in out.stderr and "--http-port" in out.stderr and "make run" in out.stderr
    assert not (tmp_path / "broker-0.log").exists(), "no broker was started"


def test_a_broker_that_cannot_start_has_its_reason_on_the_console(floe, free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka, http = free_ranges(1)
    out = floe("local", "up", "--brokers", "1", "--dir", str(tmp_path), "--kafka-port", str(kafka),
               "--http-port", str(http), "--storage", "bogus://nowhere", timeout=60)
    assert out.returncode == 1
    assert "broker 0 could not start (exit code 2)" in out.stderr
    assert "unsupported object store URL 'bogus://nowhere'" in out.stderr
    assert str(tmp_path / "broker-0.log") in out.stderr


def test_the_reason_is_this_runs_not_an_earlier_one_in_the_same_log(floe, free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broker-0.log").write_text('x [error] cannot start reason="an earlier run\'s failure"\n')
    kafka, http = free_ranges(1)
    out = floe("local", "up", "--brokers", "1", "--dir", str(tmp_path), "--kafka-port", str(kafka),
               "--http-port", str(http), "--", "--no-such-broker-flag", timeout=60)
    assert out.returncode == 1
    assert "earlier run" not in out.stderr
    assert "unrecognized arguments: --no-such-broker-flag" in out.stderr


def test_up_shows_progress_and_ctrl_c_drains_every_broker_and_exits_0(free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka, http = free_ranges(2)
    console = tmp_path / "console.txt"
    with open(console, "wb") as out:
        up = subprocess.Popen(floe_command("local", "up", "--brokers", "2", "--dir", str(tmp_path / "state"),
                                           "--kafka-port", str(kafka), "--http-port", str(http)),
                              stdout=out, stderr=subprocess.STDOUT, env=floe_env())
    try:
        wait_until(lambda: "Ctrl-C drains and stops the brokers." in read(console), 90,
                   message="the cluster to come up")
        text = read(console)
        assert "broker 0 ready" in text and "broker 1 ready" in text
        assert "ready (1/2)" in text and "ready (2/2)" in text
        assert f"bootstrap servers: 127.0.0.1:{kafka},127.0.0.1:{kafka + 1}" in text
        token_file = tmp_path / "state" / "secrets" / "admin-token"
        assert f"export FLOE_ADMIN_TOKEN=$(cat {token_file})" in text
        for name in ("admin-token", "cluster-secret"):
            assert stat.S_IMODE((token_file.parent / name).stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert token not in text, "the banner says where the token is, never the token"
        nodes = {b.node_id for b in AdminClient(f"127.0.0.1:{http}", token=token).cluster().brokers}
        assert len(nodes) == 2
        refused = subprocess.run(floe_command("admin", "--http", f"127.0.0.1:{http}", "cluster"),
                                 capture_output=True, text=True, timeout=30, env=floe_env(FLOE_ADMIN_TOKEN=""))
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "set FLOE_ADMIN_TOKEN" in refused.stderr
        shown = subprocess.run(floe_command("admin", "--http", f"127.0.0.1:{http}", "cluster"),
                               capture_output=True, text=True, timeout=30, env=floe_env(FLOE_ADMIN_TOKEN=token))
        assert shown.returncode == 0, shown.stderr
        for node in nodes:
            assert str(node) in shown.stdout
        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, read(console)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = read(console)
    for node in nodes:
        assert f"(node {node}): draining" in text
        assert f"(node {node}): exited, exit code 0 (drained), after " in text
    assert text.rstrip().endswith("floe local up: stopped; every broker drained and exited 0")
    for port in (http, http + 1):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"a broker still serves on {port}"


def test_autoscale_is_secured_too_and_its_loop_sends_the_token(free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka, http = free_ranges(2)
    state = tmp_path / "state"
    console = tmp_path / "console.txt"
    with open(console, "wb") as out:
        up = subprocess.Popen(floe_command("local", "up", "--autoscale", "--brokers", "1", "--max-brokers", "1",
                                           "--dir", str(state), "--kafka-port", str(kafka), "--http-port", str(http),
                                           "--prometheus", "off", "--autoscale-interval", "0.2"),
                              stdout=out, stderr=subprocess.STDOUT, env=floe_env())
    try:
        wait_until(lambda: "Ctrl-C drains and stops the brokers." in read(console), 90, message="the cluster")
        token_file = state / "secrets" / "admin-token"
        assert f"export FLOE_ADMIN_TOKEN=$(cat {token_file})" in read(console)
        # the loop reads the cluster every round: with its token, the broker refuses none of them
        wait_until(lambda: read(state / "autoscale.jsonl").count('"decision"') >= 5, 60, message="5 rounds")
        assert "admin call refused" not in read(state / "broker-0.log")
        assert AdminClient(f"127.0.0.1:{http}", token=token_file.read_text().strip()).cluster().brokers
        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, read(console)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
