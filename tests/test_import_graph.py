"""The import graph has no cycles: between the four packages, and between siblings inside any package.

import-linter (run by ``make test``) enforces the named rules of docs/architecture.md#import-rules;
this test adds the general one, so a new module cannot close a loop that no contract names.
"""

from __future__ import annotations

import itertools

import grimp

PACKAGES = ("floe_api", "floe_broker", "floe_cli", "floe_operator")


def sibling_cycles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, str]]:
    depth = package.count(".") + 1
    kids = sorted(m for m in graph.modules if m.startswith(package + ".") and m.count(".") == depth)
    found = [
        (a, b)
        for a, b in itertools.combinations(kids, 2)
        if graph.chain_exists(importer=a, imported=b, as_packages=True)
        and graph.chain_exists(importer=b, imported=a, as_packages=True)
    ]
    for kid in kids:
        if any(m.startswith(kid + ".") for m in graph.modules):
            found += sibling_cycles(graph, kid)
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES)
    between = [(a, b) for a, b in itertools.combinations(PACKAGES, 2)
               if graph.chain_exists(importer=a, imported=b, as_packages=True)
               and graph.chain_exists(importer=b, imported=a, as_packages=True)]
    assert between == [], f"packages importing each other: {between}"
    inside = [pair for p in PACKAGES for pair in sibling_cycles(graph, p)]
    assert inside == [], f"sibling modules or packages importing each other: {inside}"
