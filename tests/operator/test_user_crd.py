"""The StreamUser CRD: valid, shipped by the chart, in step with ``user_spec``, and with the examples."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_crd import _compare, apply_defaults, validate

from conftest import CHART_DIR, EXAMPLES_DIR, K8S_VERSIONS, ROOT
from floe_operator import spec as spec_
from floe_operator import user_spec

USER_CRD_PATH = ROOT / "crds" / "streamuser.yaml"


@pytest.fixture(scope="module")
def user_crd() -> dict[str, Any]:
    return yaml.safe_load(USER_CRD_PATH.read_text())


@pytest.fixture(scope="module")
def user_schema(user_crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = user_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def user(spec: dict[str, Any], name: str = "app") -> dict[str, Any]:
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamUser",
            "metadata": {"name": name, "namespace": "streaming"}, "spec": copy.deepcopy(spec)}


FULL = {
    "cluster": "demo",
    "authentication": {"type": "scram-sha-256",
                       "password": {"valueFrom": {"secretKeyRef": {"name": "app-pw", "key": "password"}}}},
    "authorization": {"acls": [
        {"resource": {"type": "topic", "name": "orders", "patternType": "prefixed"}, "operations": ["Read", "Write"]},
        {"resource": {"type": "group", "name": "app"}, "operations": ["Read"], "host": "10.0.0.1", "type": "deny"},
        {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]},
    ]},
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_user_crd_is_a_valid_kubernetes_object(user_crd: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(user_crd, version, strict=True)


def test_chart_ships_the_same_user_crd() -> None:
    assert (CHART_DIR / "crds" / "streamuser.yaml").read_text() == USER_CRD_PATH.read_text()


def test_user_crd_fields_match_the_model(user_schema: dict[str, Any]) -> None:
    _compare(user_spec.StreamUserSpec, user_schema["properties"]["spec"], "spec")


@pytest.mark.parametrize("spec", [{"cluster": "demo"}, FULL])
def test_defaults_agree_and_specs_validate(user_schema: dict[str, Any], spec: dict[str, Any]) -> None:
    raw = user(spec)
    validate(user_schema, raw)
    by_server = user_spec.StreamUser.from_body(apply_defaults(user_schema, copy.deepcopy(raw))).spec
    assert by_server == user_spec.StreamUser.from_body(raw).spec


def test_examples_validate_and_parse(user_schema: dict[str, Any]) -> None:
    docs = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "StreamUser"]
    assert docs, "examples/ has no StreamUser"
    for obj in docs:
        validate(user_schema, obj)
        user_spec.StreamUser.from_body(obj)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.cluster: is required"),
        ({"cluster": "demo", "authentication": {"type": "plain"}}, "spec.authentication.type"),
        ({"cluster": "demo", "authorization": {"acls": [{"resource": {"type": "topic"}, "operations": ["Read"]}]}},
         "a topic resource needs a name"),
        ({"cluster": "demo", "authorization": {"acls": [{"resource": {"type": "topic", "name": "t"},
                                                          "operations": ["Fly"]}]}}, "operations"),
    ],
)
def test_bad_user_specs_say_what_to_fix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(spec_.SpecError, match=message):
        user_spec.StreamUser.from_body(user(spec))


def test_a_user_name_that_cannot_be_a_kafka_user_is_refused() -> None:
    with pytest.raises(spec_.SpecError, match="it is the Kafka user name"):
        user_spec.StreamUser.from_body(user({"cluster": "demo"}, name="Bad_Name"))
