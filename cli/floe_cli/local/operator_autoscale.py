"""Bridge to the autoscaler while it still lives in ``floe_operator.local``.

That autoscaler starts brokers with ``floe_broker.local.broker_command`` and
``wait_ready``, which now live in ``floe_cli.local.processes``; the alias below
lets it import them by the old name. ``floe local up`` prefers
``floe_cli.local.autoscale`` and ``floe_cli.local.flags`` as soon as they exist,
and this module goes away with the move.
"""

from __future__ import annotations

import argparse
import sys

from floe_cli.local import processes


def add_arguments(up: argparse.ArgumentParser) -> None:
    try:
        from floe_operator.local import flags
    except ImportError:  # the operator extras are not installed: no --autoscale
        return
    flags.add_arguments(up)


def run(ns: argparse.Namespace) -> int:
    sys.modules.setdefault("floe_broker.local", processes)
    from floe_operator.local import autoscaler

    return int(autoscaler.run(ns))
