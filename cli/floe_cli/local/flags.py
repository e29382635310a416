"""The ``--autoscale`` flags of ``floe local up``; the defaults are the HPA's.

Kept apart from the loop so that building the CLI parser (which every broker
process does) imports nothing but the pure HPA module.
"""

from __future__ import annotations

import argparse

from floe_cli.local import hpa


def parse_policy(text: str) -> hpa.ScalingPolicy:
    """``Pods:4:15`` or ``Percent:100:15`` (type, value, period in seconds)."""
    kind, value, period = text.split(":")
    if kind not in ("Pods", "Percent"):
        raise argparse.ArgumentTypeError(f"policy type must be Pods or Percent, not {kind!r}")
    return hpa.ScalingPolicy(kind, int(value), float(period))  # type: ignore[arg-type]


def add_arguments(up: argparse.ArgumentParser) -> None:
    """The ``--autoscale`` flags of ``floe local up`` (defaults are the HPA's)."""
    g = up.add_argument_group("autoscaling (--autoscale)")
    g.add_argument("--autoscale", action="store_true",
                   help="scale brokers with the HPA formula on bytes in per broker, and rebalance")
    g.add_argument("--min-brokers", type=int, default=None, help="HPA minReplicas (default: --brokers)")
    g.add_argument("--max-brokers", type=int, default=5, help="HPA maxReplicas")
    g.add_argument("--target-bytes-in", type=float, default=1024 * 1024,
                   help="target bytes in per broker per second (HPA AverageValue)")
    g.add_argument("--autoscale-interval", type=float, default=5.0, help="seconds between decisions")
    g.add_argument("--rate-window", type=float, default=15.0, help="seconds of counters behind each rate")
    g.add_argument("--balance-window", type=float, default=30.0,
                   help="seconds of counters behind each partition's load (the balancer's input)")
    g.add_argument("--tolerance", type=float, default=hpa.DEFAULT_TOLERANCE)
    g.add_argument("--scale-up-window", type=float, default=0.0, help="scale-up stabilization window (s)")
    g.add_argument("--scale-down-window", type=float, default=300.0, help="scale-down stabilization window (s)")
    g.add_argument("--scale-up-policy", type=parse_policy, action="append", default=None,
                   help="TYPE:VALUE:PERIOD, repeatable (default Percent:100:15 and Pods:4:15)")
    g.add_argument("--scale-down-policy", type=parse_policy, action="append", default=None,
                   help="TYPE:VALUE:PERIOD, repeatable (default Percent:100:15)")
    g.add_argument("--scale-up-select", choices=["Max", "Min", "Disabled"], default="Max")
    g.add_argument("--scale-down-select", choices=["Max", "Min", "Disabled"], default="Max")
    g.add_argument("--max-skew-percent", type=float, default=20.0)
    g.add_argument("--skew-intervals", type=int, default=3)
    g.add_argument("--prometheus", default="auto",
                   help="'auto' (use /usr/bin/prometheus if installed), 'off', or a prometheus binary")
    g.add_argument("--prometheus-port", type=int, default=0, help="0 picks a free port")
    g.add_argument("--scrape-interval", type=float, default=1.0, help="seconds")
    g.add_argument("--drain-timeout", type=float, default=120.0)


def behavior_from(ns: argparse.Namespace) -> hpa.Behavior:
    up, down = hpa.default_scale_up(), hpa.default_scale_down()
    return hpa.Behavior(
        scale_up=hpa.ScalingRules(ns.scale_up_window, tuple(ns.scale_up_policy or up.policies), ns.scale_up_select),
        scale_down=hpa.ScalingRules(ns.scale_down_window, tuple(ns.scale_down_policy or down.policies),
                                    ns.scale_down_select),
    )
