"""``floe admin``: look at and operate a running cluster through any broker's admin HTTP API.

``cluster`` prints the view every broker holds; ``reassign`` moves partition
leaders (metadata only, so many moves take milliseconds each) in chunks with
progress; ``drain`` empties one broker and waits until it has left. Every
failure is one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from floe_api.public import BrokerView, ClusterView, Move, MoveResult
from floe_cli.admin_client import AdminClient, AdminError

DEFAULT_HTTP = "127.0.0.1:9644"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # --http is accepted before or after the subcommand: `floe admin --http H cluster` or `floe admin cluster --http H`.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--http", default=argparse.SUPPRESS,
                       help=f"any broker's admin HOST:PORT (default {DEFAULT_HTTP})")
    admin = sub.add_parser("admin", help="inspect and operate a running cluster",
                           description="Talk to a running cluster. Sends $FLOE_ADMIN_TOKEN as a bearer token if set.")
    admin.add_argument("--http", default=DEFAULT_HTTP, help="any broker's admin HOST:PORT")
    asub = admin.add_subparsers(dest="admin_command", required=True)

    cluster = asub.add_parser("cluster", parents=[where], help="brokers, controller, leaders and epochs")
    cluster.add_argument("--json", action="store_true", help="the raw view, as the API returns it")
    cluster.set_defaults(func=run, action=_cluster)

    reassign = asub.add_parser("reassign", parents=[where], help="move partition leaders (metadata only)",
                               description="Move partition leaders. Moves come as arguments and/or from a file "
                                           "(-f FILE, '-' for stdin), one TOPIC:PARTITION:NODE per word; "
                                           "'#' starts a comment.")
    reassign.add_argument("moves", nargs="*", metavar="TOPIC:PARTITION:NODE",
                          help="e.g. orders:3:2 moves orders partition 3 to node 2")
    reassign.add_argument("-f", "--file", help="read moves from FILE ('-' for stdin)")
    reassign.add_argument("--chunk", type=int, default=50, help="moves per request (progress is shown per chunk)")
    reassign.set_defaults(func=run, action=_reassign)

    drain = asub.add_parser("drain", parents=[where], help="move a broker's partitions away and wait until it leaves")
    drain.add_argument("--node", type=int, required=True, help="node id of the broker to drain")
    drain.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it to leave")
    drain.set_defaults(func=run, action=_drain)


def run(ns: argparse.Namespace) -> int:
    try:
        return int(ns.action(ns))
    except AdminError as exc:
        print(f"floe admin {ns.admin_command}: {exc}", file=sys.stderr)
        return 1


def _fail(ns: argparse.Namespace, message: str, code: int = 1) -> int:
    print(f"floe admin {ns.admin_command}: {message}", file=sys.stderr)
    return code


# cluster


def _cluster(ns: argparse.Namespace) -> int:
    view = AdminClient(ns.http).cluster()
    if ns.json:
        print(view.model_dump_json(indent=2))
        return 0
    print(f"controller: {view.controller}   metadata version: {view.version}")
    print(f"{'node':>5}  {'endpoint':<22} {'admin':<22} {'partitions':>10}  draining")
    for b in view.brokers:
        print(f"{b.node_id:>5}  {b.host + ':' + str(b.port):<22} {b.http:<22} {b.partitions:>10}  {b.draining}")
    return 0


# reassign


def parse_moves(words: Iterable[str]) -> list[Move]:
    """``TOPIC:PARTITION:NODE`` words; the topic may itself contain colons."""
    moves = []
    for word in words:
        topic, _, rest = word.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if not topic or not partition.lstrip("-").isdigit() or not rest.lstrip("-").isdigit():
            raise ValueError(f"bad move {word!r}: expected TOPIC:PARTITION:NODE")
        moves.append(Move(topic=topic, partition=int(partition), to=int(rest)))
    return moves


def read_words(stream: TextIO) -> list[str]:
    return [w for line in stream for w in line.split("#", 1)[0].split()]


def _reassign(ns: argparse.Namespace) -> int:
    words = list(ns.moves)
    if ns.file == "-":
        words += read_words(sys.stdin)
    elif ns.file:
        try:
            with open(ns.file) as f:
                words += read_words(f)
        except OSError as exc:
            return _fail(ns, f"cannot read moves: {exc}", 2)
    try:
        moves = parse_moves(words)
    except ValueError as exc:
        return _fail(ns, str(exc), 2)
    if not moves:
        return _fail(ns, "no moves given (as arguments or with -f FILE)", 2)
    if ns.chunk < 1:
        return _fail(ns, "--chunk must be at least 1", 2)
    client = AdminClient(ns.http)
    results: list[MoveResult] = []
    seconds = 0.0
    chunked = len(moves) > ns.chunk
    for start in range(0, len(moves), ns.chunk):
        reply = client.reassign(moves[start:start + ns.chunk])
        seconds += reply.seconds
        results += reply.results
        for r in reply.failed:
            print(f"{r.topic}-{r.partition}: FAILED {r.error}")
        if chunked:
            done = sum(1 for r in results if not r.error)
            print(f"moved {done}/{len(moves)} ({len(results) - done} failed) ...", flush=True)
        else:
            for r in reply.results:
                if not r.error:
                    print(f"{r.topic}-{r.partition}: node {r.from_node} -> {r.to}")
    failed = sum(1 for r in results if r.error)
    print(f"moved {len(results) - failed}/{len(moves)} partition(s) in {seconds * 1000:.0f} ms"
          + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


# drain


def _find(view: ClusterView, node: int) -> BrokerView | None:
    return next((b for b in view.brokers if b.node_id == node), None)


def _drain(ns: argparse.Namespace) -> int:
    view = AdminClient(ns.http).cluster()
    target = _find(view, ns.node)
    if target is None:
        nodes = ", ".join(str(b.node_id) for b in view.brokers) or "none"
        return _fail(ns, f"node {ns.node} is not in the cluster (nodes: {nodes})")
    reply = AdminClient(target.http).drain()
    print(f"node {reply.node} ({target.http}): {reply.status}, {target.partitions} partition(s) to move", flush=True)
    # Watch from another broker: the drained one stops answering once it has left.
    watchers = [b.http for b in view.brokers if b.node_id != ns.node] or [target.http]
    begun = time.monotonic()
    last: tuple[int, bool] | None = (target.partitions, target.draining)
    while time.monotonic() - begun < ns.timeout:
        time.sleep(0.2)
        try:
            view = AdminClient(watchers[0]).cluster()
        except AdminError:
            if watchers[0] == target.http:  # the only broker: gone means it has left
                break
            watchers = watchers[1:] or [target.http]
            continue
        now = _find(view, ns.node)
        if now is None:
            break
        if (now.partitions, now.draining) != last:
            last = (now.partitions, now.draining)
            print(f"node {ns.node}: {now.partitions} partition(s) left ({time.monotonic() - begun:.1f} s)", flush=True)
    else:
        return _fail(ns, f"node {ns.node} is still in the cluster after {ns.timeout:.0f} s")
    print(f"node {ns.node} has left the cluster after {time.monotonic() - begun:.1f} s")
    return 0
