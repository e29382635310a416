"""The chart's alerts and dashboard, checked with Prometheus' own ``promtool``.

* ``promtool check rules`` on ``charts/floe-operator/rules/floe.rules.yaml``
  as it ships (the PrometheusRule carries its groups unchanged);
* ``promtool test rules`` with ``tests/operator/rules/floe.rules.test.yaml``:
  the alerts fire on the series that should raise them, after their ``for``,
  and not on healthy ones;
* every dashboard query parses as PromQL (promtool checks it as a recording
  rule). That they return data is checked against a live Prometheus by the
  spike on a real control plane (``e2e/k8s/test_install.py``).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml

from tests.infra import monitoring

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian: apt-get install prometheus)")
UNIT_TESTS = pathlib.Path(__file__).parent / "rules" / "floe.rules.test.yaml"
VARIABLES = {"namespace": "streaming", "streamcluster": "demo", "__rate_interval": "1m", "datasource": "prom"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_checks_the_shipped_rule_file() -> None:
    done = promtool("check", "rules", str(monitoring.RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: pathlib.Path) -> None:
    queries = monitoring.dashboard_queries(VARIABLES)
    assert len(queries) >= 20
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"floe:dashboard_query_{i}", "expr": q.expr} for i, q in enumerate(queries)]}]}  # fmt: skip
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_a_broken_rule_is_caught(tmp_path: pathlib.Path) -> None:
    """promtool is really parsing: the check above could not pass on anything."""
    path = tmp_path / "broken.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "rate(up[5m]"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_every_dashboard_variable_is_given_a_value() -> None:
    with pytest.raises(KeyError, match=r"\$streamcluster"):
        monitoring.dashboard_queries({"namespace": "x", "__rate_interval": "1m"})


@pytest.mark.parametrize(
    ("expr", "left"),
    [
        ('up{pod=~".+-broker-.+"} == 0', 'up{pod=~".+-broker-.+"}'),
        ("a > on (x, y) b", "a"),
        ('floe_objectstore_state{state!="ok"} == 1', 'floe_objectstore_state{state!="ok"}'),
        ("(a or b * 0) / c > 0.05", "(a or b * 0) / c"),
        ("histogram_quantile(0.99, sum by (le) (rate(x[5m]))) > 1",
         "histogram_quantile(0.99, sum by (le) (rate(x[5m])))"),
        ('x{a="b>c"}', 'x{a="b>c"}'),
        ("sum(rate(x[5m]))", "sum(rate(x[5m]))"),
    ],
)
def test_without_comparison_takes_the_left_operand_of_the_outermost_comparison(expr: str, left: str) -> None:
    assert monitoring.without_comparison(expr) == left


def test_every_alert_has_a_threshold_to_take_off() -> None:
    """Each alert compares; taking the comparison off leaves a query that can return series."""
    for query in monitoring.rule_queries():
        assert monitoring.without_comparison(query.expr) != query.expr, query
