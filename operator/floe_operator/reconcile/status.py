"""Status as a pure function of what the operator saw.

Two writers report status: the reconcile handler (after applying the spec)
and the Deployment watcher (as brokers become ready). Both build it here, from
the previous status, so conditions keep their ``lastTransitionTime`` unless
their status really flips, and neither writer erases what the other knows:
a Deployment event never clears a ``Degraded`` condition, only a successful
reconcile does.

Phase, in order of precedence: Paused, Degraded, Running (every broker
ready and the rollout finished), Reconciling (anything else), Pending (never
reconciled yet).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Literal

from floe_operator import config as config_
from floe_operator import spec as spec_
from floe_operator.manifests import broker as broker_
from floe_operator.manifests import naming

READY = "Ready"
RECONCILING = "Reconciling"
DEGRADED = "Degraded"
REBALANCING = "Rebalancing"  # written by the rebalance loop; set to Disabled here
SCALE_IGNORED = "ScaleIgnored"  # a kubectl scale the HPA overrides


def now() -> str:
    """RFC 3339 UTC timestamp, second precision, as metav1.Time serialises."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(raw: Mapping[str, Any] | None) -> spec_.StreamClusterStatus:
    """The previous status; unreadable parts are dropped rather than fatal."""
    try:
        return spec_.StreamClusterStatus.model_validate(dict(raw or {}))
    except ValueError:
        return spec_.StreamClusterStatus()


def set_condition(
    conditions: list[spec_.Condition],
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    at: str,
    generation: int | None,
) -> list[spec_.Condition]:
    """Replace one condition; its transition time moves only when its status does."""
    value: Literal["True", "False"] = "True" if status else "False"
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else at
    new = spec_.Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    order = {READY: 0, RECONCILING: 1, DEGRADED: 2}
    return sorted([*others, new], key=lambda c: (order.get(c.type, 9), c.type))


def rollout(deployment: Mapping[str, Any] | None) -> tuple[int, int, bool]:
    """(wanted replicas, ready replicas, rollout finished) of a broker Deployment.

    Finished means what ``kubectl rollout status`` checks: the controller has
    seen the latest generation, every replica runs the new template, no old
    replica is left, and all of them are ready.
    """
    if deployment is None:
        return 0, 0, False
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas", 0))
    generation = int((deployment.get("metadata") or {}).get("generation", 0))
    finished = (
        int(st.get("observedGeneration", 0)) >= generation
        and int(st.get("updatedReplicas", 0)) >= wanted
        and int(st.get("replicas", 0)) <= wanted
        and ready >= wanted
    )
    return wanted, ready, finished


def observe(
    previous: spec_.StreamClusterStatus,
    *,
    deployment: Mapping[str, Any] | None,
    at: str,
    generation: int | None,
) -> spec_.StreamClusterStatus:
    """Fold the Deployment's progress into the status (the watcher's view)."""
    wanted, ready, finished = rollout(deployment)
    conditions = set_condition(
        previous.conditions,
        type_=READY,
        status=finished and ready >= wanted,
        reason="BrokersReady" if finished else "BrokersNotReady",
        message=f"{ready}/{wanted} brokers ready",
        at=at,
        generation=generation,
    )
    phase = previous.phase
    if phase not in ("Paused", "Degraded"):
        conditions = set_condition(
            conditions,
            type_=RECONCILING,
            status=not finished,
            reason="RollingOut" if not finished else "Reconciled",
            message=f"{ready}/{wanted} brokers ready" if not finished else "all objects match the spec",
            at=at,
            generation=generation,
        )
        phase = "Running" if finished else "Reconciling"
    return previous.model_copy(
        update={
            "conditions": conditions,
            "phase": phase,
            "replicas": wanted,
            "ready_replicas": ready,
        }
    )


def reconciled(
    previous: spec_.StreamClusterStatus,
    *,
    cluster: spec_.StreamCluster,
    config: config_.OperatorConfig,
    deployment: Mapping[str, Any] | None,
    at: str,
) -> spec_.StreamClusterStatus:
    """Status after every object was applied: Degraded clears, rollout decides the rest."""
    gen = cluster.generation
    conditions = set_condition(
        previous.conditions,
        type_=DEGRADED,
        status=False,
        reason="AsExpected",
        message="",
        at=at,
        generation=gen,
    )
    base = previous.model_copy(
        update={
            "conditions": conditions,
            "phase": "Reconciling",
            "observed_generation": gen,
            "selector": naming.selector(cluster),
            "bootstrap_servers": naming.bootstrap_servers(cluster, config.cluster_domain),
            "image": broker_.image(cluster, config),
            "autoscaling": cluster.spec.autoscaling.enabled,
        }
    )
    return observe(base, deployment=deployment, at=at, generation=gen)


def degraded(
    previous: spec_.StreamClusterStatus,
    *,
    reason: str,
    message: str,
    at: str,
    generation: int | None,
) -> spec_.StreamClusterStatus:
    """The spec cannot work: say why. Ready is left as it was (old brokers may run on)."""
    conditions = set_condition(
        previous.conditions,
        type_=DEGRADED,
        status=True,
        reason=reason,
        message=message,
        at=at,
        generation=generation,
    )
    conditions = set_condition(
        conditions,
        type_=RECONCILING,
        status=False,
        reason=reason,
        message="waiting for the spec or its dependencies to be fixed",
        at=at,
        generation=generation,
    )
    return previous.model_copy(
        update={"conditions": conditions, "phase": "Degraded", "observed_generation": generation}
    )


def paused(previous: spec_.StreamClusterStatus, *, at: str, generation: int | None) -> spec_.StreamClusterStatus:
    conditions = set_condition(
        previous.conditions,
        type_=RECONCILING,
        status=False,
        reason="Paused",
        message="spec.paused is true; objects are left as they are",
        at=at,
        generation=generation,
    )
    return previous.model_copy(update={"conditions": conditions, "phase": "Paused", "observed_generation": generation})


def rebalance_disabled(
    previous: spec_.StreamClusterStatus,
    raw_rebalance: Mapping[str, Any] | None,
    *,
    at: str,
    generation: int | None,
) -> tuple[list[spec_.Condition], dict[str, Any] | None]:
    """The rebalance loop stopped (disabled or paused): the conditions and the
    ``status.rebalance`` patch that say so, or ``None`` if nothing ran before."""
    if previous.condition(REBALANCING) is None and not raw_rebalance:
        return previous.conditions, None
    message = "spec.rebalance.enabled is false or the cluster is paused; leaders stay where they are"
    conditions = set_condition(
        previous.conditions,
        type_=REBALANCING,
        status=False,
        reason="Disabled",
        message=message,
        at=at,
        generation=generation,
    )
    if raw_rebalance and raw_rebalance.get("state") == "Disabled":
        return conditions, None
    return conditions, {"state": "Disabled", "message": message, "observedAt": at}


def scale_ignored(
    previous: spec_.StreamClusterStatus,
    *,
    cluster: spec_.StreamCluster,
    requested: int,
    at: str,
) -> spec_.StreamClusterStatus:
    """``spec.brokers.replicas`` changed (``kubectl scale``) while the HPA owns the count.

    The operator cannot honour it without fighting the HPA, so it says so,
    with what a person can do instead.
    """
    conditions = set_condition(
        previous.conditions,
        type_=SCALE_IGNORED,
        status=True,
        reason="AutoscalingEnabled",
        message=scale_ignored_message(cluster, requested),
        at=at,
        generation=cluster.generation,
    )
    return previous.model_copy(update={"conditions": conditions})


def scale_ignored_message(cluster: spec_.StreamCluster, requested: int) -> str:
    auto = cluster.spec.autoscaling
    return (
        f"spec.brokers.replicas={requested} (kubectl scale) is ignored: spec.autoscaling.enabled is true, so "
        f"the HorizontalPodAutoscaler {naming.hpa(cluster)} sets the broker count between "
        f"{auto.min_replicas} and {auto.max_replicas}; change spec.autoscaling.minReplicas/maxReplicas, "
        "or set spec.autoscaling.enabled to false to scale by hand"
    )


def scale_honoured(
    previous: spec_.StreamClusterStatus, *, cluster: spec_.StreamCluster, at: str
) -> spec_.StreamClusterStatus:
    """Autoscaling is off: ``spec.brokers.replicas`` rules again; clear an earlier ScaleIgnored."""
    if previous.condition(SCALE_IGNORED) is None:
        return previous
    conditions = set_condition(
        previous.conditions,
        type_=SCALE_IGNORED,
        status=False,
        reason="AutoscalingDisabled",
        message=f"spec.brokers.replicas ({cluster.spec.brokers.replicas}) sets the broker count",
        at=at,
        generation=cluster.generation,
    )
    return previous.model_copy(update={"conditions": conditions})
