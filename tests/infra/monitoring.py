"""The PromQL the chart ships, as queries a test can run: dashboard targets and rule expressions.

Used offline (``tests/operator/test_monitoring_rules.py``: every query parses)
and against the live Prometheus of the traffic spike on a real control plane
(``e2e/k8s/test_install.py``: every query returns data).

Grafana's variables are replaced by values a test chooses (``$namespace``,
``$streamcluster``, ``$__rate_interval``, ``${datasource}``). An alert
expression is normally empty (nothing is wrong), so :func:`without_comparison`
gives the expression with its threshold comparison taken off: that part must
return series wherever Floe runs, or the alert could never fire.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

CHART_DIR = pathlib.Path(__file__).resolve().parents[2] / "charts" / "floe-operator"
DASHBOARD = CHART_DIR / "dashboards" / "floe.json"
RULES = CHART_DIR / "rules" / "floe.rules.yaml"

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


@dataclass(frozen=True)
class Query:
    where: str  # "panel <title> <refId>" or "alert <name>": what to name when it returns nothing
    expr: str


def dashboard_queries(variables: dict[str, str], path: pathlib.Path = DASHBOARD) -> list[Query]:
    """Every panel target of the dashboard, with Grafana's ``$name`` variables replaced."""
    dashboard = json.loads(path.read_text())
    found: list[Query] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                where = f"panel {panel['title']!r} {target['refId']}"
                found.append(Query(where, substitute(target["expr"], variables)))

    walk(dashboard["panels"])
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``$name`` and ``${name}`` replaced; an unknown variable is an error, not a silent literal."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def rule_queries(path: pathlib.Path = RULES) -> list[Query]:
    """Every alert (and recording rule) expression of the rule file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [Query(f"alert {r.get('alert') or r.get('record')}", " ".join(str(r["expr"]).split()))
            for g in groups for r in g["rules"]]  # fmt: skip


def without_comparison(expr: str) -> str:
    """The left operand of the expression's outermost comparison (``a > on (x) b`` -> ``a``).

    Only comparisons outside parentheses, braces, brackets and strings count,
    so label matchers (``{state!="ok"}``) and nested comparisons stay. An
    expression without one is returned unchanged.
    """
    depth, quote, i = 0, "", 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            for op in COMPARISONS:
                if expr.startswith(op, i) and not expr.startswith("=~", i) and not expr.startswith("!~", i):
                    return expr[:i].strip()
        i += 1
    return expr.strip()
