"""``floe admin``: the cluster view and operations over a broker's admin HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="inspect and operate a running cluster")
    admin.add_argument("--http", default="127.0.0.1:9644", help="any broker's admin HOST:PORT")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    cluster = asub.add_parser("cluster", help="brokers, controller, leaders and epochs")
    cluster.add_argument("--json", action="store_true")
    cluster.set_defaults(func=_cluster)


def _get(http: str, path: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://{http}{path}", timeout=10) as resp:
        return json.load(resp)


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
