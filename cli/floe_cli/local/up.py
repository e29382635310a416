"""``floe local up``: the same system as local processes over a local object store.

Starts N ``floe broker`` processes on one ``file://`` store under ``.floe/``,
prints the bootstrap address and how to use it, and on Ctrl-C (or SIGTERM)
drains every broker and waits for them to exit. The admin API is secured by
default: a cluster secret and an admin token are generated once in
``DIR/secrets/`` and handed to every broker as files. Ports are checked before
anything starts, and a broker that fails has its reason printed here rather
than only in its log.

``--autoscale`` runs the local autoscaler instead (a local Prometheus, the
balancer and an HPA-style loop that starts and drains brokers), imported only
when asked for.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from floe_cli.local import brokers, flags, ports
from floe_cli.local import secrets as local_secrets
from floe_cli.local.brokers import say

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("up", help="start brokers and wait (Ctrl-C drains and stops them)",
                        description="Start a local cluster; Ctrl-C drains and stops it. "
                                    "Broker i listens on KAFKA_PORT+i and serves admin HTTP on HTTP_PORT+i.")
    up.add_argument("--brokers", type=int, default=3, help="number of broker processes")
    up.add_argument("--dir", default=".floe", help="state directory (the file:// store lives in DIR/data)")
    up.add_argument("--storage", default=None, help="object store URL (default: file://DIR/data)")
    up.add_argument("--cluster", default="local")
    up.add_argument("--kafka-port", type=int, default=9092, help="first broker's Kafka port")
    up.add_argument("--http-port", type=int, default=9644, help="first broker's admin port")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("broker_args", nargs="*", help="extra flags passed to every broker (after --)")
    up.set_defaults(func=run)
    flags.add_arguments(up)


def run(ns: argparse.Namespace) -> int:
    if getattr(ns, "autoscale", False):
        from floe_cli.local import autoscale  # the loop pulls in the operator's core: only when asked for

        return int(autoscale.run(ns))
    if ns.brokers < 1:
        say("floe local up: --brokers must be at least 1", err=True)
        return 2
    if ns.kafka_port < ns.http_port + ns.brokers and ns.http_port < ns.kafka_port + ns.brokers:
        say(f"floe local up: Kafka ports {ns.kafka_port}.. and admin ports {ns.http_port}.. overlap "
            f"for {ns.brokers} brokers; move one with --kafka-port or --http-port", err=True)
        return 2
    conflicts = ports.taken(ns.host, ns.brokers, ns.kafka_port, ns.http_port)
    if conflicts:
        say("floe local up: " + ports.conflict_message(ns.host, ns.brokers, ns.kafka_port, ns.http_port, conflicts),
            err=True)
        return 2
    state = Path(ns.dir).resolve()
    (state / "data").mkdir(parents=True, exist_ok=True)
    storage = ns.storage or f"file://{state / 'data'}"
    keys = local_secrets.ensure(state)
    signals = {"n": 0}

    def on_signal(_sig: int, _frame: object) -> None:
        signals["n"] += 1

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    say(f"starting {ns.brokers} broker(s) on {storage}; logs in {state}/broker-N.log")
    fleet = brokers.start(count=ns.brokers, state=state, storage=storage, cluster=ns.cluster, host=ns.host,
                          kafka_port=ns.kafka_port, http_port=ns.http_port,
                          extra=[*keys.broker_flags(), *ns.broker_args])
    if not brokers.wait_ready(fleet, timeout=START_TIMEOUT_S, stopping=lambda: signals["n"] > 0):
        brokers.stop(fleet, timeout=STOP_TIMEOUT_S, signals=lambda: signals["n"])
        say("floe local up: the cluster did not start (see above)", err=True)
        return 1
    _print_banner(fleet, storage, keys)
    while signals["n"] == 0:
        brokers.report_exits(fleet)
        if all(b.exit_code is not None for b in fleet):
            say("floe local up: every broker has exited; the cluster is down", err=True)
            return 1
        time.sleep(0.2)
    clean = brokers.stop(fleet, timeout=STOP_TIMEOUT_S, signals=lambda: signals["n"])
    if clean:
        say("floe local up: stopped; every broker drained and exited 0")
        return 0
    say("floe local up: stopped, but not every broker exited cleanly (see above and the broker logs)", err=True)
    return 1


def _print_banner(fleet: list[brokers.LocalBroker], storage: str, keys: local_secrets.LocalSecrets) -> None:
    bootstrap = ",".join(b.kafka for b in fleet)
    admin = fleet[0].http
    say(f"""
Floe is running on {storage}
  bootstrap servers: {bootstrap}

  produce:  echo hello | kcat -P -b {bootstrap} -t demo
  consume:  kcat -C -b {bootstrap} -t demo -o beginning -e
  python:   from confluent_kafka import Producer; p = Producer({{"bootstrap.servers": "{bootstrap}"}})

  the admin API needs this cluster's token (the brokers also share a cluster secret, in {keys.directory}):
  token:    {keys.export_hint()}
  cluster:  floe admin --http {admin} cluster
  move:     floe admin --http {admin} reassign demo:0:{fleet[-1].node}   (metadata only, milliseconds)
  drain:    floe admin --http {admin} drain --node {fleet[-1].node}

Ctrl-C drains and stops the brokers.""")
