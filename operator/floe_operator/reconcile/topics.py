"""Reconcile one StreamTopic: make its Kafka topic match the spec, and report what the broker has.

Everything the topic depends on is checked first: the spec, its
StreamCluster (exists, is valid, has a ready broker, has a listener the
operator can use), and that no older StreamTopic already names the same
Kafka topic of that cluster. A failure is ``Degraded`` with a message and a
Warning Event; the ones the cluster side can fix by itself are retried.

Then, through the Kafka admin API (``topic_admin``; as the operator's own
super user on the cluster's first SCRAM listener, else anonymously on its
first listener without authentication):

* a missing topic is created with the spec's partitions and configs;
* configs: each spec entry the topic lacks or has with another value is
  SET, and every config set on the topic that the spec does not name is
  DELETEd (back to the cluster default), in one IncrementalAlterConfigs. The
  spec is the topic's whole configuration, whoever changed it;
* partitions grow to the spec's count; a smaller count is refused (Kafka
  cannot remove partitions) with ``Degraded`` / ``PartitionDecrease``, the
  configs still being applied.

A StreamTopic naming a topic that clients created *adopts* it: from then on
the spec rules it as above (its partition count may only grow to the
spec's, client-set configs the spec lacks are reset) and deleting the
StreamTopic deletes it. Topics no StreamTopic names are never read, changed
or deleted.

The same :func:`converge` runs on every create, update and resume, and
every ``topic_resync_seconds`` from a kopf daemon per StreamTopic, which
puts back what someone changed behind the operator's back (``kafka-configs
--alter``, ``kafka-topics --alter --partitions``). One lock per StreamTopic
keeps the two from running at once.

Deletion (a kopf finalizer) deletes the Kafka topic, unless
``spec.deletionPolicy`` is ``Retain``, the cluster is gone, or another
StreamTopic owns the name.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from floe_operator import config as config_
from floe_operator import kafka_admin, topic_admin, topic_spec
from floe_operator import kube as kube_
from floe_operator import spec as spec_
from floe_operator.manifests import naming, security
from floe_operator.reconcile import secrets as secrets_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile import status_update
from floe_operator.reconcile.cluster import NOT_AN_EVENT, Degraded, named_cluster

# Reasons only a new spec fixes; the others are retried (the cluster may come up).
FINAL_REASONS = ("InvalidSpec", "InvalidConfig", "PartitionDecrease", "TopicNameConflict")
# Reasons that mean there is no cluster, so no topic, to delete.
NO_CLUSTER_REASONS = ("ClusterNotFound", "ClusterInvalid")


@dataclass(frozen=True)
class Changes:
    """What the topic needs to match the spec (:func:`changes_for`, pure)."""

    create: bool = False
    grow_to: int | None = None
    set_: Mapping[str, str] = field(default_factory=dict)
    reset: Sequence[str] = ()
    # (the broker's count, the spec's) when the spec asks for fewer partitions.
    decrease: tuple[int, int] | None = None

    def describe(self) -> list[str]:
        """For the Event: what was (or is about to be) done, in a person's words."""
        out = []
        if self.grow_to is not None:
            out.append(f"partitions raised to {self.grow_to}")
        out += [f"{k} set to {v}" for k, v in sorted(self.set_.items())]
        out += [f"{k} reset to the cluster default" for k in self.reset]
        return out


def _normal(value: str) -> str:
    """A config value as compared: list items without spaces ("compact, delete" = "compact,delete")."""
    return ",".join(part.strip() for part in value.split(",")) if "," in value else value.strip()


def changes_for(topic: topic_spec.StreamTopic, state: topic_admin.TopicState | None) -> Changes:
    """The difference between the spec and the topic as the broker reported it."""
    if state is None:
        return Changes(create=True)
    desired = topic.desired_configs()
    set_ = {k: v for k, v in desired.items() if _normal(state.overrides.get(k, "\0")) != _normal(v)}
    reset = tuple(sorted(k for k in state.overrides if k not in desired))
    wanted = topic.spec.partitions
    return Changes(
        grow_to=wanted if wanted > state.partitions else None,
        set_=set_,
        reset=reset,
        decrease=(state.partitions, wanted) if wanted < state.partitions else None,
    )


# ---- the cluster a topic belongs to -----------------------------------------------------------


def _text(secret: Mapping[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


def admin_listener(cluster: spec_.StreamCluster) -> spec_.KafkaListener | None:
    """The listener the operator manages topics through: the first SCRAM one (as its own super
    user), else, without authorization, the first one that needs no client credentials."""
    scram = cluster.spec.scram_listener()
    if scram is not None or cluster.spec.authorization is not None:
        return scram
    return next((ln for ln in cluster.spec.kafka_listeners() if ln.authentication == "none"), None)


async def connection_of(topic: topic_spec.StreamTopic, kube: kube_.KubeClient,
                        config: config_.OperatorConfig) -> kafka_admin.Connection:
    """How to reach the topic's StreamCluster; :class:`Degraded` if it cannot take topics now."""
    where = f"StreamCluster {topic.namespace}/{topic.spec.cluster} (spec.cluster)"
    cluster, body = await named_cluster(kube, topic.namespace, topic.spec.cluster)
    observed = status_.parse(body.get("status"))
    if observed.ready_replicas < 1:
        raise Degraded("ClusterNotReady", f"{where} has no ready broker yet (phase {observed.phase}); "
                                          "the topic is applied once one is: see kubectl describe streamcluster "
                                          f"{topic.spec.cluster}")
    listener = admin_listener(cluster)
    if listener is None:
        raise Degraded("NoAdminListener",
                       f"{where} has no listener the operator can manage topics through: add one with "
                       "authentication scram-sha-512 (needed with spec.authorization) or none")
    conn: dict[str, Any] = {}
    if listener.sasl_mechanism is not None:
        keys = await secrets_.read(cluster, kube)
        if keys is None:
            raise Degraded("ClusterNotReady", f"{where} has no cluster Secret yet "
                                              f"({naming.cluster_secret(cluster)}); the operator creates it "
                                              "when it reconciles the cluster")
        conn = {"username": security.OPERATOR_USER, "password": keys.operator_password}
    ca = None
    if listener.tls is not None:
        secret = await kube.get("v1", "Secret", cluster.namespace, listener.tls.secret_name)
        ca = _text(secret, "ca.crt") if secret is not None else None
    return kafka_admin.Connection(
        bootstrap=config.kafka_bootstrap_for(service=naming.bootstrap_service(cluster), namespace=cluster.namespace,
                                             port=listener.port),
        security_protocol=listener.security_protocol,
        mechanism=listener.sasl_mechanism,
        ca_pem=ca,
        **conn,
    )


Claims = Mapping[Any, Iterable[tuple[str, str]]]


def claim_of(body: Mapping[str, Any]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """What kopf's index of StreamTopics holds for one: (namespace, cluster, Kafka topic) ->
    (creationTimestamp, name). Nothing for an unreadable spec or one being deleted."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return {}
    try:
        t = topic_spec.StreamTopic.from_body(body)
    except spec_.SpecError:
        return {}
    return {(t.namespace, t.spec.cluster, t.topic_name): _age(body)}


def _age(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def owner_of(topic: topic_spec.StreamTopic, body: Mapping[str, Any], claims: Claims) -> str | None:
    """The StreamTopic that owns ``topic``'s Kafka topic when it is another one: the oldest of those
    naming the same topic of the same cluster (ties by name). None when ``topic`` owns it.

    ``claims`` is kopf's in-memory index (``main.topic_claims``), so a pass costs no list request."""
    rivals = [c for c in claims.get((topic.namespace, topic.spec.cluster, topic.topic_name), ()) or ()
              if c[1] != topic.name]
    older = [c for c in rivals if c < _age(body)]
    return min(older)[1] if older else None


# ---- applying and reporting -------------------------------------------------------------------


@dataclass
class Outcome:
    """What one pass saw and did: the condition to show, the broker's view, what changed."""

    ready: bool
    reason: str
    message: str
    state: topic_admin.TopicState | None = None
    done: list[str] = field(default_factory=list)
    created: bool = False

    @property
    def retry(self) -> bool:
        return not self.ready and self.reason not in FINAL_REASONS


async def apply_in_kafka(topic: topic_spec.StreamTopic, admin: topic_admin.TopicAdmin) -> Outcome:
    """Bring the Kafka topic in line with the spec; configs before partitions, so a refused
    config changes nothing."""
    name = topic.topic_name
    state = await admin.describe(name)
    changes = changes_for(topic, state)
    if changes.create:
        try:
            await admin.create(name, topic.spec.partitions, topic.desired_configs())
        except topic_admin.InvalidTopicSpec as exc:
            return Outcome(False, "InvalidConfig", f"the broker refused to create topic {name}: {exc}; "
                                                   "fix spec.configs or spec.partitions")
        done = [f"created with {topic.spec.partitions} partition(s)"]
        return Outcome(True, "Created", "", await admin.describe(name), done, created=True)
    try:
        await admin.alter_configs(name, changes.set_, changes.reset)
    except topic_admin.InvalidTopicSpec as exc:
        return Outcome(False, "InvalidConfig", f"the broker refused the configs of topic {name}: {exc}; "
                                               "fix spec.configs (nothing was changed)", state)
    done = [d for d in changes.describe() if not d.startswith("partitions")]
    if changes.grow_to is not None:
        try:
            await admin.add_partitions(name, changes.grow_to)
        except topic_admin.InvalidTopicSpec as exc:
            return Outcome(False, "InvalidConfig", f"the broker refused {changes.grow_to} partitions for topic "
                                                   f"{name}: {exc}; fix spec.partitions", await admin.describe(name))
        done.insert(0, f"partitions raised to {changes.grow_to}")
    after = await admin.describe(name)
    if changes.decrease is not None:
        have, wanted = changes.decrease
        return Outcome(False, "PartitionDecrease",
                       f"topic {name} has {have} partitions and Kafka cannot remove partitions, so "
                       f"spec.partitions {wanted} is refused; set spec.partitions to {have} or more (to really "
                       "have fewer, create a new topic and move the producers and consumers to it)", after, done)
    return Outcome(True, "Applied", "", after, done)


def _message(topic: topic_spec.StreamTopic, outcome: Outcome) -> str:
    if not outcome.ready:
        return outcome.message
    state = outcome.state
    parts = state.partitions if state is not None else topic.spec.partitions
    return (f"topic {topic.topic_name} matches the spec: {parts} partition(s), "
            f"{len(topic.spec.configs)} config(s) set")


def status_patch(live: Mapping[str, Any], topic: topic_spec.StreamTopic | None, outcome: Outcome, *,
                 generation: int | None, at: str) -> dict[str, Any]:
    """The status to write (pure): Ready/Degraded, and what the broker reported when it answered."""
    raw = (live.get("status") or {}).get("conditions") or []
    previous = status_.parse({"conditions": raw}).conditions
    message = _message(topic, outcome) if topic is not None else outcome.message
    conditions = status_.set_condition(list(previous), type_=status_.READY, status=outcome.ready,
                                       reason=outcome.reason, message=message, at=at, generation=generation)
    conditions = status_.set_condition(conditions, type_=status_.DEGRADED, status=not outcome.ready,
                                       reason=outcome.reason if not outcome.ready else "AsExpected",
                                       message="" if outcome.ready else message, at=at, generation=generation)
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions],
    }
    if topic is not None:
        out["topicName"] = topic.topic_name
    if outcome.state is not None:
        # A merge patch merges maps: configs no longer set on the topic are named with null to go.
        gone = {k: None for k in (live.get("status") or {}).get("configs") or {} if k not in outcome.state.overrides}
        out.update({"topicId": outcome.state.topic_id, "partitions": outcome.state.partitions,
                    "configs": {**gone, **outcome.state.overrides} or None})
    return out


def _unchanged(live: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    status = live.get("status") or {}
    for key, value in patch.items():
        if key == "configs" and value is not None:
            value = {k: v for k, v in value.items() if v is not None} or None
        if status.get(key) != value:
            return False
    return True


def _lock(locks: MutableMapping[str, asyncio.Lock], body: Mapping[str, Any]) -> asyncio.Lock:
    key = str((body.get("metadata") or {}).get("uid") or (body.get("metadata") or {}).get("name"))
    if key not in locks:
        locks[key] = asyncio.Lock()
    return locks[key]


async def converge(*, body: kopf.Body, kube: kube_.KubeClient, config: config_.OperatorConfig,
                   logger: kopf.Logger, locks: MutableMapping[str, asyncio.Lock], claims: Claims,
                   drift: bool = False,
                   admin_factory: topic_admin.TopicAdminFactory | None = None) -> Outcome:
    """One pass: check, apply, write status, post an Event. Never raises for a Degraded outcome."""
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    topic: topic_spec.StreamTopic | None = None
    shown = _degraded_as(body)
    async with _lock(locks, body):
        try:
            topic = topic_spec.StreamTopic.from_body(body)
            outcome = await _pass(topic, body, kube, config, claims, admin_factory)
        except spec_.SpecError as exc:
            outcome = Outcome(False, "InvalidSpec", str(exc))
        except Degraded as exc:
            outcome = Outcome(False, exc.reason, exc.message)
        at = status_.now()

        async def compute(live: dict[str, Any]) -> dict[str, Any] | None:
            patch = status_patch(live, topic, outcome, generation=generation, at=at)
            return None if _unchanged(live, patch) else patch

        await status_update.update(kube, meta["namespace"], meta["name"], compute, kind=topic_spec.KIND)
    # The daemon repeats a Warning only when it says something new; handlers always post theirs.
    repeated = drift and shown == (outcome.reason, outcome.message)
    _report(body, topic, outcome, drift=drift, repeated=repeated, logger=logger)
    return outcome


def _degraded_as(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the Degraded condition the StreamTopic shows now, if it is True."""
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == status_.DEGRADED and c.get("status") == "True":
            return str(c.get("reason")), str(c.get("message"))
    return None


async def _pass(topic: topic_spec.StreamTopic, body: Mapping[str, Any], kube: kube_.KubeClient,
                config: config_.OperatorConfig, claims: Claims,
                admin_factory: topic_admin.TopicAdminFactory | None) -> Outcome:
    connection = await connection_of(topic, kube, config)
    owner = owner_of(topic, body, claims)
    if owner is not None:
        raise Degraded("TopicNameConflict",
                       f"StreamTopic {owner} already manages topic {topic.topic_name} of StreamCluster "
                       f"{topic.spec.cluster}; delete one of the two or give this one another spec.topicName")
    admin = (admin_factory or topic_admin.ConfluentTopicAdmin)(connection)
    try:
        return await apply_in_kafka(topic, admin)
    except kafka_admin.KafkaAdminError as exc:
        raise Degraded("KafkaAdminFailed",
                       f"the cluster's Kafka admin API refused or did not answer: {exc}") from None
    finally:
        await admin.close()


def _report(body: kopf.Body, topic: topic_spec.StreamTopic | None, outcome: Outcome, *, drift: bool,
            repeated: bool, logger: kopf.Logger) -> None:
    """Events: Warning for Degraded, Normal for what changed (``DriftCorrected`` from the daemon)."""
    if not outcome.ready:
        if not repeated:
            kopf.warn(body, reason=outcome.reason, message=outcome.message)
        logger.warning("Degraded (%s): %s", outcome.reason, outcome.message, extra=NOT_AN_EVENT)
        return
    if outcome.done or not drift:
        name = topic.topic_name if topic is not None else "?"
        reason = "DriftCorrected" if drift and not outcome.created else outcome.reason
        what = "; ".join(outcome.done) if outcome.done else "nothing to change"
        kopf.info(body, reason=reason, message=f"topic {name}: {what}")
        logger.info("Topic %s: %s", name, what, extra=NOT_AN_EVENT)


async def reconcile(*, body: kopf.Body, kube: kube_.KubeClient, config: config_.OperatorConfig,
                    logger: kopf.Logger, locks: MutableMapping[str, asyncio.Lock], claims: Claims,
                    admin_factory: topic_admin.TopicAdminFactory | None = None) -> None:
    """Create/update/resume of a StreamTopic; retried while the cluster side may still come right."""
    outcome = await converge(body=body, kube=kube, config=config, logger=logger, locks=locks, claims=claims,
                             admin_factory=admin_factory)
    if outcome.retry:
        raise kopf.TemporaryError(outcome.message, delay=config.retry_delay_seconds)


async def correct_drift(*, body: kopf.Body, stopped: Any, kube: kube_.KubeClient,
                        config: config_.OperatorConfig, logger: kopf.Logger,
                        locks: MutableMapping[str, asyncio.Lock], claims: Claims,
                        admin_factory: topic_admin.TopicAdminFactory | None = None) -> None:
    """The daemon: every ``topic_resync_seconds``, converge again (``body`` is kopf's live view)."""
    while not stopped:
        await stopped.wait(config.topic_resync_seconds)
        if stopped or (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        try:
            await converge(body=body, kube=kube, config=config, logger=logger, locks=locks, claims=claims,
                           drift=True, admin_factory=admin_factory)
        except (kube_.KubeError, status_update.StatusConflict) as exc:
            logger.warning("Drift check failed, trying again in %ss: %s", config.topic_resync_seconds, exc)


async def delete(*, body: kopf.Body, kube: kube_.KubeClient, config: config_.OperatorConfig, logger: kopf.Logger,
                 locks: MutableMapping[str, asyncio.Lock], claims: Claims,
                 admin_factory: topic_admin.TopicAdminFactory | None = None) -> None:
    """The finalizer: delete the Kafka topic unless the spec says Retain or it is not this one's."""
    try:
        topic = topic_spec.StreamTopic.from_body(body)
    except spec_.SpecError:
        return  # never valid, so never applied
    if topic.spec.deletion_policy == "Retain":
        kopf.info(body, reason="Retained", message=f"spec.deletionPolicy is Retain: topic {topic.topic_name} "
                                                   "and its data stay in the cluster")
        logger.info("Leaving topic %s in place (Retain)", topic.topic_name, extra=NOT_AN_EVENT)
        return
    async with _lock(locks, body):
        try:
            connection = await connection_of(topic, kube, config)
        except Degraded as exc:
            if exc.reason in NO_CLUSTER_REASONS:
                logger.info("Nothing to delete in Kafka: %s", exc.message)
                return
            raise kopf.TemporaryError(f"cannot delete topic {topic.topic_name} yet: {exc.message}",
                                      delay=config.retry_delay_seconds) from None
        owner = owner_of(topic, body, claims)
        if owner is not None:
            logger.info("Topic %s belongs to StreamTopic %s; not deleting it", topic.topic_name, owner)
            return
        admin = (admin_factory or topic_admin.ConfluentTopicAdmin)(connection)
        try:
            await admin.delete(topic.topic_name)
        except (kafka_admin.KafkaAdminError, topic_admin.InvalidTopicSpec) as exc:
            raise kopf.TemporaryError(f"cannot delete topic {topic.topic_name} yet: {exc}",
                                      delay=config.retry_delay_seconds) from None
        finally:
            await admin.close()
    logger.info("Deleted topic %s", topic.topic_name)
