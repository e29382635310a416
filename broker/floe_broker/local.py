"""``floe local up``: the same system as local processes over a local object store.

Starts N ``floe broker`` processes on one ``file://`` store under ``.floe/``,
prints the bootstrap address and how to use it, and on Ctrl-C (or SIGTERM)
drains every broker and waits for them to exit.

With ``--autoscale`` the local scaling loop (``floe_cli.local.autoscale``,
imported lazily: the broker does not depend on it) also runs a local
Prometheus, the balancer and an HPA-style autoscaler that starts and drains
broker processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    local = sub.add_parser("local", help="run a local cluster as processes")
    lsub = local.add_subparsers(dest="local_command", required=True)
    up = lsub.add_parser("up", help="start brokers and wait (Ctrl-C drains and stops them)")
    up.add_argument("--brokers", type=int, default=3, help="number of broker processes")
    up.add_argument("--dir", default=".floe", help="state directory (the file:// store lives in DIR/data)")
    up.add_argument("--storage", default=None, help="object store URL (default: file://DIR/data)")
    up.add_argument("--cluster", default="local")
    up.add_argument("--kafka-port", type=int, default=9092, help="first broker's Kafka port")
    up.add_argument("--http-port", type=int, default=9644, help="first broker's admin port")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("broker_args", nargs="*", help="extra flags passed to every broker (after --)")
    up.set_defaults(func=_up)
    try:
        from floe_cli.local import flags
    except ImportError:  # the operator package is not installed: no --autoscale
        return
    flags.add_arguments(up)


def broker_command(
    *, storage: str, cluster: str, host: str, kafka_port: int, http_port: int, extra: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "floe_broker.cli", "broker",
        "--storage", storage, "--cluster", cluster,
        "--listen", f"{host}:{kafka_port}", "--http", f"{host}:{http_port}",
        *extra,
    ]


def wait_ready(http: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _up(ns: argparse.Namespace) -> int:
    if getattr(ns, "autoscale", False):
        from floe_cli.local import autoscale

        return autoscale.run(ns)
    state = Path(ns.dir).resolve()
    (state / "data").mkdir(parents=True, exist_ok=True)
    storage = ns.storage or f"file://{state / 'data'}"
    env = dict(os.environ)
    env.setdefault("FLOE_LOG_FORMAT", "console")
    procs: list[tuple[subprocess.Popen[bytes], str, str]] = []
    for i in range(ns.brokers):
        kafka = f"{ns.host}:{ns.kafka_port + i}"
        http = f"{ns.host}:{ns.http_port + i}"
        log_path = state / f"broker-{i}.log"
        cmd = broker_command(storage=storage, cluster=ns.cluster, host=ns.host,
                             kafka_port=ns.kafka_port + i, http_port=ns.http_port + i, extra=ns.broker_args)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        procs.append((proc, kafka, http))
        print(f"broker {i}: kafka {kafka}  admin http://{http}  log {log_path}", flush=True)
    for proc, _kafka, http in procs:
        if not wait_ready(http, proc=proc):
            print(f"broker at {http} did not become ready; see its log", file=sys.stderr)
            _stop(procs)
            return 1
    bootstrap = ",".join(k for _, k, _ in procs)
    print(f"""
Floe is running on {storage}
  bootstrap servers: {bootstrap}

  produce:  echo hello | kcat -P -b {bootstrap} -t demo
  consume:  kcat -C -b {bootstrap} -t demo -o beginning -e
  python:   from confluent_kafka import Producer; p = Producer({{"bootstrap.servers": "{bootstrap}"}})
  cluster:  floe admin cluster --http {procs[0][2]}
  move:     floe admin --http {procs[0][2]} reassign demo:0:2   (metadata only, milliseconds)

Ctrl-C drains and stops the brokers.""", flush=True)
    stop = {"now": False}

    def on_signal(_sig: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["now"]:
        if all(p.poll() is not None for p, _, _ in procs):
            print("all brokers exited", file=sys.stderr)
            return 1
        time.sleep(0.2)
    _stop(procs)
    return 0


def _stop(procs: list[tuple[subprocess.Popen[bytes], str, str]]) -> None:
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _, _ in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("stopped", flush=True)
