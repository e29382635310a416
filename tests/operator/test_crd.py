"""The StreamCluster CRD: a valid, structural Kubernetes object whose schema
accepts the examples and edge cases, rejects bad specs, and agrees with the
operator's own models (field names and defaults)."""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

import jsonschema
import kubernetes_validate
import pydantic
import pytest
import sc_samples
import yaml

from conftest import CHART_DIR, CRD_PATH, EXAMPLES_DIR, K8S_VERSIONS
from floe_operator import spec as spec_


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the API server enforces it with strict field validation
    (kubectl's default since 1.27): unknown fields are errors, except under
    x-kubernetes-preserve-unknown-fields."""
    schema = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if node.get("type") == "object" and "properties" in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
        for child in (node.get("properties") or {}).values():
            walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])

    for key in ("spec", "status"):  # metadata is ObjectMeta, checked by the API server
        walk(schema["properties"][key])
    return schema


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply ``default:`` values as the API server does (recursively, object by object)."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = apply_defaults(sub, value[key])
    return value


def validate(crd_schema: dict[str, Any], obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, strict(crd_schema), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_crd_is_a_valid_kubernetes_object(crd: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(crd, version, strict=True)


def test_chart_ships_the_same_crd() -> None:
    assert (CHART_DIR / "crds" / "streamcluster.yaml").read_text() == CRD_PATH.read_text()


def test_crd_identity_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["scope"]) == (
        "floe.dev", "StreamCluster", "Namespaced",
    )  # fmt: skip
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.brokers.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Desired": ".spec.brokers.replicas",
        "Replicas": ".status.replicas",
        "Ready": ".status.readyReplicas",
        "Phase": ".status.phase",
        "Bootstrap": ".status.bootstrapServers",
        "Age": ".metadata.creationTimestamp",
    }


def test_schema_is_structural(crd_schema: dict[str, Any]) -> None:
    """Every node has a type, or explicitly opts out (int-or-string, preserve-unknown)."""

    def walk(node: dict[str, Any], path: str) -> None:
        opted_out = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or opted_out, f"{path} has no type"
        assert not ({"properties", "additionalProperties"} <= node.keys()), path
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[]")

    walk(crd_schema, "")


def _model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _compare(model: type[pydantic.BaseModel], node: dict[str, Any], path: str) -> None:
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    properties = node.get("properties") or {}
    if node.get("type") == "array":
        properties = node["items"].get("properties") or {}
    assert set(fields) == set(properties), f"{path}: model {sorted(fields)} vs CRD {sorted(properties)}"
    for key, field in fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            _compare(sub, properties[key], f"{path}.{key}")


def test_crd_fields_match_the_operator_models(crd_schema: dict[str, Any]) -> None:
    _compare(spec_.StreamClusterSpec, crd_schema["properties"]["spec"], "spec")


def test_crd_defaults_match_the_operator_defaults(crd_schema: dict[str, Any]) -> None:
    for name, spec in sc_samples.VARIANTS.items():
        raw = sc_samples.cluster(spec)
        defaulted = apply_defaults(crd_schema, copy.deepcopy(raw))
        by_server = spec_.StreamCluster.from_body(defaulted).spec
        by_operator = spec_.StreamCluster.from_body(raw).spec
        assert by_server == by_operator, name


def test_status_schema_accepts_what_the_operator_writes(crd_schema: dict[str, Any]) -> None:
    status = spec_.StreamClusterStatus(
        observed_generation=3,
        phase="Running",
        conditions=[
            spec_.Condition(
                type="Ready",
                status="True",
                reason="BrokersReady",
                message="3/3 brokers ready",
                last_transition_time="2025-01-01T00:00:00Z",
                observed_generation=3,
            )
        ],
        replicas=3,
        ready_replicas=3,
        selector="a=b",
        bootstrap_servers="demo-bootstrap.ns.svc.cluster.local:9092",
    )
    obj = {**sc_samples.cluster(sc_samples.MINIMAL), "status": status.to_patch()}
    validate(crd_schema, obj)


@pytest.mark.parametrize("variant", sorted(sc_samples.VARIANTS))
def test_sample_specs_validate(crd_schema: dict[str, Any], variant: str) -> None:
    validate(crd_schema, sc_samples.cluster(sc_samples.VARIANTS[variant]))


def example_clusters() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "StreamCluster"]
    return docs


def test_examples_validate_and_parse(crd_schema: dict[str, Any]) -> None:
    clusters = example_clusters()
    assert clusters, "examples/ has no StreamCluster"
    for obj in clusters:
        validate(crd_schema, obj)
        spec_.StreamCluster.from_body(obj)


EDGE_CASES_OK = [
    {**sc_samples.MINIMAL, "brokers": {"replicas": 0}},
    {**sc_samples.MINIMAL, "brokers": {"replicas": 1000, "terminationGracePeriodSeconds": 15}},
    {**sc_samples.MINIMAL, "listener": {"kafkaPort": 1, "adminPort": 65535}},
    {**sc_samples.MINIMAL, "disruption": {"maxUnavailable": 0}},
    {**sc_samples.MINIMAL, "disruption": {"maxUnavailable": "100%"}},
    {**sc_samples.MINIMAL, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}},
    {**sc_samples.MINIMAL, "config": {"anyNewSetting": "x", "another-one": 3.5}},
    {
        **sc_samples.MINIMAL,
        "rebalance": {"enabled": True, "prometheusUrl": "http://p:9090", "window": "500ms", "intervalSeconds": 1},
    },
    {"storage": {"bucket": "a.b-c", "prefix": "", "credentialsSecretRef": {"name": "s"}}},
]
EDGE_CASES_BAD = {
    "no storage": {},
    "no bucket": {"storage": {"region": "x"}},
    "bucket upper case": {"storage": {"bucket": "Floe"}},
    "bucket too short": {"storage": {"bucket": "ab"}},
    "endpoint not a url": {"storage": {"bucket": "floe", "endpoint": "minio:9000"}},
    "negative replicas": {**sc_samples.MINIMAL, "brokers": {"replicas": -1}},
    "grace too short to drain": {**sc_samples.MINIMAL, "brokers": {"terminationGracePeriodSeconds": 5}},
    "port zero": {**sc_samples.MINIMAL, "listener": {"kafkaPort": 0}},
    "port too high": {**sc_samples.MINIMAL, "listener": {"adminPort": 70000}},
    "bad pull policy": {**sc_samples.MINIMAL, "imagePullPolicy": "Sometimes"},
    "replicas as string": {**sc_samples.MINIMAL, "brokers": {"replicas": "3"}},
    "cpu target over 100": {**sc_samples.MINIMAL, "autoscaling": {"targetCPUUtilizationPercentage": 150}},
    "zero min replicas": {**sc_samples.MINIMAL, "autoscaling": {"minReplicas": 0}},
    "bad quantity": {**sc_samples.MINIMAL, "autoscaling": {"bytesInPerBroker": "fast"}},
    "bad policy type": {
        **sc_samples.MINIMAL,
        "autoscaling": {"behavior": {"scaleDown": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 60}]}}},
    },
    "skew over 100": {**sc_samples.MINIMAL, "rebalance": {"maxSkewPercent": 101}},
    "rebalance interval zero": {**sc_samples.MINIMAL, "rebalance": {"intervalSeconds": 0}},
    "rebalance window not a duration": {**sc_samples.MINIMAL, "rebalance": {"window": "60"}},
    "rebalance window zero": {**sc_samples.MINIMAL, "rebalance": {"window": "0s"}},
    "skew intervals zero": {**sc_samples.MINIMAL, "rebalance": {"skewIntervals": 0}},
    "metrics selector with braces": {**sc_samples.MINIMAL, "rebalance": {"metricsSelector": '{job="x"}'}},
    "unknown field": {**sc_samples.MINIMAL, "replicas": 3},
    "unknown nested field": {**sc_samples.MINIMAL, "storage": {"bucket": "floe", "secret": "x"}},
    "secret ref without name": {"storage": {"bucket": "floe", "credentialsSecretRef": {}}},
}


@pytest.mark.parametrize("spec", EDGE_CASES_OK)
def test_edge_cases_accepted(crd_schema: dict[str, Any], spec: dict[str, Any]) -> None:
    validate(crd_schema, sc_samples.cluster(spec))
    spec_.StreamCluster.from_body(sc_samples.cluster(spec))


@pytest.mark.parametrize("case", sorted(EDGE_CASES_BAD))
def test_bad_specs_rejected_by_schema_and_operator(crd_schema: dict[str, Any], case: str) -> None:
    obj = sc_samples.cluster(EDGE_CASES_BAD[case])
    with pytest.raises(jsonschema.ValidationError):
        validate(crd_schema, obj)
    with pytest.raises(spec_.SpecError):
        spec_.StreamCluster.from_body(obj)


def test_rebalance_without_prometheus_is_refused_with_a_fix() -> None:
    """A cross-field rule the schema cannot express: the operator says what to set."""
    obj = sc_samples.cluster({**sc_samples.MINIMAL, "rebalance": {"enabled": True}})
    with pytest.raises(spec_.SpecError, match="rebalance.prometheusUrl"):
        spec_.StreamCluster.from_body(obj)


def test_status_schema_accepts_the_rebalance_status(crd_schema: dict[str, Any]) -> None:
    rebalance = spec_.RebalanceStatus(
        state="Rebalancing",
        message="moving 1 partition onto new broker 3",
        observed_at="2025-01-01T00:00:00Z",
        skew_percent=100.0,
        plans=1,
        brokers=[spec_.BrokerLoad(node_id=3, pod="demo-broker-x", partitions=0, load=0.0, deletion_cost=0)],
        last_plan=spec_.RebalancePlan(
            reason="ScaleOut",
            started_at="2025-01-01T00:00:00Z",
            move_count=1,
            moves=[spec_.PlannedMove(topic="t", partition=0, from_=1, to=3, load=10.5)],
        ),
    )
    obj = {**sc_samples.cluster(sc_samples.MINIMAL), "status": {"rebalance": rebalance.to_patch()}}
    validate(crd_schema, obj)
    assert obj["status"]["rebalance"]["lastPlan"]["moves"][0]["from"] == 1
    bad = copy.deepcopy(obj)
    bad["status"]["rebalance"]["state"] = "Sleeping"
    with pytest.raises(jsonschema.ValidationError):
        validate(crd_schema, bad)


def test_long_names_rejected_by_schema(crd_schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(crd_schema, sc_samples.cluster(sc_samples.MINIMAL, name="a" * 54))


# Short names the API server's built-in resources claim (kubectl api-resources, Kubernetes 1.34).
BUILTIN_SHORT_NAMES = {
    "cj", "cm", "cs", "csr", "crd", "crds", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits", "netpol", "no",
    "ns", "pc", "pdb", "po", "pv", "pvc", "quota", "rc", "rs", "sa", "sc", "sts", "svc",
}  # fmt: skip


def test_short_names_do_not_shadow_builtin_resources(crd: dict[str, Any]) -> None:
    # `kubectl get sc demo` must not mean a StorageClass to some and a StreamCluster to others.
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["fsc", "floe"]
    assert not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
