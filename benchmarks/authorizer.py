"""The cost of one authorization check, printed (nothing is asserted).

    .venv/bin/python benchmarks/authorizer.py --bindings 1000

A broker with the authorizer on makes one check per topic per request (per
group for group APIs). This times :func:`floe_broker.security.authorizer.authorize`
against an :class:`~floe_broker.security.authorizer.AclIndex` (what brokers
use: built once per metadata version) and against the plain list of bindings
(a scan of every binding), with literal ACLs for many principals plus some
prefixed ones, the shape of a multi-tenant cluster.
"""

from __future__ import annotations

import argparse
import json
import timeit

from floe_broker.security.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from floe_broker.security.authorizer import AclIndex, AuthorizerSettings, authorize


def bindings(n: int, prefixed: int) -> list[AclBinding]:
    out = [AclBinding(ResourceType.TOPIC, PatternType.LITERAL, f"topic-{i}", f"User:tenant-{i % 100}", "*",
                      Operation.WRITE, Permission.ALLOW) for i in range(n)]
    out += [AclBinding(ResourceType.TOPIC, PatternType.PREFIXED, f"tenant-{i}.", f"User:tenant-{i}", "*",
                       Operation.ALL, Permission.ALLOW) for i in range(prefixed)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bindings", type=int, default=1000)
    parser.add_argument("--prefixed", type=int, default=20)
    parser.add_argument("--checks", type=int, default=20_000)
    args = parser.parse_args()
    every = bindings(args.bindings, args.prefixed)
    index = AclIndex(every)
    settings = AuthorizerSettings(enabled=True)

    def check(acls: AclIndex | list[AclBinding]) -> bool:
        return authorize(acls, settings, "User:tenant-7", "10.0.0.1", Operation.WRITE, ResourceType.TOPIC, "topic-7")

    assert check(index) and check(every)
    indexed_us = min(timeit.repeat(lambda: check(index), number=args.checks, repeat=3)) / args.checks * 1e6
    scans = max(args.checks // 100, 10)
    scan_us = min(timeit.repeat(lambda: check(every), number=scans, repeat=3)) / scans * 1e6
    build_ms = min(timeit.repeat(lambda: AclIndex(every), number=5, repeat=3)) / 5 * 1e3
    print(json.dumps({"bindings": len(every), "indexed_check_us": round(indexed_us, 1),
                      "scan_check_us": round(scan_us, 1), "index_build_ms": round(build_ms, 2)}))


if __name__ == "__main__":
    main()
