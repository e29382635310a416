"""`floe operator render` prints what would be applied, without a cluster; and the
pure pieces of the reconciler (status) behave."""

from __future__ import annotations

import io

import kubernetes_validate
import pytest
import yaml

from conftest import EXAMPLES_DIR, K8S_VERSIONS
from floe_operator import cli, spec
from floe_operator.reconcile import status


def test_render_prints_every_manifest_for_the_example() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli.render(str(EXAMPLES_DIR / "streamcluster.yaml"), namespace="demo-ns", out=out, err=err)
    assert code == 0, err.getvalue()
    docs = list(yaml.safe_load_all(out.getvalue()))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"]
    assert all(d["metadata"]["namespace"] == "demo-ns" for d in docs)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_render_reports_spec_errors(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "bad.yaml"  # type: ignore[operator]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "floe.dev/v1alpha1",
                "kind": "StreamCluster",
                "metadata": {"name": "x"},
                "spec": {"storage": {"bucket": "floe"}, "autoscaling": {"minReplicas": 4, "maxReplicas": 2}},
            }
        )
    )
    out, err = io.StringIO(), io.StringIO()
    assert cli.main is not None
    assert cli.render(str(path), namespace="default", out=out, err=err) == 1
    assert "minReplicas (4) is greater than maxReplicas (2)" in err.getvalue()
    assert out.getvalue() == ""


def test_main_dispatches_render(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "-f", str(EXAMPLES_DIR / "streamcluster-autoscaling.yaml")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert "HorizontalPodAutoscaler" in {d["kind"] for d in docs}


def test_examples_other_objects_validate() -> None:
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            # Floe's own kinds are checked against their CRDs (test_crd.py, test_user_crd.py).
            if doc and "apiVersion" in doc and not doc["apiVersion"].startswith("floe.dev/"):
                kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_conditions_keep_transition_time_until_status_flips() -> None:
    conds = status.set_condition(
        [], type_="Ready", status=False, reason="R", message="m", at="2025-01-01T00:00:00Z", generation=1
    )
    same = status.set_condition(
        conds, type_="Ready", status=False, reason="R2", message="m2", at="2025-01-02T00:00:00Z", generation=2
    )
    assert same[0].last_transition_time == "2025-01-01T00:00:00Z"
    flipped = status.set_condition(
        same, type_="Ready", status=True, reason="R3", message="", at="2025-01-03T00:00:00Z", generation=2
    )
    assert flipped[0].last_transition_time == "2025-01-03T00:00:00Z"


def test_deployment_event_does_not_clear_degraded() -> None:
    prev = status.degraded(spec.StreamClusterStatus(), reason="MissingSecret", message="m", at="t", generation=1)
    dep = {"spec": {"replicas": 3}, "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}}
    new = status.observe(prev, deployment=dep, at="t2", generation=1)
    assert new.phase == "Degraded"
    assert new.condition("Degraded").status == "True"  # type: ignore[union-attr]
    assert new.condition("Ready").status == "True"  # type: ignore[union-attr]
