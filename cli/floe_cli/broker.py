"""``floe broker``: one broker process, configured from flags or ``FLOE_*`` variables.

The flags, their environment variables and the exit codes belong to the broker
(``floe_broker.config``, ``floe_broker.runner``); this module only wires them
to the command line and runs the broker on uvloop.
"""

from __future__ import annotations

import argparse

import uvloop

from floe_broker import config, logs


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("broker", help="run one broker process",
                            description="Run one Floe broker. Every flag can also be set as FLOE_<FLAG>.")
    config.add_arguments(parser)
    parser.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from floe_broker.runner import run_broker  # the whole broker: not loaded for the other subcommands

    cfg = config.from_namespace(ns)
    logs.configure(cfg.log_format, cfg.log_level)
    return uvloop.run(run_broker(cfg))
