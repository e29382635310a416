"""The rebalance loop of one StreamCluster: measure, decide, move leaders, report.

``main.rebalance_daemon`` (a kopf daemon, one per StreamCluster with
``spec.rebalance.enabled``) calls :func:`run`, which every
``intervalSeconds``:

1. reads the cluster from the brokers' admin API (``GET /v1/cluster``: brokers,
   draining flags, every partition's leader) through the bootstrap Service;
2. reads per-partition load from Prometheus;
3. lets the rebalance core (:mod:`floe_operator.balancing`, shared with the
   local autoscaler) decide whether to move anything, and if so POSTs the
   moves (``/v1/reassignments``, forwarded to the controller) in a background
   task, so the loop keeps measuring and keeps pod-deletion costs current
   while a plan runs, and the core sees ``plan_running`` and plans nothing new
   until it ends;
4. keeps ``controller.kubernetes.io/pod-deletion-cost`` on the broker pods
   (least-loaded broker = lowest cost) so an HPA scale-in removes the brokers
   with the least to drain;
5. writes ``status.rebalance`` and the ``Rebalancing`` condition.

Everything that decides is pure and lives in :mod:`floe_operator.planner`,
:mod:`floe_operator.balancing.rounds` or the functions at the top of this
module; the class below only does I/O. What is Kubernetes' own here is how
brokers leave: an HPA scale-in deletes pods, and the deletion costs make it
delete the ones with the least to drain.

When Prometheus does not answer, the loop still serves the two cases where a
person is waiting (a new broker, a draining broker that leads partitions) by
balancing partition *counts* (the planner's idle mode), and says so in the
condition. When the admin API does not answer it does nothing and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf

from floe_api import public as schema
from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import metrics as metrics_
from floe_operator import spec as spec_
from floe_operator.balancing import admin as admin_
from floe_operator.balancing import prometheus as prometheus_
from floe_operator.balancing import rounds as rounds_
from floe_operator.balancing.load import LoadSnapshot, LoadUnavailable
from floe_operator.manifests import naming
from floe_operator.planner import Move, PartitionInfo, RebalancePolicy
from floe_operator.planner.costs import deletion_costs
from floe_operator.reconcile import secrets as secrets_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile import status_update

REBALANCING = "Rebalancing"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# skew_intervals for ``continuous: false``: skew alone never triggers a plan.
NEVER = sys.maxsize


# ---------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------


def host_of(address: str) -> str:
    """``http://10.0.0.5:9644`` or ``10.0.0.5:9644`` -> ``10.0.0.5``."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def pods_by_node(view: schema.ClusterView, pods: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Which pod runs which broker: the broker advertises its pod IP (or pod name)."""
    by_address: dict[str, str] = {}
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name", ""))
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            by_address[str(ip)] = name
        by_address[name] = name
    found: dict[int, str] = {}
    for b in view.brokers:
        for address in (b.host, host_of(b.http), b.host.split(".", 1)[0]):
            if address in by_address:
                found[b.node_id] = by_address[address]
                break
    return found


def current_costs(pods: Sequence[Mapping[str, Any]], pod_of: Mapping[int, str]) -> dict[int, int]:
    """The deletion costs the pods carry now, by node id (unreadable ones are ignored)."""
    by_pod: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        value = str((meta.get("annotations") or {}).get(DELETION_COST, ""))
        with contextlib.suppress(ValueError):
            by_pod[str(meta.get("name"))] = int(value)
    return {node: by_pod[name] for node, name in pod_of.items() if name in by_pod}


def broker_loads(
    view: schema.ClusterView,
    partitions: Sequence[PartitionInfo],
    *,
    bytes_in: Mapping[str, float] | None,
    pods: Mapping[int, str],
    costs: Mapping[int, int],
) -> list[spec_.BrokerLoad]:
    """Per broker: what it leads, its load, its own bytes-in rate and its deletion cost."""
    by_instance_host = {host_of(instance): rate for instance, rate in (bytes_in or {}).items()}
    result = []
    for b in sorted(view.brokers, key=lambda b: b.node_id):
        led = [p for p in partitions if p.leader == b.node_id]
        rate = None
        if bytes_in is not None:
            rate = round(by_instance_host.get(b.host, by_instance_host.get(host_of(b.http), 0.0)), 3)
        result.append(
            spec_.BrokerLoad(
                node_id=b.node_id,
                pod=pods.get(b.node_id),
                draining=b.draining,
                partitions=len(led),
                load=round(sum(p.load for p in led), 3),
                bytes_in_per_second=rate,
                deletion_cost=costs.get(b.node_id),
            )
        )
    return result


def planned(moves: Sequence[Move], *, reason: rounds_.Reason, at: str) -> spec_.RebalancePlan:
    return spec_.RebalancePlan(
        reason=reason,
        started_at=at,
        move_count=len(moves),
        moves=[
            spec_.PlannedMove.model_validate(
                {"topic": m.topic, "partition": m.partition, "from": m.source, "to": m.target, "load": round(m.load, 3)}
            )
            for m in moves
        ],
    )


def finished(
    plan: spec_.RebalancePlan,
    *,
    at: str,
    seconds: float,
    result: schema.ReassignReply | None,
    error: str | None = None,
) -> spec_.RebalancePlan:
    """The plan once the controller answered (``result``) or the request failed (``error``)."""
    if result is None:
        return plan.model_copy(
            update={"finished_at": at, "duration_seconds": round(seconds, 3), "result": "Failed", "message": error}
        )
    errors = {(r.topic, r.partition): r.error for r in result.failed}
    moves = [m.model_copy(update={"error": errors.get((m.topic, m.partition))}) for m in plan.moves]
    message = f"{len(errors)} of {len(moves)} moves failed" if errors else f"moved {len(moves)} partition leaders"
    return plan.model_copy(
        update={
            "finished_at": at,
            "duration_seconds": round(result.seconds or seconds, 3),
            "result": "Failed" if errors else "Succeeded",
            "message": message,
            "moves": moves,
        }
    )


def condition_for(state: spec_.RebalanceStatus) -> tuple[bool, str, str]:
    """(status, reason, message) of the ``Rebalancing`` condition."""
    running = state.last_plan is not None and state.last_plan.result == "Running"
    if running and state.last_plan is not None:
        plan = state.last_plan
        return True, "PlanRunning", f"moving {plan.move_count} partition leaders ({plan.reason})"
    return False, state.state, state.message


# ---------------------------------------------------------------------------
# The loop (I/O)
# ---------------------------------------------------------------------------

# Called as factory(url, token=...): the admin token from the cluster Secret (None before it exists).
AdminFactory = Callable[..., admin_.BrokerAdmin]
# Called as factory(url, rate_window=..., selector=...), like PrometheusReader.
PrometheusFactory = Callable[..., prometheus_.PrometheusReader]


class Rebalancer:
    """The loop's memory for one StreamCluster: the core's rounds (policy, brokers seen), the running plan."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        kube: kube_.KubeClient,
        config: config_.OperatorConfig,
        logger: Any,
        admin_factory: AdminFactory | None = None,  # None for tests: they pass their own
        prometheus_factory: PrometheusFactory | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.stopped = stopped  # once kopf stops the daemon, the reconciler owns the status
        self.namespace = namespace
        self.name = name
        self.kube = kube
        self.config = config
        self.logger = logger
        self.admin_factory = admin_factory or admin_.BrokerAdmin
        self.prometheus_factory = prometheus_factory or prometheus_.PrometheusReader
        self.rounds: rounds_.Rounds | None = None
        self.policy_key: tuple[float, int] | None = None
        self.admin: admin_.BrokerAdmin | None = None
        self.token: str | None = None  # the admin token self.admin sends
        self.prometheus: prometheus_.PrometheusReader | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_plan: spec_.RebalancePlan | None = None
        self.plans = 0
        self.restored = False
        self.status: spec_.RebalanceStatus | None = None
        self.wake = asyncio.Event()  # a plan ended: measure again now
        self.lock = asyncio.Lock()  # one status write at a time
        self.retired: list[admin_.BrokerAdmin] = []  # clients of an old admin URL, to close
        self.max_skew_percent = 0.0  # the spec's threshold, for the exported metrics

    async def _close_retired(self) -> None:
        while self.retired:
            await self.retired.pop().close()

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._close_retired()
        if self.admin is not None:
            await self.admin.close()

    def _clients(
        self, cluster: spec_.StreamCluster, token: str | None
    ) -> tuple[admin_.BrokerAdmin, prometheus_.PrometheusReader, rounds_.Rounds]:
        rb = cluster.spec.rebalance
        url = self.config.admin_url(
            service=naming.bootstrap_service(cluster),
            namespace=cluster.namespace,
            port=cluster.spec.listener.admin_port,
        )
        if self.admin is None or self.admin.url != url.rstrip("/") or self.token != token:
            if self.admin is not None:
                self.retired.append(self.admin)  # a running plan may still use it
            self.admin = self.admin_factory(url, token=token)
            self.token = token
        assert rb.prometheus_url is not None  # the spec refuses enabled without it
        wanted = (rb.prometheus_url, rb.window, rb.metrics_selector)
        reader = self.prometheus
        if reader is None or (reader.url, reader.rate_window, reader.selector) != wanted:
            reader = self.prometheus = self.prometheus_factory(
                rb.prometheus_url, rate_window=rb.window, selector=rb.metrics_selector
            )
        key = (float(rb.max_skew_percent), rb.skew_intervals if rb.continuous else NEVER)
        if self.rounds is None:
            self.rounds = rounds_.Rounds(RebalancePolicy(max_skew_percent=key[0], skew_intervals=key[1]))
        elif key != self.policy_key:
            self.rounds.policy = RebalancePolicy(max_skew_percent=key[0], skew_intervals=key[1])
        self.policy_key = key
        self.rounds.on_scale_out = rb.on_scale_out
        return self.admin, reader, self.rounds

    async def tick(self, cluster: spec_.StreamCluster) -> spec_.RebalanceStatus:
        """One round: measure, maybe start a plan, keep deletion costs, report."""
        rb = cluster.spec.rebalance
        self.max_skew_percent = float(rb.max_skew_percent)
        keys = await secrets_.read(cluster, self.kube)
        admin, prometheus, rounds = self._clients(cluster, keys.admin_token if keys else None)
        at = status_.now()
        if not self.restored:
            await self._restore()
        try:
            view = await admin.cluster()
        except admin_.BrokerAdminError as exc:
            return await self._report(
                spec_.RebalanceStatus(
                    state="BrokersUnavailable",
                    message=f"cannot read the cluster from the brokers' admin API: {exc}",
                    observed_at=at,
                    plans=self.plans,
                    last_plan=self.last_plan,
                    brokers=self.status.brokers if self.status else [],
                )
            )
        snapshot: LoadSnapshot | None = None
        metrics_error = ""
        try:
            snapshot = await prometheus.load()
        except LoadUnavailable as exc:
            metrics_error = f"{exc}; balancing partition counts for new and draining brokers until it answers"
        running = self.task is not None and not self.task.done()
        if not running:
            await self._close_retired()
        decided = rounds.decide(view, snapshot.partitions if snapshot else None, plan_running=running)
        brokers, partitions = decided.brokers, decided.partitions
        skew = decided.skew if snapshot is not None else None
        if decided.moves:
            self._start(admin, decided.moves, reason=decided.reason, at=at)

        pods = await self.kube.list_objects("v1", "Pod", cluster.namespace, labels=naming.selector_labels(cluster))
        pod_of = pods_by_node(view, pods)
        costs = deletion_costs(brokers, partitions, previous=current_costs(pods, pod_of)) if rb.on_scale_in else {}
        await self._keep_costs(pods, pod_of, costs)

        if snapshot is not None and not snapshot.partitions and view.partitions:
            metrics_error = (
                f"Prometheus at {rb.prometheus_url} has no floe_partition_bytes_in_total/out_total series "
                f"for this cluster yet (check that it scrapes the brokers and spec.rebalance.metricsSelector); "
                "balancing partition counts for new and draining brokers meanwhile"
            )
        if metrics_error:
            state: spec_.RebalanceState = "MetricsUnavailable"
            message = metrics_error
        elif skew is not None and skew > rb.max_skew_percent:
            state = "Skewed"
            message = (
                f"load skew {skew:.1f}% is above {rb.max_skew_percent}% "
                f"({rounds.policy.skewed_intervals}/{rb.skew_intervals} intervals)"
            )
            if not rb.continuous:
                message += "; continuous is off, so only scale-out and drains move partitions"
        else:
            state = "Balanced"
            message = f"every broker is within {rb.max_skew_percent}% of the mean load"
        if self.task is not None and not self.task.done():
            state = "Rebalancing"
        return await self._report(
            spec_.RebalanceStatus(
                state=state,
                message=message,
                observed_at=at,
                skew_percent=None if skew is None else round(skew, 2),
                skewed_intervals=rounds.policy.skewed_intervals,
                plans=self.plans,
                brokers=broker_loads(
                    view,
                    partitions,
                    bytes_in=snapshot.broker_bytes_in if snapshot else None,
                    pods=pod_of,
                    costs=costs,
                ),
                last_plan=self.last_plan,
            )
        )

    def _start(self, admin: admin_.BrokerAdmin, moves: list[Move], *, reason: rounds_.Reason, at: str) -> None:
        self.plans += 1
        self.last_plan = planned(moves, reason=reason, at=at)
        metrics_.plan_started(self.namespace, self.name, len(moves))
        self.logger.info(
            "Rebalance (%s): %s",
            reason,
            ", ".join(f"{m.topic}/{m.partition} {m.source}->{m.target}" for m in moves),
        )
        self.task = asyncio.get_running_loop().create_task(self._execute(admin, moves, self.last_plan))

    async def _execute(self, admin: admin_.BrokerAdmin, moves: list[Move], plan: spec_.RebalancePlan) -> None:
        started = time.monotonic()
        try:
            result = await rounds_.apply(admin, moves)
            done = finished(plan, at=status_.now(), seconds=time.monotonic() - started, result=result)
        except admin_.BrokerAdminError as exc:
            done = finished(plan, at=status_.now(), seconds=time.monotonic() - started, result=None, error=str(exc))
        self.last_plan = done
        metrics_.plan_ended(self.namespace, self.name, done.result)
        log = self.logger.info if done.result == "Succeeded" else self.logger.warning
        log("Rebalance plan %s in %.3fs: %s", done.result.lower(), done.duration_seconds or 0.0, done.message)
        self.wake.set()

    async def _restore(self) -> None:
        """After a restart: keep showing the last plan and the count of plans."""
        self.restored = True
        live = await self.kube.get(spec_.API_VERSION, spec_.KIND, self.namespace, self.name)
        raw = ((live or {}).get("status") or {}).get("rebalance")
        if not raw:
            return
        try:
            previous = spec_.RebalanceStatus.model_validate(raw)
        except ValueError:
            return
        self.plans = previous.plans
        plan = previous.last_plan
        if plan is not None and plan.result == "Running":
            plan = plan.model_copy(update={"result": "Failed", "message": "the operator restarted during the plan"})
        self.last_plan = plan

    async def _keep_costs(
        self, pods: Sequence[Mapping[str, Any]], pod_of: Mapping[int, str], costs: Mapping[int, int]
    ) -> None:
        current = {
            str(p["metadata"]["name"]): ((p.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)
            for p in pods
        }
        for node, cost in sorted(costs.items()):
            pod = pod_of.get(node)
            if pod is None or current.get(pod) == str(cost):
                continue
            try:
                await self.kube.patch(
                    "v1", "Pod", self.namespace, pod, {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
                )
            except kube_.KubeError as exc:
                if exc.status != 404:  # a pod that just went away needs no cost
                    raise

    async def _report(self, rebalance: spec_.RebalanceStatus) -> spec_.RebalanceStatus:
        """Write status.rebalance and the Rebalancing condition, if either changed."""
        metrics_.observed(self.namespace, self.name, state=rebalance.state, skew_percent=rebalance.skew_percent,
                          max_skew_percent=self.max_skew_percent)
        async with self.lock:
            self.status = rebalance
            if self.stopped():
                return rebalance

            async def compute(live: dict[str, Any]) -> dict[str, Any] | None:
                raw_status = live.get("status") or {}
                previous = status_.parse(raw_status)
                running, reason, message = condition_for(rebalance)
                conditions = status_.set_condition(
                    previous.conditions,
                    type_=REBALANCING,
                    status=running,
                    reason=reason,
                    message=message,
                    at=rebalance.observed_at,
                    # Not tied to a generation: a spec change alone must not make the loop rewrite it.
                    generation=None,
                )
                patch: dict[str, Any] = {}
                if conditions != previous.conditions:
                    patch["conditions"] = [
                        c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions
                    ]
                # Nones stay in: in a merge patch they delete what no longer applies.
                wanted = rebalance.model_dump(by_alias=True, mode="json")
                old = dict(raw_status.get("rebalance") or {})
                if _without_time(old) != _without_nones(_without_time(wanted)):
                    patch["rebalance"] = wanted
                return patch or None

            await status_update.update(self.kube, self.namespace, self.name, compute)
            return rebalance


def _without_time(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "observedAt"}


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


async def _pause(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the interval passes, a plan ends, or kopf stops the daemon."""
    waiters = [asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wake.clear()


async def run(
    *,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    kube: kube_.KubeClient,
    config: config_.OperatorConfig,
    logger: Any,
    admin_factory: AdminFactory | None = None,
    prometheus_factory: PrometheusFactory | None = None,
) -> None:
    """The daemon's body: one :class:`Rebalancer`, ticking until kopf stops it.

    ``body`` is kopf's live view of the StreamCluster, so spec changes
    (interval, skew, URLs) apply from the next round without a restart.
    """
    meta = body.get("metadata") or {}
    rebalancer = Rebalancer(
        namespace=meta["namespace"],
        name=meta["name"],
        kube=kube,
        config=config,
        logger=logger,
        admin_factory=admin_factory,
        prometheus_factory=prometheus_factory,
        stopped=lambda: bool(stopped),
    )
    metrics_.started(rebalancer.namespace, rebalancer.name)
    try:
        while not stopped:
            interval = float(config.retry_delay_seconds)
            try:
                cluster = spec_.StreamCluster.from_body(body)
            except spec_.SpecError:
                cluster = None  # the reconciler reports it as Degraded
            if cluster is not None and cluster.spec.rebalance.enabled:
                interval = cluster.spec.rebalance.interval_seconds
                try:
                    await rebalancer.tick(cluster)
                except kube_.KubeError as exc:
                    logger.warning("Rebalance round failed on the Kubernetes API: %s", exc)
            await _pause(stopped, rebalancer.wake, interval)
    finally:
        metrics_.stopped(rebalancer.namespace, rebalancer.name)
        await rebalancer.close()
