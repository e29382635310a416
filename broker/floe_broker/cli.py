"""The ``floe`` command: ``broker``, ``local``, ``admin``, ``operator``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import config as config_mod
from . import logs


def _broker_main(ns: argparse.Namespace) -> int:
    cfg = config_mod.from_namespace(ns)
    logs.configure(cfg.log_format, cfg.log_level)
    from .runner import run_broker

    try:
        import uvloop

        return uvloop.run(run_broker(cfg))
    except ImportError:  # pragma: no cover - uvloop is a hard dependency
        return asyncio.run(run_broker(cfg))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker", help="run one broker process")
    config_mod.add_arguments(broker)
    broker.set_defaults(func=_broker_main)

    from . import local

    local.add_parser(sub)
    from . import admin_cli

    admin_cli.add_parser(sub)
    op = sub.add_parser("operator", help="run the Kubernetes operator (or render manifests)", add_help=False)
    op.add_argument("rest", nargs=argparse.REMAINDER)
    op.set_defaults(func=_operator_main)
    return parser


def _operator_main(ns: argparse.Namespace) -> int:
    try:
        from floe_operator import cli as operator_cli
    except ImportError as exc:
        print(f"floe operator needs the operator extras: pip install 'floe[operator]' ({exc})", file=sys.stderr)
        return 2
    return int(operator_cli.main(ns.rest))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "operator":
        ns = argparse.Namespace(rest=args[1:])
        return _operator_main(ns)
    parser = build_parser()
    ns = parser.parse_args(args)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    sys.exit(main())
