"""``floe operator``: run the operator, or render what it would apply.

The broker's ``floe`` console script dispatches ``floe operator ...`` here
(``main(argv)``); ``python -m floe_operator.cli`` works the same way.

* ``floe operator`` / ``floe operator run [--namespace NS]... [--liveness URL]``
  runs kopf with the handlers in :mod:`floe_operator.main`. With no namespace
  it watches the whole cluster.
* ``floe operator render -f streamcluster.yaml [-n NS]`` prints every
  manifest the operator would apply for each StreamCluster in the file, as
  multi-document YAML, without contacting a cluster. Other documents in the
  file (a Secret next to the StreamCluster, say) are skipped. Owner
  references are left out: they need the live object's uid.
* ``floe operator metrics-adapter --prometheus-url URL`` serves the HPA's
  custom and resource metrics APIs from Prometheus
  (:mod:`floe_operator.metrics_adapter`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

import yaml

from floe_operator import config as config_
from floe_operator import manifests
from floe_operator import spec as spec_


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floe operator", description="The Floe Kubernetes operator (StreamCluster).")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the operator (the default)")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="namespace to watch (repeatable; default: FLOE_OPERATOR_NAMESPACES or all)",
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf liveness endpoint URL ('' to disable)",
    )
    run.add_argument("--log-format", choices=["json", "console"], default=None)
    run.add_argument("--verbose", action="store_true", help="debug logging")
    render = sub.add_parser("render", help="print the manifests for a StreamCluster file")
    render.add_argument("-f", "--filename", required=True, help="YAML file ('-' for stdin)")
    render.add_argument("-n", "--namespace", default="default", help="namespace if the file names none")
    sub.add_parser("metrics-adapter", add_help=False,
                   help="serve the HPA's metrics APIs from Prometheus (--help for its options)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``floe operator``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["metrics-adapter"]:  # its own options, parsed by its own parser
        from floe_operator.metrics_adapter import server

        return server.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "render":
        return render(args.filename, namespace=args.namespace, out=sys.stdout, err=sys.stderr)
    if args.command is None:  # bare `floe operator`
        args = _parser().parse_args(["run"])
    return run(
        namespaces=args.namespace,
        liveness=args.liveness,
        log_format=args.log_format,
        verbose=args.verbose,
    )


def render_documents(docs: Iterable[Any], *, namespace: str, config: config_.OperatorConfig) -> list[dict[str, Any]]:
    """Manifests for every StreamCluster in ``docs``; raises SpecError on a bad one."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != spec_.KIND:
            continue
        cluster = spec_.StreamCluster.from_body(doc, namespace=namespace)
        out.extend(manifests.build_all(cluster, config))
    return out


def render(filename: str, *, namespace: str, out: IO[str], err: IO[str]) -> int:
    try:
        if filename == "-":
            docs = list(yaml.safe_load_all(sys.stdin))
        else:
            with open(filename, encoding="utf-8") as f:
                docs = list(yaml.safe_load_all(f))
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read {filename}: {exc}", file=err)
        return 2
    try:
        objs = render_documents(docs, namespace=namespace, config=config_.OperatorConfig.from_env())
    except spec_.SpecError as exc:
        for message in exc.messages:
            print(f"error: {message}", file=err)
        return 1
    if not objs:
        print(f"error: no {spec_.KIND} in {filename}", file=err)
        return 1
    yaml.safe_dump_all(objs, out, sort_keys=False, default_flow_style=False)
    return 0


def run(
    *,
    namespaces: Sequence[str] | None,
    liveness: str,
    log_format: str | None,
    verbose: bool,
) -> int:
    import kopf  # only the `run` path needs kopf and a cluster

    config = config_.OperatorConfig.from_env()
    watched = tuple(namespaces) if namespaces else config.namespaces
    fmt = kopf.LogFormat.JSON if (log_format or config.log_format) == "json" else kopf.LogFormat.FULL
    level = "debug" if verbose else config.log_level
    kopf.configure(verbose=level == "debug", log_format=fmt)
    logging.getLogger().setLevel(level.upper())
    importlib.import_module("floe_operator.main")
    memo = kopf.Memo(config=config)
    try:
        kopf.run(
            clusterwide=not watched,
            namespaces=watched,
            standalone=True,
            liveness_endpoint=liveness or None,
            memo=memo,
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
