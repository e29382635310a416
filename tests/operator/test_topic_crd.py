"""The StreamTopic CRD: valid, shipped by the chart, in step with ``topic_spec``, refusing bad input, and the
examples; plus the pure diff between a spec and the topic the broker reports."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_crd import _compare, apply_defaults
from test_crd import validate as validate_strict

from conftest import CHART_DIR, EXAMPLES_DIR, K8S_VERSIONS, ROOT
from floe_operator import config as config_
from floe_operator import spec as spec_
from floe_operator import topic_spec
from floe_operator.reconcile.topics import changes_for, claim_of, owner_of
from floe_operator.topic_admin import TopicState

TOPIC_CRD_PATH = ROOT / "crds" / "streamtopic.yaml"


@pytest.fixture(scope="module")
def topic_crd() -> dict[str, Any]:
    return yaml.safe_load(TOPIC_CRD_PATH.read_text())


@pytest.fixture(scope="module")
def topic_schema(topic_crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = topic_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def topic(spec: dict[str, Any], name: str = "orders") -> dict[str, Any]:
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamTopic",
            "metadata": {"name": name, "namespace": "streaming"}, "spec": copy.deepcopy(spec)}


FULL = {"cluster": "demo", "topicName": "Orders_V2", "partitions": 12, "deletionPolicy": "Retain",
        "configs": {"retention.ms": 604800000, "cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.2"}}


def validate(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    """As the API server: ``x-kubernetes-int-or-string`` lets integers and strings through, nothing else."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: walk(v) for k, v in node.items()}
            if node.pop("x-kubernetes-int-or-string", False):
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return node

    validate_strict(walk(schema), obj)


def cel_rules(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["rule"], r["message"]) for r in node.get("x-kubernetes-validations") or []]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_topic_crd_is_a_valid_kubernetes_object(topic_crd: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(topic_crd, version, strict=True)


def test_chart_ships_the_same_topic_crd() -> None:
    assert (CHART_DIR / "crds" / "streamtopic.yaml").read_text() == TOPIC_CRD_PATH.read_text()


def test_topic_crd_fields_match_the_model(topic_schema: dict[str, Any]) -> None:
    _compare(topic_spec.StreamTopicSpec, topic_schema["properties"]["spec"], "spec")


@pytest.mark.parametrize("spec", [{"cluster": "demo", "partitions": 1}, FULL])
def test_defaults_agree_and_specs_validate(topic_schema: dict[str, Any], spec: dict[str, Any]) -> None:
    raw = topic(spec)
    validate(topic_schema, raw)
    by_server = topic_spec.StreamTopic.from_body(apply_defaults(topic_schema, copy.deepcopy(raw))).spec
    assert by_server == topic_spec.StreamTopic.from_body(raw).spec


def test_examples_validate_and_parse(topic_schema: dict[str, Any]) -> None:
    docs = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "StreamTopic"]
    assert docs, "examples/ has no StreamTopic"
    for obj in docs:
        validate(topic_schema, obj)
        topic_spec.StreamTopic.from_body(obj)


@pytest.mark.parametrize("spec", [
    {"cluster": "demo"},                                                  # partitions are required
    {"cluster": "demo", "partitions": 0},
    {"cluster": "demo", "partitions": "3"},
    {"cluster": "demo", "partitions": 1, "topicName": "has space"},
    {"cluster": "demo", "partitions": 1, "topicName": "x" * 250},
    {"cluster": "demo", "partitions": 1, "configs": {"retention.ms": {"nested": 1}}},
    {"cluster": "demo", "partitions": 1, "configs": {"preallocate": True}},  # quote booleans
    {"cluster": "demo", "partitions": 1, "deletionPolicy": "Orphan"},
    {"cluster": "demo", "partitions": 1, "replicas": 3},                  # Floe has no broker replicas
])
def test_the_schema_refuses_bad_input(topic_schema: dict[str, Any], spec: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(topic_schema, topic(spec))
    with pytest.raises(spec_.SpecError):
        topic_spec.StreamTopic.from_body(topic(spec))


def test_the_schema_rules_jsonschema_cannot_run_agree_with_the_model(topic_schema: dict[str, Any]) -> None:
    """The CEL rules (run by the API server only) say what the model says, checked by equivalent Python."""
    spec = topic_schema["properties"]["spec"]["properties"]
    (name_rule, _), = cel_rules(spec["topicName"])
    assert name_rule == "self != '.' && self != '..'"
    for bad in (".", ".."):
        with pytest.raises(spec_.SpecError, match="not allowed as a Kafka topic name"):
            topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 1, "topicName": bad}))
    transitions = [rule for rule, _ in cel_rules(topic_schema["properties"]["spec"])]
    assert transitions == ["self.cluster == oldSelf.cluster",
                           "has(self.topicName) == has(oldSelf.topicName) && "
                           "(!has(self.topicName) || self.topicName == oldSelf.topicName)"]
    (config_rule, _), = cel_rules(spec["configs"])
    pattern = re.search(r"k\.matches\('(.+)'\)", config_rule)
    assert pattern is not None and pattern.group(1) == topic_spec.CONFIG_NAME_PATTERN.replace(r"\.", "[.]")
    for key, ok in (("retention.ms", True), ("message.timestamp.after.max.ms", True), ("Retention.ms", False),
                    ("retention..ms", False), ("retention_ms", False)):
        assert bool(re.fullmatch(pattern.group(1), key)) is ok, key
        if not ok:
            with pytest.raises(spec_.SpecError, match="is not a Kafka topic config name"):
                topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 1, "configs": {key: "1"}}))


def test_metadata_name_is_the_topic_unless_it_cannot_be() -> None:
    assert topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 1})).topic_name == "orders"
    long_name = "a" * 250  # a valid Kubernetes name, too long for Kafka
    with pytest.raises(spec_.SpecError, match="set spec.topicName"):
        topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 1}, name=long_name))
    named = topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 1, "topicName": "A_b"},
                                                   name=long_name))
    assert named.topic_name == "A_b"


def test_changes_set_reset_grow_and_refuse_a_decrease() -> None:
    configs = {"retention.ms": 1000, "cleanup.policy": "compact, delete"}
    t = topic_spec.StreamTopic.from_body(topic({"cluster": "demo", "partitions": 4, "configs": configs}))
    assert changes_for(t, None).create
    state = TopicState("orders", "id", 2, {"retention.ms": "5", "cleanup.policy": "compact,delete", "segment.ms": "9"})
    changes = changes_for(t, state)
    assert (changes.create, changes.grow_to, dict(changes.set_), tuple(changes.reset), changes.decrease) == (
        False, 4, {"retention.ms": "1000"}, ("segment.ms",), None)
    assert changes_for(t, TopicState("orders", "id", 6, {})).decrease == (6, 4)
    same = changes_for(t, TopicState("orders", "id", 4, {"retention.ms": "1000", "cleanup.policy": "compact,delete"}))
    assert same.describe() == []


def test_the_operator_settings_for_topics_come_from_the_environment() -> None:
    config = config_.OperatorConfig.from_env({"FLOE_OPERATOR_TOPIC_RESYNC_SECONDS": "5",
                                              "FLOE_OPERATOR_KAFKA_BOOTSTRAP": "localhost:1{port}"})
    assert config.topic_resync_seconds == 5.0
    assert config.kafka_bootstrap_for(service="demo-bootstrap", namespace="ns", port=9092) == "localhost:19092"
    default = config_.OperatorConfig.from_env({})
    assert default.kafka_bootstrap_for(service="demo-bootstrap", namespace="ns", port=9093) == \
        "demo-bootstrap.ns.svc.cluster.local:9093"


def test_the_oldest_streamtopic_naming_a_topic_owns_it() -> None:
    def body(name: str, at: str, topic_name: str = "shared", deleting: bool = False) -> dict[str, Any]:
        obj = topic({"cluster": "demo", "partitions": 1, "topicName": topic_name}, name=name)
        obj["metadata"]["creationTimestamp"] = at
        if deleting:
            obj["metadata"]["deletionTimestamp"] = at
        return obj

    bodies = [body("b", "2026-01-01T00:00:00Z"), body("a", "2026-01-01T00:00:00Z"), body("old", "2025-01-01T00:00:00Z",
              deleting=True), body("other", "2024-01-01T00:00:00Z", topic_name="another")]
    claims: dict[Any, list[tuple[str, str]]] = {}
    for b in bodies:
        for key, value in claim_of(b).items():
            claims.setdefault(key, []).append(value)
    assert claims[("streaming", "demo", "shared")] == [("2026-01-01T00:00:00Z", "b"), ("2026-01-01T00:00:00Z", "a")]

    def owner(b: dict[str, Any]) -> str | None:
        return owner_of(topic_spec.StreamTopic.from_body(b), b, claims)

    assert owner(bodies[1]) is None       # a: as old as b, first by name
    assert owner(bodies[0]) == "a"
    assert owner(bodies[3]) is None       # another topic
