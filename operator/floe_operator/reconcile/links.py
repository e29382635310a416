"""Reconcile one StreamLink: its source credentials into the brokers' files, its link on the brokers, its status.

Everything is checked before anything changes, as for StreamCluster and
StreamUser: the spec, its StreamCluster (exists and is valid), the cluster
Secret (the admin token), the Secrets holding the source's password and CA.
Then:

1. the password and CA are copied into the cluster's link Secret, which every
   broker mounts (``manifests.links``: this link's keys only, under its own
   field manager);
2. the link is put to the brokers' admin API (``PUT /v1/links/<name>``: created,
   or its definition changed; its topics and promotion are kept);
3. if ``spec.promotion`` asks for topics not promoted yet, they are promoted.
   The brokers refuse while a chosen partition lags the source (unless
   ``force``); the reconciler then says so in the ``Promoted`` condition and
   asks again on its next round, so a promotion goes through as soon as the
   source's producers stopped and the link caught up;
4. the status is written from the brokers' answer: each topic's state, lag
   in records and seconds, bytes mirrored, and ``Ready``/``Degraded`` with the
   error a person can act on (the source unreachable, a file not mounted yet,
   a source topic deleted).

It runs on create, update, resume and on a timer, which keeps the lag fresh.
Deleting the StreamLink (a kopf finalizer) deletes the link on the brokers
(every partition still mirrored becomes writable) and removes its keys from
the link Secret.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import kopf

from floe_api.links import PROMOTED, LinkStatus
from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import link_admin, link_spec
from floe_operator import spec as spec_
from floe_operator.manifests import links as links_
from floe_operator.manifests import naming
from floe_operator.reconcile import secrets as secrets_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile.cluster import Degraded, named_cluster

PROMOTED_CONDITION = "Promoted"
STATUS_INTERVAL_SECONDS = 10.0  # how often the timer refreshes lag and retries a waiting promotion


def _secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """A key's value as base64, as a Secret's ``data`` holds it."""
    raw = (secret.get("data") or {}).get(key)
    if raw is not None:
        return str(raw)
    value = (secret.get("stringData") or {}).get(key)
    return base64.b64encode(str(value).encode()).decode() if value is not None else None


async def _copied_key(kube: kube_.KubeClient, namespace: str, ref: link_spec.SecretKeyRef, field: str) -> str:
    where = f"Secret {namespace}/{ref.name} ({field})"
    secret = await kube.get("v1", "Secret", namespace, ref.name)
    if secret is None:
        raise Degraded("MissingSecret", f"{where} does not exist; create it with the key {ref.key}")
    value = _secret_value(secret, ref.key)
    if not value:
        raise Degraded("MissingSecret", f"{where} has no key {ref.key}; add it or fix the secretKeyRef's key")
    return value


class Target:
    """What a StreamLink is applied to: its cluster, the admin API's address and token."""

    def __init__(self, cluster: spec_.StreamCluster, url: str, token: str) -> None:
        self.cluster, self.url, self.token = cluster, url, token


async def target_of(link: link_spec.StreamLink, kube: kube_.KubeClient, config: config_.OperatorConfig) -> Target:
    where = f"StreamCluster {link.namespace}/{link.spec.cluster} (spec.cluster)"
    cluster, _ = await named_cluster(kube, link.namespace, link.spec.cluster)
    keys = await secrets_.read(cluster, kube)
    if keys is None:
        raise Degraded("ClusterNotReady", f"{where} has no cluster Secret yet ({naming.cluster_secret(cluster)}); "
                                          "the operator creates it when it reconciles the cluster")
    url = config.admin_url(service=naming.bootstrap_service(cluster), namespace=cluster.namespace,
                           port=cluster.spec.listener.admin_port)
    return Target(cluster, url, keys.admin_token)


async def source_files(link: link_spec.StreamLink, kube: kube_.KubeClient) -> dict[str, str]:
    """The link Secret's keys for this link (base64), read from the Secrets the spec names."""
    source = link.spec.source
    data: dict[str, str] = {}
    if source.sasl is not None:
        data[f"{link.name}{links_.PASSWORD_SUFFIX}"] = await _copied_key(
            kube, link.namespace, source.sasl.password_secret_ref, "spec.source.sasl.passwordSecretRef")
    if source.tls is not None and source.tls.ca_secret_ref is not None:
        data[f"{link.name}{links_.CA_SUFFIX}"] = await _copied_key(
            kube, link.namespace, source.tls.ca_secret_ref, "spec.source.tls.caSecretRef")
    return data


def definition_of(link: link_spec.StreamLink) -> Any:
    source = link.spec.source
    has_ca = source.tls is not None and source.tls.ca_secret_ref is not None
    return link.definition(password_file=links_.password_file(link.name) if source.sasl is not None else None,
                           ca_file=links_.ca_file(link.name) if has_ca else None)


def promotion_pending(link: link_spec.StreamLink, status: LinkStatus) -> list[str] | None:
    """The topics ``spec.promotion`` asks for that the brokers have not marked promoted; None: nothing asked."""
    promotion = link.spec.promotion
    if not promotion.wanted:
        return None
    linked = {t.topic: t.state for t in status.topics}
    chosen = sorted(linked) if promotion.all else [t for t in promotion.topics if t in linked]
    return [t for t in chosen if linked[t] == "mirroring"]


def topic_status(status: LinkStatus) -> list[dict[str, Any]]:
    out = []
    for t in status.topics:
        lags = [p.lag_records for p in t.partitions]
        out.append({
            "name": t.topic,
            "state": t.state,
            "partitions": len(t.partitions),
            "lagRecords": sum(max(x, 0) for x in lags),
            "lagSeconds": max((p.lag_seconds for p in t.partitions), default=0.0),
            "bytesMirrored": sum(p.bytes_mirrored for p in t.partitions),
        })
    return out


def source_error(status: LinkStatus) -> str | None:
    """What keeps the link from mirroring, for a person: the link's own error, else its partitions'."""
    if status.error:
        return status.error
    failing = [f"{p.topic}-{p.partition}: {p.error}" for t in status.topics for p in t.partitions if p.error]
    if not failing:
        return None
    more = f" (and {len(failing) - 3} more partitions)" if len(failing) > 3 else ""
    return "; ".join(failing[:3]) + more


def _conditions(body: Mapping[str, Any], generation: int | None,
                changes: list[tuple[str, bool, str, str]]) -> list[dict[str, Any]]:
    at = status_.now()
    previous = spec_.StreamClusterStatus.model_validate({"conditions": (body.get("status") or {}).get("conditions")
                                                         or []})
    conditions = list(previous.conditions)
    for type_, value, reason, message in changes:
        conditions = status_.set_condition(conditions, type_=type_, status=value, reason=reason, message=message,
                                           at=at, generation=generation)
    return [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions]


def _degraded(body: kopf.Body, patch: kopf.Patch, generation: int | None, exc: Degraded, logger: kopf.Logger) -> None:
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = _conditions(body, generation, [
        (status_.READY, False, exc.reason, exc.message), (status_.DEGRADED, True, exc.reason, exc.message)])
    kopf.warn(body, reason=exc.reason, message=exc.message)
    logger.warning("Degraded (%s): %s", exc.reason, exc.message, extra={"k8s_skip": True})  # posted above


async def _promote(link: link_spec.StreamLink, admin: link_admin.LinkAdmin,
                   status: LinkStatus) -> tuple[bool, str, str] | None:
    """Ask for the promotion the spec wants; the ``Promoted`` condition (status, reason, message), or None."""
    pending = promotion_pending(link, status)
    if pending is None:
        return None
    promotion = link.spec.promotion
    linked = {t.topic for t in status.topics}
    missing = sorted(set(promotion.topics) - linked) if not promotion.all else ([] if linked else ["any topic"])
    if missing:
        return False, "NotLinked", f"not linked (yet) from the source: {', '.join(missing)}; check spec.topics " \
                                   "and that the topic exists at the source"
    if pending:
        try:
            await admin.promote(link.name, None if promotion.all else pending, force=promotion.force)
        except link_admin.LinkAdminError as exc:
            if exc.status != 409:
                raise
            return False, "Lagging", f"{exc}; the operator asks again every {STATUS_INTERVAL_SECONDS:.0f}s"
        return False, "Promoting", f"promotion asked for {', '.join(pending)}: each partition is promoted once " \
                                   "it has copied the source's last records"
    chosen = [t for t in status.topics if promotion.all or t.topic in promotion.topics]
    waiting = [t.topic for t in chosen if t.state != PROMOTED]
    if waiting:
        return False, "Promoting", f"promoting {', '.join(waiting)}: waiting for the last records from the source"
    return True, "Promoted", f"{', '.join(t.topic for t in chosen)} promoted: writable on Floe"


async def reconcile(*, body: kopf.Body, patch: kopf.Patch, kube: kube_.KubeClient, config: config_.OperatorConfig,
                    logger: kopf.Logger, admin_factory: link_admin.LinkAdminFactory | None = None) -> None:
    """Create/update/resume of a StreamLink, and its timer."""
    generation = (body.get("metadata") or {}).get("generation")
    try:
        link = link_spec.StreamLink.from_body(body)
    except spec_.SpecError as exc:
        _degraded(body, patch, generation, Degraded("InvalidSpec", str(exc)), logger)
        return  # only a new spec fixes it, and that is an update
    factory = admin_factory or link_admin.LinkAdmin
    try:
        target = await target_of(link, kube, config)
        files = await source_files(link, kube)
        await kube.apply(links_.link_secret(target.cluster, link.name, files),
                         field_manager=links_.field_manager(link.name))
        admin = factory(target.url, token=target.token)
        try:
            status = await admin.put(definition_of(link))
            promoted = await _promote(link, admin, status)
            status = await admin.status(link.name) or status
        except link_admin.LinkAdminError as exc:
            raise Degraded("AdminApiFailed", f"the brokers' admin API refused or did not answer: {exc}") from None
        finally:
            await admin.close()
    except Degraded as exc:
        _degraded(body, patch, generation, exc, logger)
        raise kopf.TemporaryError(exc.message, delay=config.retry_delay_seconds) from None
    error = source_error(status)
    topics = topic_status(status)
    changes = [(status_.READY, error is None, "SourceError" if error else "Mirroring",
                error or f"{len(topics)} topic(s) linked from {status.bootstrap_servers}"),
               (status_.DEGRADED, error is not None, "SourceError" if error else "Mirroring", error or "")]
    if promoted is not None:
        changes.append((PROMOTED_CONDITION, *promoted))
    patch.status.update({
        "observedGeneration": generation,
        "conditions": _conditions(body, generation, changes),
        "topics": topics,
        "lagRecords": sum(t["lagRecords"] for t in topics),
        "lagSeconds": max((t["lagSeconds"] for t in topics), default=0.0),
        "bytesMirrored": sum(t["bytesMirrored"] for t in topics),
        "secret": links_.link_secret_name(target.cluster.name) if files else None,
    })


async def delete(*, body: kopf.Body, kube: kube_.KubeClient, config: config_.OperatorConfig, logger: kopf.Logger,
                 admin_factory: link_admin.LinkAdminFactory | None = None) -> None:
    """The finalizer: delete the link on the brokers and remove its keys from the link Secret."""
    try:
        link = link_spec.StreamLink.from_body(body)
    except spec_.SpecError:
        return  # never valid, so never applied
    try:
        target = await target_of(link, kube, config)
    except Degraded as exc:
        if exc.reason in ("ClusterNotFound", "ClusterInvalid"):
            logger.info("Nothing to remove on the brokers: %s", exc.message)
            return  # the cluster is gone, and its link Secret with it
        raise kopf.TemporaryError(exc.message, delay=config.retry_delay_seconds) from None
    admin = (admin_factory or link_admin.LinkAdmin)(target.url, token=target.token)
    try:
        await admin.delete(link.name)
    except link_admin.LinkAdminError as exc:
        raise kopf.TemporaryError(f"cannot delete link {link.name} on the brokers yet: {exc}",
                                  delay=config.retry_delay_seconds) from None
    finally:
        await admin.close()
    await kube.apply(links_.link_secret(target.cluster, link.name, {}), field_manager=links_.field_manager(link.name))
    logger.info("Deleted link %s on the brokers; its partitions still mirrored are writable", link.name)
