"""Reconcile one StreamCluster: validate everything first, then apply everything.

Order matters for "nothing is half-applied":

1. parse the spec (types, ranges, cross-field rules) -> ``InvalidSpec``;
2. check what the spec points at (the credentials Secret and its keys, each
   listener's TLS Secret) -> ``MissingSecret``, retried until it appears;
3. make sure the cluster Secret exists (``reconcile/secrets.py``: created
   once with random values, never applied over);
4. only then build every manifest and apply them in dependency order.

A spec that fails 1 or 2 changes nothing in the cluster: brokers that were
running keep running on the last good spec, and the StreamCluster shows
``Degraded`` with a message a person can act on, plus a Warning Event.

Objects are server-side applied (:meth:`floe_operator.kube.KubeClient.apply`).
While autoscaling is enabled the HPA owns the Deployment's replica count:
the operator leaves ``spec.replicas`` out of the Deployment it applies
(:func:`without_replicas`), so it never writes it. Switching autoscaling off
deletes the HPA and applies ``spec.brokers.replicas`` again, taking the
count back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kopf

from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import manifests
from floe_operator import spec as spec_
from floe_operator.manifests import naming
from floe_operator.reconcile import secrets as secrets_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile import status_update

# kopf posts a handler's log lines as Events (settings.posting.loggers); lines
# that repeat an Event the code posts itself carry this, so they post once.
NOT_AN_EVENT = {"k8s_skip": True}

# The field manager that holds the replica count between the operator and the HPA.
REPLICAS_HANDOVER = "floe-operator-replicas-handover"


class Degraded(Exception):
    """The spec cannot be applied as it is; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def named_cluster(kube: kube_.KubeClient, namespace: str,
                        name: str) -> tuple[spec_.StreamCluster, dict[str, Any]]:
    """The StreamCluster a StreamUser, StreamTopic or StreamLink names in ``spec.cluster``, and its body.

    :class:`Degraded` with ``ClusterNotFound`` or ``ClusterInvalid`` otherwise, each saying what to fix.
    """
    where = f"StreamCluster {namespace}/{name} (spec.cluster)"
    body = await kube.get(spec_.API_VERSION, spec_.KIND, namespace, name)
    if body is None:
        raise Degraded("ClusterNotFound", f"{where} does not exist; create it or fix spec.cluster")
    try:
        return spec_.StreamCluster.from_body(body), body
    except spec_.SpecError as exc:
        raise Degraded("ClusterInvalid", f"{where} has an invalid spec: {exc}") from None


async def check_dependencies(cluster: spec_.StreamCluster, kube: kube_.KubeClient) -> None:
    """Raise :class:`Degraded` if a Secret the spec names, or one of its keys, is missing."""
    await check_tls_secrets(cluster, kube)
    ref = cluster.spec.storage.credentials_secret_ref
    if ref is None:
        return
    secret = await kube.get("v1", "Secret", cluster.namespace, ref.name)
    where = f"Secret {cluster.namespace}/{ref.name}"
    if secret is None:
        raise Degraded(
            "MissingSecret",
            f"{where} (spec.storage.credentialsSecretRef) does not exist; create it with the "
            f"keys {ref.access_key_id_key} and {ref.secret_access_key_key}",
        )
    present = set((secret.get("data") or {}) | (secret.get("stringData") or {}))
    missing = [k for k in (ref.access_key_id_key, ref.secret_access_key_key) if k not in present]
    if missing:
        raise Degraded(
            "MissingSecret",
            f"{where} has no key {', '.join(missing)}; add it or set "
            "spec.storage.credentialsSecretRef.accessKeyIdKey / secretAccessKeyKey",
        )


async def check_tls_secrets(cluster: spec_.StreamCluster, kube: kube_.KubeClient) -> None:
    """Each TLS listener's Secret must exist with cert-manager's keys (and ``ca.crt`` for mtls)."""
    for ln in cluster.spec.listeners:
        if ln.tls is None:
            continue
        where = f"Secret {cluster.namespace}/{ln.tls.secret_name} (listener {ln.name!r} tls.secretName)"
        secret = await kube.get("v1", "Secret", cluster.namespace, ln.tls.secret_name)
        needed = ["tls.crt", "tls.key", *(["ca.crt"] if ln.authentication == "mtls" else [])]
        if secret is None:
            raise Degraded("MissingSecret", f"{where} does not exist; create it (e.g. with a cert-manager "
                                            f"Certificate) with the keys {', '.join(needed)}")
        present = set((secret.get("data") or {}) | (secret.get("stringData") or {}))
        missing = [k for k in needed if k not in present]
        if missing:
            reason = " (mtls checks client certificates against it)" if "ca.crt" in missing else ""
            raise Degraded("MissingSecret", f"{where} has no key {', '.join(missing)}{reason}; add it")


async def apply_all(
    cluster: spec_.StreamCluster,
    *,
    body: kopf.Body,
    kube: kube_.KubeClient,
    config: config_.OperatorConfig,
) -> dict[str, Any]:
    """Apply every manifest (owned by ``body``); return the live Deployment."""
    objs = manifests.build_all(cluster, config)
    kopf.adopt(objs, owner=body)
    deployment: dict[str, Any] = {}
    for obj in objs:
        if obj["kind"] == "Deployment" and cluster.spec.autoscaling.enabled:
            obj = await without_replicas(obj, kube)
        applied = await kube.apply(obj)
        if obj["kind"] == "Deployment":
            deployment = applied
    if not cluster.spec.autoscaling.enabled:
        await kube.delete("autoscaling/v2", "HorizontalPodAutoscaler", cluster.namespace, naming.hpa(cluster))
    return deployment


async def without_replicas(deployment: Mapping[str, Any], kube: kube_.KubeClient) -> dict[str, Any]:
    """The Deployment to apply while the HPA owns its replica count.

    A new Deployment keeps ``spec.replicas``: it starts from the count the
    builder chose, inside the HPA's bounds. An existing one is applied
    without it. Leaving a field out of an apply removes it when nobody else
    set it, and a Deployment without ``spec.replicas`` is scaled to the
    default of 1; so while the operator is still the only owner of the count
    (it created the Deployment, or autoscaling was off until now), the live
    count is first applied by :data:`REPLICAS_HANDOVER`, which keeps it until
    the HPA's first scale takes the field over.
    """
    meta = deployment["metadata"]
    live = await kube.get(deployment["apiVersion"], deployment["kind"], meta["namespace"], meta["name"])
    if live is None:
        return dict(deployment)
    replicas = (live.get("spec") or {}).get("replicas")
    if replicas is not None and kube_.owns(live, kube_.FIELD_MANAGER, ("spec", "replicas")):
        handover = {
            "apiVersion": deployment["apiVersion"],
            "kind": deployment["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas},
        }
        try:
            await kube.apply(handover, field_manager=REPLICAS_HANDOVER, force=False)
        except kube_.KubeError as exc:
            if exc.status != 409:
                raise
            # The HPA scaled in between: the count is its own already.
    applied = copy.deepcopy(dict(deployment))
    applied["spec"].pop("replicas", None)
    return applied


async def reconcile(
    *,
    body: kopf.Body,
    kube: kube_.KubeClient,
    config: config_.OperatorConfig,
    logger: kopf.Logger,
    old: Mapping[str, Any] | None = None,
) -> None:
    """Create/update/resume: make the cluster's objects match its spec.

    ``old`` is the previous spec's body on an update (kopf's ``old``), so a
    ``kubectl scale`` the HPA would override can be told apart.
    """
    at = status_.now()
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    try:
        cluster = spec_.StreamCluster.from_body(body)
    except spec_.SpecError as exc:
        # Not retried: only a new spec can fix it, and that triggers an update.
        await report_degraded(body, kube, "InvalidSpec", str(exc), at, generation, logger)
        return
    if cluster.spec.paused:

        async def paused(live: dict[str, Any]) -> dict[str, Any]:
            status = status_.paused(status_.parse(live.get("status")), at=at, generation=generation)
            return with_rebalance_state(status, live, cluster, at=at)

        await status_update.update(kube, cluster.namespace, cluster.name, paused)
        kopf.info(body, reason="Paused", message="spec.paused is true; objects are left as they are")
        logger.info("Paused: not reconciling.", extra=NOT_AN_EVENT)
        return
    try:
        await check_dependencies(cluster, kube)
        await secrets_.ensure(cluster, body=body, kube=kube)
        applied = await apply_all(cluster, body=body, kube=kube, config=config)
    except Degraded as exc:
        await report_degraded(body, kube, exc.reason, exc.message, at, generation, logger)
        raise kopf.TemporaryError(exc.message, delay=config.retry_delay_seconds) from None
    except kube_.KubeError as exc:
        if exc.status not in (400, 403, 409, 422):
            raise  # transient (timeouts, 5xx): kopf retries with its backoff
        message = f"the API server refused an object: {exc.reason}: {exc.message}"
        await report_degraded(body, kube, "ApplyFailed", message, at, generation, logger)
        raise kopf.TemporaryError(message, delay=config.retry_delay_seconds) from None
    requested = ignored_scale(old, body)

    async def reconciled(live: dict[str, Any]) -> dict[str, Any]:
        # The Deployment is read after the StreamCluster (see status_update).
        deployment = await kube.get("apps/v1", "Deployment", cluster.namespace, naming.deployment(cluster))
        status = status_.reconciled(
            status_.parse(live.get("status")), cluster=cluster, config=config, deployment=deployment or applied, at=at
        )
        if requested is not None:
            status = status_.scale_ignored(status, cluster=cluster, requested=requested, at=at)
        elif not cluster.spec.autoscaling.enabled:
            status = status_.scale_honoured(status, cluster=cluster, at=at)
        return with_rebalance_state(status, live, cluster, at=at)

    written = await status_update.update(kube, cluster.namespace, cluster.name, reconciled)
    if requested is not None:
        kopf.warn(body, reason="ScaleIgnored", message=status_.scale_ignored_message(cluster, requested))
    ready = status_.parse((written or {}).get("status"))
    kopf.info(
        body,
        reason="Reconciled",
        message=f"every object matches generation {cluster.generation}; "
        f"{ready.ready_replicas}/{ready.replicas} brokers ready",
    )


def ignored_scale(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> int | None:
    """The broker count an update asked for that the HPA will override, if any.

    That is a change of ``spec.brokers.replicas`` (what ``kubectl scale``
    writes through the scale subresource) while autoscaling was on before and
    stays on. None otherwise, and on create and resume, which have no old
    spec to compare with.
    """
    if old is None:
        return None

    def read(body: Mapping[str, Any]) -> tuple[bool, int]:
        spec = body.get("spec") or {}
        autoscaling = (spec.get("autoscaling") or {}).get("enabled", False)
        replicas = (spec.get("brokers") or {}).get("replicas", spec_.Brokers().replicas)
        return bool(autoscaling), int(replicas)

    was_auto, was = read(old)
    is_auto, now = read(new)
    if was_auto and is_auto and now != was:
        return now
    return None


def with_rebalance_state(
    status: spec_.StreamClusterStatus, body: Mapping[str, Any], cluster: spec_.StreamCluster, *, at: str
) -> dict[str, Any]:
    """The status patch, plus ``Disabled`` for a rebalance loop that no longer runs.

    The loop (a kopf daemon) reports while it runs; once the spec turns it off
    kopf stops it, and this is where the user learns so.
    """
    body_patch = status.to_patch()
    if cluster.spec.rebalance.enabled and not cluster.spec.paused:
        return body_patch
    raw = (body.get("status") or {}).get("rebalance")
    conditions, rebalance = status_.rebalance_disabled(status, raw, at=at, generation=cluster.generation)
    if conditions != status.conditions:
        body_patch["conditions"] = status.model_copy(update={"conditions": conditions}).to_patch()["conditions"]
    if rebalance is not None:
        body_patch["rebalance"] = rebalance
    return body_patch


async def report_degraded(
    body: kopf.Body,
    kube: kube_.KubeClient,
    reason: str,
    message: str,
    at: str,
    generation: int | None,
    logger: kopf.Logger,
) -> None:
    meta = body.get("metadata") or {}

    async def degraded(live: dict[str, Any]) -> dict[str, Any]:
        previous = status_.parse(live.get("status"))
        return status_.degraded(previous, reason=reason, message=message, at=at, generation=generation).to_patch()

    await status_update.update(kube, meta["namespace"], meta["name"], degraded)
    kopf.warn(body, reason=reason, message=message)
    logger.warning("Degraded (%s): %s", reason, message, extra=NOT_AN_EVENT)


async def refresh_from_deployment(
    *,
    deployment: Mapping[str, Any],
    kube: kube_.KubeClient,
    logger: kopf.Logger,
) -> None:
    """A broker Deployment changed: fold its progress into its StreamCluster's status.

    The Deployment is read again after the StreamCluster rather than taken
    from the event, so the write is never older than the status it replaces
    (``status_update``).
    """
    meta = deployment.get("metadata") or {}
    name = (meta.get("labels") or {}).get(naming.CLUSTER_LABEL)
    namespace = meta.get("namespace")
    if not name or not namespace:
        return

    async def observed(live: dict[str, Any]) -> dict[str, Any] | None:
        previous = status_.parse(live.get("status"))
        current = await kube.get("apps/v1", "Deployment", namespace, meta["name"])
        if current is None:
            return None
        status = status_.observe(
            previous, deployment=current, at=status_.now(), generation=previous.observed_generation
        )
        return None if status == previous else status.to_patch()

    written = await status_update.update(kube, namespace, name, observed)
    if written is not None:
        logger.debug("Status of %s/%s: %s", namespace, name, (written.get("status") or {}).get("phase"))
