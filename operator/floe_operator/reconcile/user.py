"""Reconcile one StreamUser: its SCRAM credential and ACLs in Kafka, and its application Secret.

Everything is checked before anything changes, as for StreamCluster: the
spec, its StreamCluster (exists, is valid, has a listener for the user's
SCRAM mechanism, has an authorizer if the user has ACLs), the password's
Secret, the cluster Secret with the operator's own credential. A failure
shows ``Degraded`` with a message and a Warning Event and is retried.

Then, through the Kafka admin APIs (``kafka_admin``, as the operator's super
user on the cluster's first SCRAM listener): upsert the credential, create
the ACLs the spec has and Kafka lacks, delete those Kafka has and the spec
does not; then apply the application's Secret. A generated password is kept
in that Secret, so it stays the same across reconciles.

Deletion (a kopf finalizer) removes the credential and every ACL of the
principal; the Secret goes by its owner reference.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import kopf

from floe_operator import config as config_
from floe_operator import kafka_admin, user_spec
from floe_operator import kube as kube_
from floe_operator import spec as spec_
from floe_operator.manifests import naming, security, users
from floe_operator.reconcile import secrets as secrets_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile.cluster import Degraded, named_cluster


class Target:
    """What a StreamUser is applied to: its cluster, the user's listener, the operator's connection."""

    def __init__(self, cluster: spec_.StreamCluster, listener: spec_.KafkaListener,
                 connection: kafka_admin.Connection, ca_crt: str | None) -> None:
        self.cluster = cluster
        self.listener = listener
        self.connection = connection
        self.ca_crt = ca_crt


def _text(secret: Mapping[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if raw is not None:
        return base64.b64decode(raw).decode()
    value = (secret.get("stringData") or {}).get(key)
    return str(value) if value is not None else None


async def _ca_of(cluster: spec_.StreamCluster, listener: spec_.KafkaListener, kube: kube_.KubeClient) -> str | None:
    if listener.tls is None:
        return None
    secret = await kube.get("v1", "Secret", cluster.namespace, listener.tls.secret_name)
    return _text(secret, "ca.crt") if secret is not None else None


async def target_of(user: user_spec.StreamUser, kube: kube_.KubeClient, config: config_.OperatorConfig) -> Target:
    """The user's StreamCluster and how to reach it; :class:`Degraded` if it cannot take this user."""
    where = f"StreamCluster {user.namespace}/{user.spec.cluster} (spec.cluster)"
    cluster, _ = await named_cluster(kube, user.namespace, user.spec.cluster)
    mechanism = user.spec.authentication.mechanism
    listener = next((ln for ln in cluster.spec.kafka_listeners() if ln.sasl_mechanism == mechanism), None)
    if listener is None:
        raise Degraded("NoScramListener",
                       f"{where} has no listener with authentication {user.spec.authentication.type}; "
                       "add one to its spec.listeners or change spec.authentication.type")
    if user.spec.authorization is not None and user.spec.authorization.acls and cluster.spec.authorization is None:
        raise Degraded("AuthorizationDisabled", f"{where} has no spec.authorization, so ACLs would not be enforced; "
                                                "set spec.authorization.type: simple on it")
    keys = await secrets_.read(cluster, kube)
    if keys is None:
        raise Degraded("ClusterNotReady", f"{where} has no cluster Secret yet ({naming.cluster_secret(cluster)}); "
                                          "the operator creates it when it reconciles the cluster")
    admin_listener = cluster.spec.scram_listener()
    assert admin_listener is not None and admin_listener.sasl_mechanism is not None  # the user's listener is one
    ca = await _ca_of(cluster, admin_listener, kube)
    connection = kafka_admin.Connection(
        bootstrap=config.kafka_bootstrap_for(service=naming.bootstrap_service(cluster), namespace=cluster.namespace,
                                             port=admin_listener.port),
        security_protocol=admin_listener.security_protocol,
        mechanism=admin_listener.sasl_mechanism,
        username=security.OPERATOR_USER,
        password=keys.operator_password,
        ca_pem=ca,
    )
    return Target(cluster, listener, connection, await _ca_of(cluster, listener, kube))


async def password_of(user: user_spec.StreamUser, kube: kube_.KubeClient) -> str:
    """The password: from the Secret the spec names, else the one generated before, else a new one."""
    password = user.spec.authentication.password
    if password is not None:
        ref = password.value_from.secret_key_ref
        secret = await kube.get("v1", "Secret", user.namespace, ref.name)
        where = f"Secret {user.namespace}/{ref.name} (spec.authentication.password.valueFrom.secretKeyRef)"
        if secret is None:
            raise Degraded("MissingSecret", f"{where} does not exist; create it with the key {ref.key}")
        value = _text(secret, ref.key)
        if not value:
            raise Degraded("MissingSecret", f"{where} has no key {ref.key}; add it or fix secretKeyRef.key")
        return value
    own = await kube.get("v1", "Secret", user.namespace, user.secret_name)
    if own is not None:
        found = _text(own, users.PASSWORD_KEY)
        if found:
            return found
    return secrets.token_urlsafe(24)


async def apply_in_kafka(user: user_spec.StreamUser, admin: kafka_admin.UserAdmin, password: str) -> None:
    await admin.upsert_scram(user.name, user.spec.authentication.mechanism, password)
    wanted = kafka_admin.desired_acls(user)
    present = await admin.acls_of(user.principal)
    await admin.create_acls(wanted - present)
    await admin.delete_acls(present - wanted)


def _status(body: Mapping[str, Any], *, ready: bool, reason: str, message: str, generation: int | None,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    at = status_.now()
    previous = spec_.StreamClusterStatus.model_validate({"conditions": (body.get("status") or {}).get("conditions")
                                                         or []})
    conditions = status_.set_condition(list(previous.conditions), type_=status_.READY, status=ready, reason=reason,
                                       message=message, at=at, generation=generation)
    conditions = status_.set_condition(conditions, type_=status_.DEGRADED, status=not ready, reason=reason,
                                       message="" if ready else message, at=at, generation=generation)
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions],
        **(extra or {}),
    }
    return out


def _degraded(body: kopf.Body, patch: kopf.Patch, generation: int | None, exc: Degraded, logger: kopf.Logger) -> None:
    patch.status.update(_status(body, ready=False, reason=exc.reason, message=exc.message, generation=generation))
    kopf.warn(body, reason=exc.reason, message=exc.message)
    logger.warning("Degraded (%s): %s", exc.reason, exc.message, extra={"k8s_skip": True})  # posted above


async def reconcile(*, body: kopf.Body, patch: kopf.Patch, kube: kube_.KubeClient, config: config_.OperatorConfig,
                    logger: kopf.Logger, admin_factory: kafka_admin.UserAdminFactory | None = None) -> None:
    """Create/update/resume of a StreamUser."""
    generation = (body.get("metadata") or {}).get("generation")
    try:
        user = user_spec.StreamUser.from_body(body)
    except spec_.SpecError as exc:
        _degraded(body, patch, generation, Degraded("InvalidSpec", str(exc)), logger)
        return  # only a new spec fixes it, and that is an update
    factory = admin_factory or kafka_admin.ConfluentUserAdmin
    try:
        target = await target_of(user, kube, config)
        password = await password_of(user, kube)
        admin = factory(target.connection)
        try:
            await apply_in_kafka(user, admin, password)
        except kafka_admin.KafkaAdminError as exc:
            raise Degraded("KafkaAdminFailed",
                           f"the cluster's Kafka admin API refused or did not answer: {exc}") from None
        finally:
            await admin.close()
        secret = users.user_secret(user, target.cluster, target.listener, password,
                                   cluster_domain=config.cluster_domain, ca_crt=target.ca_crt)
        kopf.adopt(secret, owner=body)
        await kube.apply(secret)
    except Degraded as exc:
        _degraded(body, patch, generation, exc, logger)
        raise kopf.TemporaryError(exc.message, delay=config.retry_delay_seconds) from None
    acls = len(kafka_admin.desired_acls(user))
    message = f"credential and {acls} ACL(s) applied; client settings in Secret {user.secret_name}"
    patch.status.update(_status(body, ready=True, reason="Applied", message=message, generation=generation,
                                extra={"username": user.name, "secret": user.secret_name}))
    kopf.info(body, reason="Applied", message=message)


async def delete(*, body: kopf.Body, kube: kube_.KubeClient, config: config_.OperatorConfig, logger: kopf.Logger,
                 admin_factory: kafka_admin.UserAdminFactory | None = None) -> None:
    """The finalizer: remove the user's credential and ACLs from Kafka (its Secret goes by owner reference)."""
    try:
        user = user_spec.StreamUser.from_body(body)
    except spec_.SpecError:
        return  # never valid, so never applied
    try:
        target = await target_of(user, kube, config)
    except Degraded as exc:
        if exc.reason in ("ClusterNotFound", "ClusterInvalid", "NoScramListener"):
            logger.info("Nothing to remove in Kafka: %s", exc.message)
            return  # the cluster (or its SCRAM listener) is gone, and the credential with it
        raise kopf.TemporaryError(exc.message, delay=config.retry_delay_seconds) from None
    admin = (admin_factory or kafka_admin.ConfluentUserAdmin)(target.connection)
    try:
        await admin.delete_scram(user.name, user.spec.authentication.mechanism)
        await admin.delete_acls(await admin.acls_of(user.principal))
    except kafka_admin.KafkaAdminError as exc:
        raise kopf.TemporaryError(f"cannot remove {user.principal} from Kafka yet: {exc}",
                                  delay=config.retry_delay_seconds) from None
    finally:
        await admin.close()
    logger.info("Removed the credential and ACLs of %s", user.principal)
