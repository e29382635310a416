"""The StreamLink CRD: valid, shipped by the chart, in step with ``link_spec``, and with the example.

Bad input is refused twice, with the same meaning: by the API server's schema
(what ``kubectl apply`` answers) and by the operator's model (what the
StreamLink's Degraded condition says), each naming the field to fix.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_crd import _compare, apply_defaults, validate

from conftest import CHART_DIR, EXAMPLES_DIR, K8S_VERSIONS, ROOT
from floe_operator import link_spec
from floe_operator import spec as spec_
from floe_operator.manifests import links as links_
from floe_operator.reconcile.links import definition_of

LINK_CRD_PATH = ROOT / "crds" / "streamlink.yaml"


@pytest.fixture(scope="module")
def link_schema() -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(LINK_CRD_PATH.read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]
    return schema


def link(spec: dict[str, Any], name: str = "mig") -> dict[str, Any]:
    return {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamLink",
            "metadata": {"name": name, "namespace": "streaming"}, "spec": copy.deepcopy(spec)}


MINIMAL = {"cluster": "demo", "source": {"bootstrapServers": "kafka:9092"}, "topics": {"names": ["orders"]}}
FULL = {
    "cluster": "demo",
    "source": {"bootstrapServers": "k1:9093,k2:9093", "securityProtocol": "SASL_SSL",
               "sasl": {"mechanism": "SCRAM-SHA-256", "username": "floe",
                        "passwordSecretRef": {"name": "kafka-link", "key": "password"}},
               "tls": {"caSecretRef": {"name": "kafka-link", "key": "ca.crt"}}},
    "topics": {"names": ["orders"], "regex": r"payments\..*"},
    "groups": {"names": ["billing"], "regex": "etl-.*"},
    "promotion": {"topics": ["orders"], "force": True},
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_link_crd_is_a_valid_kubernetes_object(version: str) -> None:
    kubernetes_validate.validate(yaml.safe_load(LINK_CRD_PATH.read_text()), version, strict=True)


def test_chart_ships_the_same_link_crd() -> None:
    assert (CHART_DIR / "crds" / "streamlink.yaml").read_text() == LINK_CRD_PATH.read_text()


def test_link_crd_fields_match_the_model(link_schema: dict[str, Any]) -> None:
    _compare(link_spec.StreamLinkSpec, link_schema["properties"]["spec"], "spec")


@pytest.mark.parametrize("spec", [MINIMAL, FULL])
def test_defaults_agree_and_specs_validate(link_schema: dict[str, Any], spec: dict[str, Any]) -> None:
    raw = link(spec)
    validate(link_schema, raw)
    by_server = link_spec.StreamLink.from_body(apply_defaults(link_schema, copy.deepcopy(raw))).spec
    assert by_server == link_spec.StreamLink.from_body(raw).spec


def test_the_example_validates_and_parses(link_schema: dict[str, Any]) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES_DIR / "streamlink.yaml").read_text())
            if d and d.get("kind") == "StreamLink"]
    assert docs
    for obj in docs:
        validate(link_schema, obj)
        link_spec.StreamLink.from_body(obj)


def test_the_brokers_get_paths_of_the_mounted_link_secret_never_a_secret() -> None:
    definition = definition_of(link_spec.StreamLink.from_body(link(FULL)))
    assert definition.source.sasl_password_file == f"{links_.LINK_SECRETS_DIR}/mig.password"
    assert definition.source.ssl_cafile == f"{links_.LINK_SECRETS_DIR}/mig.ca.crt"
    assert (definition.topics, definition.topic_regex, definition.groups) == (["orders"], r"payments\..*", ["billing"])
    plain = definition_of(link_spec.StreamLink.from_body(link(MINIMAL)))
    assert plain.source.sasl_password_file is None and plain.source.ssl_cafile is None


@pytest.mark.parametrize(
    ("spec", "schema_refuses", "message"),
    [
        ({"cluster": "demo", "source": {"bootstrapServers": "k:9092"}}, True, "spec.topics: is required"),
        ({**MINIMAL, "topics": {}}, False, "topics needs names or a regex"),
        ({**MINIMAL, "source": {"bootstrapServers": "k:9092", "securityProtocol": "SASL_SSL"}}, False,
         "securityProtocol SASL_SSL needs sasl"),
        ({**MINIMAL, "source": {"bootstrapServers": "k:9092", "securityProtocol": "KERBEROS"}}, True,
         "spec.source.securityProtocol"),
        ({**MINIMAL, "source": {"bootstrapServers": "k:9092", "tls": {}}}, False, "does not use TLS"),
        ({**MINIMAL, "topics": {"regex": "orders["}}, False, "not a regular expression"),
        ({**MINIMAL, "promotion": {"all": "yes"}}, True, "spec.promotion.all"),
        ({**MINIMAL, "source": {"bootstrapServers": "k:9092", "securityProtocol": "SASL_PLAINTEXT",
                                "sasl": {"username": "floe"}}}, True, "passwordSecretRef"),
    ],
)
def test_bad_link_specs_are_refused_saying_what_to_fix(link_schema: dict[str, Any], spec: dict[str, Any],
                                                       schema_refuses: bool, message: str) -> None:
    if schema_refuses:
        with pytest.raises(jsonschema.ValidationError):
            validate(link_schema, link(spec))
    with pytest.raises(spec_.SpecError, match=message.replace("[", r"\[")):
        link_spec.StreamLink.from_body(link(spec))


def test_a_name_that_cannot_be_a_link_name_is_refused() -> None:
    with pytest.raises(spec_.SpecError, match="the link's name on the brokers"):
        link_spec.StreamLink.from_body(link(MINIMAL, name="Bad_Name"))
