"""The StreamCluster resource as typed, validated Python objects.

Every handler parses the custom resource once, here, and passes the frozen
result down; nothing below the handlers reads raw dicts from the API.

The CRD's openAPIV3Schema (``crds/streamcluster.yaml``) already rejects wrong
types and out-of-range numbers at ``kubectl apply`` time, so in a cluster most
of these checks never fire. They exist because (1) ``floe operator render``
reads YAML files that no API server has seen, and (2) some rules cross fields
(``minReplicas <= maxReplicas``, distinct ports, reserved config keys) and the
schema cannot express them without CEL. A failure becomes a :class:`SpecError`
whose messages name the field and say what to change; the reconciler shows
them in the ``Degraded`` condition.

Defaults here must equal the CRD's ``default:`` values: the API server applies
the CRD's, ``render`` applies these. ``tests/operator/test_crd.py`` checks
that both agree, field by field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "floe.dev"
VERSION = "v1alpha1"
PLURAL = "streamclusters"
KIND = "StreamCluster"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes resource.Quantity, as the API server's own regular expression.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]
# S3 bucket naming rules (also accepted by MinIO, Ceph RGW and CubeFS).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
URL_PATTERN = r"^https?://[^\s/]+(/.*)?$"
PROM_DURATION_PATTERN = r"^[1-9][0-9]*(ms|s|m|h)$"
# A config key is camelCase (flushIntervalMs) or kebab-case (flush-interval-ms).
CONFIG_KEY_PATTERN = r"^([a-z][a-zA-Z0-9]*|[a-z][a-z0-9]*(-[a-z0-9]+)+)$"
# Broker flags the operator sets from dedicated spec fields. Setting them via
# spec.config would silently fight those fields, so they are refused.
RESERVED_CONFIG = {
    "STORAGE": "spec.storage.bucket / spec.storage.prefix",
    "CLUSTER": "the StreamCluster's metadata.name",
    "LISTEN": "spec.listener.kafkaPort",
    "ADVERTISE": "spec.listener.kafkaPort (the pod IP is advertised automatically)",
    "HTTP": "spec.listener.adminPort",
    "S3_ENDPOINT": "spec.storage.endpoint",
    "S3_REGION": "spec.storage.region",
    "S3_PATH_STYLE": "spec.storage.pathStyle",
    "LISTENERS": "spec.listeners",
    "ADVERTISED_LISTENERS": "spec.listeners (the pod IP is advertised automatically)",
    "LISTENER_SECURITY_PROTOCOL_MAP": "spec.listeners[].tls / authentication",
    "SASL_ENABLED_MECHANISMS": "spec.listeners[].authentication",
    "AUTHORIZER": "spec.authorization.type",
    "SUPER_USERS": "spec.authorization.superUsers",
    "CLUSTER_SECRET_FILE": "nothing: the operator generates the cluster secret",
    "CLUSTER_SECRET": "nothing: the operator generates the cluster secret",
    "ADMIN_TOKEN_FILE": "nothing: the operator generates the admin token",
    "ADMIN_TOKEN": "nothing: the operator generates the admin token",
    "SASL_BOOTSTRAP_USERS_FILE": "nothing: the operator seeds its own user",
}
# Settings the broker documents today; other well-formed keys still pass
# through so a newer broker image needs no newer operator.
KNOWN_CONFIG = (
    "flushIntervalMs",
    "flushBytes",
    "sessionTimeoutMs",
    "autoCreateTopics",
    "defaultPartitions",
    "retentionMs",
    "retentionBytes",
    "maxMessageBytes",
    "logLevel",
    "logFormat",
)
Scalar = bool | int | float | str


def config_env_name(key: str) -> str:
    """Map a ``spec.config`` key to the broker's environment variable.

    ``flushIntervalMs`` and ``flush-interval-ms`` both become
    ``FLOE_FLUSH_INTERVAL_MS``: the broker reads every ``--foo-bar`` flag
    from ``FLOE_FOO_BAR``, so the operator needs no table of settings.
    """
    if not re.fullmatch(CONFIG_KEY_PATTERN, key):
        raise ValueError(f"config key {key!r} must be camelCase (flushIntervalMs) or kebab-case (flush-interval-ms)")
    words = key.replace("-", "_")
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", words)
    return "FLOE_" + snake.upper()


def config_env_value(value: Scalar) -> str:
    """Render a scalar as the broker parses env vars: booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, immutable, strict about typos.

    ``strict``: the API server rejects ``replicas: "3"``, so ``render`` must too.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True)


class LocalObjectReference(Model):
    name: Annotated[str, StringConstraints(min_length=1)]


class ResourceRequirements(Model):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class PodTemplateOverrides(Model):
    """Scheduling and security knobs copied into the broker pod template.

    ``topologySpreadConstraints`` left unset means "spread brokers across
    nodes, best effort"; an explicit empty list turns that default off.
    """

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    topology_spread_constraints: list[dict[str, Any]] | None = None
    priority_class_name: str | None = None
    security_context: dict[str, Any] | None = None
    container_security_context: dict[str, Any] | None = None


class Brokers(Model):
    replicas: int = Field(default=3, ge=0, le=1000)
    resources: ResourceRequirements | None = None
    # A drain moves every partition away (metadata only, well under a second
    # each) and then exits; 60 s covers it with a wide margin.
    termination_grace_period_seconds: int = Field(default=60, ge=15, le=3600)
    pod_template: PodTemplateOverrides = PodTemplateOverrides()


class CredentialsSecretRef(Model):
    name: Annotated[str, StringConstraints(min_length=1)]
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


class Storage(Model):
    bucket: Annotated[str, StringConstraints(pattern=BUCKET_PATTERN)]
    prefix: Annotated[str, StringConstraints(pattern=r"^[^\s]*$", max_length=512)] = ""
    endpoint: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    region: str = "us-east-1"
    path_style: bool = False
    credentials_secret_ref: CredentialsSecretRef | None = None

    @property
    def url(self) -> str:
        """The broker's ``--storage`` URL: ``s3://bucket`` or ``s3://bucket/prefix``."""
        prefix = self.prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"


class Listener(Model):
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    admin_port: int = Field(default=9644, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct(self) -> Listener:
        if self.kafka_port == self.admin_port:
            raise ValueError(f"kafkaPort and adminPort are both {self.kafka_port}; give them different ports")
        return self


# A listener's name: a Service port name (a DNS label of at most 15 characters)
# that also becomes the broker's Kafka listener name in upper case.
LISTENER_NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,13}[a-z0-9])?$"
RESERVED_LISTENER_NAMES = {"admin", "controller"}
Authentication = Literal["none", "plain", "scram-sha-256", "scram-sha-512", "mtls"]
SASL_MECHANISM = {"plain": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512"}


class ListenerTls(Model):
    """A Secret in cert-manager's layout: ``tls.crt``, ``tls.key`` and (for mtls) ``ca.crt``."""

    secret_name: Annotated[str, StringConstraints(min_length=1)]


class KafkaListener(Model):
    """One entry of ``spec.listeners``: a Kafka port with its own encryption and authentication.

    ``plain`` and ``mtls`` need ``tls``: PLAIN sends the password as it is, and
    mutual TLS is a property of the TLS handshake.
    """

    name: Annotated[str, StringConstraints(pattern=LISTENER_NAME_PATTERN)]
    port: int = Field(ge=1, le=65535)
    tls: ListenerTls | None = None
    authentication: Authentication = "none"

    @model_validator(mode="after")
    def _coherent(self) -> KafkaListener:
        if self.name in RESERVED_LISTENER_NAMES:
            raise ValueError(f"listener name {self.name!r} is reserved; choose another (e.g. internal, external)")
        if self.authentication == "mtls" and self.tls is None:
            raise ValueError(f"listener {self.name!r}: authentication mtls needs tls.secretName "
                             "(a Secret with tls.crt, tls.key and the client CA in ca.crt)")
        if self.authentication == "plain" and self.tls is None:
            raise ValueError(f"listener {self.name!r}: authentication plain sends passwords in the clear; "
                             "add tls.secretName or use scram-sha-512")
        return self

    @property
    def kafka_name(self) -> str:
        """The Kafka listener name (``INTERNAL``), as in ``listener.security.protocol.map``."""
        return self.name.upper().replace("-", "_")

    @property
    def security_protocol(self) -> str:
        sasl = self.authentication in SASL_MECHANISM
        if self.tls is None:
            return "SASL_PLAINTEXT" if sasl else "PLAINTEXT"
        return "SASL_SSL" if sasl else "SSL"

    @property
    def sasl_mechanism(self) -> str | None:
        return SASL_MECHANISM.get(self.authentication)

    @property
    def scram(self) -> bool:
        return self.authentication.startswith("scram-")


class Authorization(Model):
    """``spec.authorization``: Kafka ACLs, enforced by the broker's ``simple`` authorizer.

    ``superUsers`` are principals (``User:alice``, or just ``alice``) that pass
    every check; the operator's own user is always one.
    """

    type: Literal["simple"] = "simple"
    super_users: list[Annotated[str, StringConstraints(min_length=1, pattern=r"^[^;\s]+$")]] = Field(
        default_factory=list)

    def principals(self) -> list[str]:
        return [u if ":" in u else f"User:{u}" for u in self.super_users]


class ScalingPolicy(Model):
    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(Model):
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[ScalingPolicy] | None = None


class Behavior(Model):
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class Autoscaling(Model):
    enabled: bool = False
    min_replicas: int = Field(default=3, ge=1, le=1000)
    max_replicas: int = Field(default=10, ge=1, le=1000)
    target_cpu_utilization_percentage: int = Field(default=70, ge=1, le=100, alias="targetCPUUtilizationPercentage")
    # Average bytes/s produced into one broker (a Pods metric served by
    # prometheus-adapter); unset means CPU only.
    bytes_in_per_broker: Quantity | None = None
    bytes_in_metric: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")] = (
        "floe_broker_bytes_in_per_second"
    )
    behavior: Behavior | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas "
                f"({self.max_replicas}); lower minReplicas or raise maxReplicas"
            )
        return self


class Rebalance(Model):
    """The rebalance loop (``floe_operator.reconcile.rebalance``): when and how to move partition leaders.

    With ``enabled`` the operator reads per-partition load from Prometheus every
    ``intervalSeconds`` and asks the planner for moves: at once when a broker
    joins (``onScaleOut``) or a draining broker still leads partitions, and
    after ``skewIntervals`` intervals of skew above ``maxSkewPercent``
    (``continuous``). ``onScaleIn`` keeps ``controller.kubernetes.io/pod-deletion-cost``
    on broker pods so an HPA scale-in removes the least-loaded brokers.
    """

    enabled: bool = False
    prometheus_url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    interval_seconds: int = Field(default=15, ge=1, le=3600)
    # The rate() window; a few scrape intervals long (PromQL duration).
    window: Annotated[str, StringConstraints(pattern=PROM_DURATION_PATTERN)] = "1m"
    max_skew_percent: int = Field(default=20, ge=1, le=100)
    skew_intervals: int = Field(default=3, ge=1, le=100)
    # PromQL label matchers that pick this cluster's series when one Prometheus
    # scrapes several clusters, e.g. namespace="streaming",pod=~"demo-broker-.*".
    metrics_selector: Annotated[str, StringConstraints(pattern=r"^[^{}]*$", max_length=1024)] = ""
    on_scale_out: bool = True
    on_scale_in: bool = True
    continuous: bool = True

    @model_validator(mode="after")
    def _needs_prometheus(self) -> Rebalance:
        if self.enabled and self.prometheus_url is None:
            raise ValueError(
                "rebalance.enabled needs rebalance.prometheusUrl (the Prometheus that scrapes the brokers, "
                "e.g. http://prometheus.monitoring:9090)"
            )
        return self


class Disruption(Model):
    max_unavailable: int | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}%$")] = 1

    @field_validator("max_unavailable")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("maxUnavailable must be 0 or more (or a percentage like '25%')")
        return value


class StreamClusterSpec(Model):
    image: Annotated[str, StringConstraints(min_length=1)] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    brokers: Brokers = Brokers()
    storage: Storage
    listener: Listener = Listener()
    listeners: list[KafkaListener] = Field(default_factory=list)
    authorization: Authorization | None = None
    config: dict[str, Scalar] = Field(default_factory=dict)
    autoscaling: Autoscaling = Autoscaling()
    rebalance: Rebalance = Rebalance()
    disruption: Disruption = Disruption()
    paused: bool = False

    @field_validator("config")
    @classmethod
    def _config_keys(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        seen: dict[str, str] = {}
        for key in value:
            env = config_env_name(key)  # raises on a malformed key
            short = env.removeprefix("FLOE_")
            if short in RESERVED_CONFIG:
                raise ValueError(f"config key {key!r} is managed by the operator; set {RESERVED_CONFIG[short]} instead")
            if env in seen:
                raise ValueError(f"config keys {seen[env]!r} and {key!r} both set {env}")
            seen[env] = key
        return value

    @model_validator(mode="after")
    def _listeners_distinct(self) -> StreamClusterSpec:
        names: set[str] = set()
        ports = {self.listener.admin_port: "listener.adminPort"}
        for i, ln in enumerate(self.listeners):
            if ln.kafka_name in names:
                raise ValueError(f"listeners[{i}]: two listeners are named {ln.name!r}; names must differ")
            names.add(ln.kafka_name)
            if ln.port in ports:
                raise ValueError(f"listeners[{i}] ({ln.name}): port {ln.port} is already {ports[ln.port]}; "
                                 "give every listener its own port")
            ports[ln.port] = f"used by listener {ln.name!r}"
        return self

    def kafka_listeners(self) -> list[KafkaListener]:
        """``spec.listeners``, or the one plaintext listener on ``listener.kafkaPort`` when it is empty."""
        if self.listeners:
            return list(self.listeners)
        return [KafkaListener(name="kafka", port=self.listener.kafka_port)]

    def scram_listener(self) -> KafkaListener | None:
        """The listener the operator manages users through: the first one with SCRAM."""
        return next((ln for ln in self.kafka_listeners() if ln.scram), None)

    def config_env(self) -> dict[str, str]:
        """``spec.config`` as the broker's ``FLOE_*`` environment variables."""
        return {config_env_name(k): config_env_value(v) for k, v in sorted(self.config.items())}


class StreamCluster(Model):
    """One StreamCluster: identity from metadata plus the parsed spec.

    ``uid`` is ``None`` for a manifest read from a file (``render``); the
    builders then emit no owner references.
    """

    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    spec: StreamClusterSpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, namespace: str = "default") -> StreamCluster:
        """Parse a StreamCluster object (from the API or a YAML file).

        Raises :class:`SpecError` with one readable message per problem.
        """
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise SpecError(["metadata.name is required"])
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,51}[a-z0-9])?", name):
            raise SpecError(
                [
                    f"metadata.name {name!r} must be a DNS label of at most 53 characters "
                    "(lower case letters, digits, '-'; starting with a letter), so that "
                    "every derived Service name stays within 63 characters"
                ]
            )
        try:
            return cls.model_validate(
                {
                    "name": name,
                    "namespace": meta.get("namespace") or namespace,
                    "uid": meta.get("uid"),
                    "generation": meta.get("generation"),
                    "labels": meta.get("labels") or {},
                    "spec": body.get("spec") or {},
                }
            )
        except pydantic.ValidationError as exc:
            raise SpecError.from_validation(exc) from None


class SpecError(ValueError):
    """A StreamCluster that cannot work; ``messages`` say what to change."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages

    @classmethod
    def from_validation(cls, exc: pydantic.ValidationError) -> SpecError:
        messages = []
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            text = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                text = "is required"
            elif error["type"] == "extra_forbidden":
                text = "is not a known field (check the spelling)"
            messages.append(f"{path}: {text}" if path else text)
        return cls(messages)


ModelT = TypeVar("ModelT", bound="Model")


def resource_of(cls: type[ModelT], body: Mapping[str, Any], *, namespace: str) -> ModelT:
    """A namespaced resource of ours (StreamUser, StreamTopic, StreamLink) from its body:
    ``name``, ``namespace``, ``uid``, ``generation`` and ``spec``, or :class:`SpecError`
    saying which field is wrong. Each caller checks its own naming rules first."""
    meta = body.get("metadata") or {}
    try:
        return cls.model_validate({
            "name": meta.get("name") or "",
            "namespace": meta.get("namespace") or namespace,
            "uid": meta.get("uid"),
            "generation": meta.get("generation"),
            "spec": body.get("spec") or {},
        })
    except pydantic.ValidationError as exc:
        raise SpecError.from_validation(exc) from None


class Condition(Model):
    """A status condition, shaped like metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


Phase = Literal["Pending", "Reconciling", "Running", "Degraded", "Paused"]


class StreamClusterStatus(Model):
    """What the operator reports; ``extra='ignore'`` keeps kopf's own keys harmless."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    observed_generation: int | None = None
    phase: Phase = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int = 0
    ready_replicas: int = 0
    selector: str = ""
    bootstrap_servers: str = ""
    image: str = ""
    autoscaling: bool = False

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_patch(self) -> dict[str, Any]:
        """The JSON merge patch body for ``.status`` (camelCase, no Nones)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(BaseModel):
    """Base of what the operator writes under status: camelCase, lenient when read back."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class PlannedMove(StatusModel):
    """One leader move as ``status.rebalance.lastPlan.moves`` lists it."""

    topic: str
    partition: int
    from_: int = Field(alias="from")
    to: int
    load: float  # bytes/s in + out when planned
    error: str | None = None


class RebalancePlan(StatusModel):
    reason: Literal["ScaleOut", "Drain", "Skew"]
    started_at: str
    finished_at: str | None = None
    result: Literal["Running", "Succeeded", "Failed"] = "Running"
    message: str = ""
    move_count: int = 0
    duration_seconds: float | None = None
    moves: list[PlannedMove] = Field(default_factory=list)


class BrokerLoad(StatusModel):
    node_id: int
    pod: str | None = None
    draining: bool = False
    partitions: int = 0
    load: float = 0.0  # bytes/s in + out of the partitions it leads
    bytes_in_per_second: float | None = None  # the broker's own floe_bytes_in_total rate
    deletion_cost: int | None = None


RebalanceState = Literal["Balanced", "Skewed", "Rebalancing", "MetricsUnavailable", "BrokersUnavailable", "Disabled"]


class RebalanceStatus(StatusModel):
    """``status.rebalance``: written only by the rebalance loop, never by the reconciler."""

    state: RebalanceState
    message: str = ""
    observed_at: str
    skew_percent: float | None = None
    skewed_intervals: int = 0
    plans: int = 0  # plans issued since the operator started
    brokers: list[BrokerLoad] = Field(default_factory=list)
    last_plan: RebalancePlan | None = None

    def to_patch(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
