"""The ``floe`` switchboard: one subcommand per job, each in its own module.

``floe broker`` runs one broker, ``floe local`` a cluster of broker processes
on this machine, ``floe admin`` talks to a running cluster over its admin HTTP
API and ``floe operator`` hands over to the Kubernetes operator's own command
line. Subcommand modules register their parsers here and are imported only as
far as building the parser needs, so ``floe broker`` starts without loading the
operator.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from floe_cli import admin, broker, link, operator
from floe_cli.local import up


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floe", description="Kafka-compatible streaming over object storage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{broker,local,admin,operator,link}")
    broker.add_parser(sub)
    local = sub.add_parser("local", help="run a local cluster as processes")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up.add_parser(local_sub)
    admin.add_parser(sub)
    operator.add_parser(sub)
    link.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "operator":
            # The operator parses its own flags (including --help); argparse here would swallow them.
            return operator.run(args[1:])
        ns = build_parser().parse_args(args)
        return int(ns.func(ns) or 0)
    except KeyboardInterrupt:  # Ctrl-C in a command that does not handle it itself (admin drain waiting)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`floe operator render ... | head`): not our failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 1


if __name__ == "__main__":
    sys.exit(main())
