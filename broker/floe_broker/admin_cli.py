"""``floe admin``: the cluster view and operations over a broker's admin HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="inspect and operate a running cluster")
    admin.add_argument("--http", default="127.0.0.1:9644", help="any broker's admin HOST:PORT")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    cluster = asub.add_parser("cluster", help="brokers, controller, leaders and epochs")
    cluster.add_argument("--json", action="store_true")
    cluster.set_defaults(func=_cluster)
    reassign = asub.add_parser("reassign", help="move partition leaders (metadata only)")
    reassign.add_argument("moves", nargs="+", metavar="TOPIC:PARTITION:NODE",
                          help="e.g. orders:3:2 moves orders partition 3 to node 2")
    reassign.set_defaults(func=_reassign)


def _get(http: str, path: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://{http}{path}", timeout=10) as resp:
        return json.load(resp)


def _reassign(ns: argparse.Namespace) -> int:
    moves = []
    for spec in ns.moves:
        try:
            topic, partition, node = spec.rsplit(":", 2)
            moves.append({"topic": topic, "partition": int(partition), "to": int(node)})
        except ValueError:
            print(f"bad move {spec!r}: expected TOPIC:PARTITION:NODE", file=sys.stderr)
            return 2
    req = urllib.request.Request(f"http://{ns.http}/v1/reassignments", method="POST",
                                 data=json.dumps({"moves": moves}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            reply = json.load(resp)
    except urllib.error.HTTPError as exc:
        print(f"reassignment failed: {exc.read().decode()}", file=sys.stderr)
        return 1
    failed = 0
    for r in reply["results"]:
        where = f"{r['topic']}-{r['partition']}"
        if r["error"]:
            failed += 1
            print(f"{where}: FAILED {r['error']}")
        else:
            print(f"{where}: node {r['from_node']} -> {r['to']}")
    print(f"done in {reply['seconds'] * 1000:.0f} ms")
    return 1 if failed else 0


def _cluster(ns: argparse.Namespace) -> int:
    view = _get(ns.http, "/v1/cluster")
    if ns.json:
        json.dump(view, sys.stdout, indent=2)
        print()
        return 0
    print(f"controller: {view['controller']}   metadata version: {view['version']}")
    print(f"{'node':>5}  {'endpoint':<22} {'admin':<22} {'partitions':>10}  draining")
    for b in view["brokers"]:
        print(f"{b['node_id']:>5}  {b['host'] + ':' + str(b['port']):<22} {b['http']:<22} "
              f"{b['partitions']:>10}  {b['draining']}")
    return 0
