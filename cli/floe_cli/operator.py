"""``floe operator``: hand the rest of the command line to the operator's own CLI.

The operator is an optional extra (``floe[operator]``: kopf, the Kubernetes
client); without it the other subcommands still work and this one says what to
install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Listed for ``floe --help`` only: ``main`` routes ``floe operator ...`` before argparse sees it."""
    parser = sub.add_parser("operator", help="run the Kubernetes operator (or render manifests)", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda ns: run(ns.rest))


def run(argv: Sequence[str]) -> int:
    try:
        from floe_operator import cli as operator_cli
    except ImportError as exc:
        print(f"floe operator needs the operator extras: pip install 'floe[operator]' ({exc})", file=sys.stderr)
        return 2
    return int(operator_cli.main(list(argv)))
