"""kopf handlers: the only module that uses ``kopf.on``. Each delegates at once.

Loaded by ``floe operator run`` (``floe_operator.cli``); importing it
registers the handlers in kopf's default registry.

* create / update / resume of a StreamCluster -> reconcile (resume runs for
  every StreamCluster when the operator starts, which also repairs drift);
* any change of a broker Deployment the operator manages -> status;
* a StreamCluster with ``spec.rebalance.enabled`` (and not paused) -> one
  rebalance daemon (``reconcile.rebalance``) for as long as that holds;
* create / update / resume of a StreamUser -> ``reconcile.user`` (credential,
  ACLs, application Secret); its deletion -> the same module's finalizer,
  which removes the credential and ACLs from Kafka;
* create / update / resume of a StreamLink, and a timer -> ``reconcile.links``
  (source credentials, the link on the brokers, promotion, lag in status);
  its deletion -> the same module's finalizer, which deletes the link.
* create / update / resume of a StreamTopic -> ``reconcile.topics`` (the Kafka
  topic's partitions and configs), plus one daemon per StreamTopic that puts
  back drift every ``topic_resync_seconds``; its deletion -> the same module's
  finalizer, which deletes the topic unless ``spec.deletionPolicy: Retain``.

Children are garbage-collected by Kubernetes through owner references, so
StreamClusters have no delete handler. kopf puts a finalizer only on
StreamClusters that run the rebalance daemon (so it can stop it before the
object goes); others are deleted without waiting on the operator, and the
bucket is never touched. StreamUsers always carry one: their credential
lives in the cluster, not in Kubernetes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import link_spec, topic_spec, user_spec
from floe_operator import spec as spec_
from floe_operator.manifests import naming
from floe_operator.reconcile import cluster, links, rebalance, topics, user

RESOURCE = (spec_.GROUP, spec_.VERSION, spec_.PLURAL)
USER_RESOURCE = (spec_.GROUP, spec_.VERSION, user_spec.PLURAL)
TOPIC_RESOURCE = (spec_.GROUP, spec_.VERSION, topic_spec.PLURAL)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep kopf's bookkeeping under floe.dev annotations; share one API client."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="floe.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="floe.dev", key="last-handled-configuration"
    )
    # Handler outcomes become Events (kubectl describe): kopf posts only
    # kopf.event()/info()/warn() unless told to post its loggers' lines too.
    settings.posting.enabled = True
    settings.posting.loggers = True
    settings.posting.level = logging.INFO
    if memo.get("config") is None:  # None for tests: they pass their own
        memo.config = config_.OperatorConfig.from_env()
    if memo.get("kube") is None:
        memo.kube = kube_.KubeClient.from_environment()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close the API client's connections."""
    if memo.get("kube") is not None:
        await memo.kube.close()


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile_cluster(
    body: kopf.Body, reason: str, old: Any, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Make the StreamCluster's objects match its spec (``old``: the spec before an update)."""
    previous = old if reason == kopf.Reason.UPDATE and isinstance(old, Mapping) else None
    await cluster.reconcile(body=body, kube=memo.kube, config=memo.config, logger=logger, old=previous)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": naming.MANAGED_BY})
async def broker_deployment_changed(type: str, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Report broker readiness as it changes, without waiting for a resync."""
    if type == "DELETED":
        return
    await cluster.refresh_from_deployment(deployment=body, kube=memo.kube, logger=logger)


def rebalance_wanted(spec: kopf.Spec, **_: Any) -> bool:
    """Run the rebalance daemon only while it is enabled and the cluster is not paused."""
    rb = spec.get("rebalance") or {}
    return bool(rb.get("enabled")) and not spec.get("paused", False)


@kopf.daemon(*RESOURCE, when=rebalance_wanted, cancellation_backoff=1.0, cancellation_timeout=10.0)
async def rebalance_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Measure load, move partition leaders when needed, keep pod-deletion costs."""
    await rebalance.run(
        body=body,
        stopped=stopped,
        kube=memo.kube,
        config=memo.config,
        logger=logger,
        admin_factory=memo.get("broker_admin_factory"),  # None outside tests
        prometheus_factory=memo.get("prometheus_factory"),
    )


@kopf.on.resume(*USER_RESOURCE)
@kopf.on.create(*USER_RESOURCE)
@kopf.on.update(*USER_RESOURCE)
async def reconcile_user(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Apply the StreamUser's credential and ACLs; write its application Secret."""
    await user.reconcile(body=body, patch=patch, kube=memo.kube, config=memo.config, logger=logger,
                         admin_factory=memo.get("user_admin_factory"))  # None outside tests


@kopf.on.delete(*USER_RESOURCE, retries=20)
async def delete_user(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Remove the StreamUser's credential and ACLs before the object goes (kopf's finalizer)."""
    await user.delete(body=body, kube=memo.kube, config=memo.config, logger=logger,
                      admin_factory=memo.get("user_admin_factory"))


LINK_RESOURCE = (spec_.GROUP, spec_.VERSION, link_spec.PLURAL)


@kopf.on.resume(*LINK_RESOURCE)
@kopf.on.create(*LINK_RESOURCE)
@kopf.on.update(*LINK_RESOURCE)
@kopf.timer(*LINK_RESOURCE, interval=links.STATUS_INTERVAL_SECONDS, initial_delay=links.STATUS_INTERVAL_SECONDS)
async def reconcile_link(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Put the StreamLink's link to the brokers, promote what it asks, and show its lag (also on a timer)."""
    await links.reconcile(body=body, patch=patch, kube=memo.kube, config=memo.config, logger=logger,
                          admin_factory=memo.get("link_admin_factory"))  # None outside tests


@kopf.on.delete(*LINK_RESOURCE, retries=20)
async def delete_link(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Delete the link on the brokers and its keys in the link Secret before the object goes (kopf's finalizer)."""
    await links.delete(body=body, kube=memo.kube, config=memo.config, logger=logger,
                       admin_factory=memo.get("link_admin_factory"))


def _topic_locks(memo: kopf.Memo) -> Any:
    """One lock per StreamTopic, shared by its handlers and its drift daemon."""
    if memo.get("topic_locks") is None:
        memo.topic_locks = {}
    return memo.topic_locks


@kopf.index(*TOPIC_RESOURCE)
def topic_claims(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """Which StreamTopic names which topic of which cluster, kept in memory: finds a second one for a topic.

    kopf passes it to every StreamTopic handler as the ``topic_claims`` keyword."""
    return topics.claim_of(body)


@kopf.on.resume(*TOPIC_RESOURCE)
@kopf.on.create(*TOPIC_RESOURCE)
@kopf.on.update(*TOPIC_RESOURCE)
async def reconcile_topic(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """Create the StreamTopic's Kafka topic, or bring its partitions and configs to the spec."""
    await topics.reconcile(body=body, kube=memo.kube, config=memo.config, logger=logger, locks=_topic_locks(memo),
                           claims=kwargs["topic_claims"],
                           admin_factory=memo.get("topic_admin_factory"))  # None outside tests


@kopf.daemon(*TOPIC_RESOURCE, cancellation_timeout=10.0)
async def topic_drift_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: kopf.Logger,
                             **kwargs: Any) -> None:
    """Put back what was changed behind the operator's back, every topic_resync_seconds."""
    await topics.correct_drift(body=body, stopped=stopped, kube=memo.kube, config=memo.config, logger=logger,
                               locks=_topic_locks(memo), claims=kwargs["topic_claims"],
                               admin_factory=memo.get("topic_admin_factory"))


@kopf.on.delete(*TOPIC_RESOURCE, retries=20)
async def delete_topic(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """Delete the Kafka topic before the object goes (kopf's finalizer), unless Retain."""
    await topics.delete(body=body, kube=memo.kube, config=memo.config, logger=logger, locks=_topic_locks(memo),
                        claims=kwargs["topic_claims"], admin_factory=memo.get("topic_admin_factory"))


@kopf.on.startup()
async def serve_metrics(logger: kopf.Logger, **_: Any) -> None:
    """Serve the rebalance loop's metrics (``floe_operator.metrics``) where the chart asks for them."""
    from floe_operator import metrics

    served = metrics.start_server()
    if served is not None:
        logger.info("Serving operator metrics on http://%s:%d/metrics", *served)
