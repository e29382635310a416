"""The local scaling loop: broker processes, a load reader, the HPA and the operator's rebalance core.

``floe local up --autoscale`` runs this on one asyncio event loop. Once per
``interval`` it

1. reads load (:mod:`floe_operator.balancing`): total bytes in per second
   over ``rate_window`` (what the HPA reacts to) and per-partition load over
   the longer ``balance_window`` (what the balancer weighs), from a local
   Prometheus scraping every broker's ``/metrics`` (:mod:`.prometheus`), or,
   where no prometheus binary is installed, by scraping ``/metrics`` itself
   (:class:`~floe_operator.balancing.scrape.MetricsScraper`);
2. asks the HPA arithmetic (:mod:`.hpa`) for a broker count, with the metric
   "bytes in per broker per second" (the cluster's total over the brokers
   that are not draining) against ``target_bytes_per_broker``;
3. scales out by starting broker processes (:mod:`.fleet`), waiting for
   ``/readyz`` and planning at once (a new broker takes its share within one
   admin call), or scales in by SIGTERM to the brokers with the lowest
   deletion cost (the rule an HPA scale-in follows on Kubernetes), whose drain
   moves their partitions away;
4. runs the same round as the Kubernetes loop
   (:class:`floe_operator.balancing.rounds.Rounds`) on the cluster's leaders
   and the per-partition load, and applies its moves; never while a broker
   is draining (its drain is the plan in progress).

Everything it does is appended to ``DIR/autoscale.jsonl`` and the current
brokers are written to ``DIR/brokers.json``, which is how the spike scenario
follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from floe_api import public as schema
from floe_cli.local import flags, hpa
from floe_cli.local import secrets as local_secrets
from floe_cli.local.fleet import EventLog, Fleet
from floe_cli.local.prometheus import LocalPrometheus
from floe_operator import planner
from floe_operator.balancing import rounds as rounds_
from floe_operator.balancing.admin import BrokerAdmin, BrokerAdminError
from floe_operator.balancing.load import LoadSnapshot, LoadUnavailable
from floe_operator.balancing.scrape import MetricsScraper
from floe_operator.planner.costs import deletion_costs

PROMETHEUS = "/usr/bin/prometheus"


class Source(Protocol):
    """Where the local loop reads load: told the brokers' addresses, sampled every second."""

    def targets(self, https: list[str]) -> None: ...
    async def sample(self) -> None: ...
    async def load(self) -> LoadSnapshot: ...
    def close(self) -> None: ...


def make_source(ns: argparse.Namespace, state: Path) -> Source:
    """A local Prometheus if one can run here, else the direct scrape (said once on stderr)."""
    choice = ns.prometheus
    binary = None if choice == "off" else (PROMETHEUS if choice == "auto" else choice)
    if binary is not None and not (os.path.exists(binary) or shutil.which(binary)):
        print(f"autoscaler: prometheus not found at {binary}; reading the brokers' /metrics directly",
              file=sys.stderr, flush=True)
        binary = None
    if binary is None:
        return MetricsScraper(ns.rate_window, ns.balance_window)
    try:
        return LocalPrometheus(shutil.which(binary) or binary, state, window=ns.rate_window,
                               balance_window=ns.balance_window, scrape_interval=ns.scrape_interval,
                               port=ns.prometheus_port, host=ns.host)
    except (OSError, RuntimeError) as exc:
        print(f"autoscaler: prometheus did not start ({exc}); reading the brokers' /metrics directly",
              file=sys.stderr, flush=True)
        return MetricsScraper(ns.rate_window, ns.balance_window)


@dataclass
class Loop:
    """One local cluster's scaling loop; :meth:`step` is one decision (tests drive it directly)."""

    fleet: Fleet
    source: Source
    scaler: hpa.Autoscaler
    rounds: rounds_.Rounds
    events: EventLog
    admin_for: Callable[[str], BrokerAdmin]  # a broker's admin API by its host:port
    interval: float
    drain_timeout: float
    max_skew_percent: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Set after a scale-out until the cluster is balanced; the time the last new broker became ready.
    awaiting_balance: float | None = None

    async def run(self) -> None:
        next_decision = time.monotonic() + self.interval
        while not self.stop.is_set():
            self.source.targets([b.http for b in self.fleet.running()])
            await self.source.sample()
            if time.monotonic() >= next_decision:
                next_decision = time.monotonic() + self.interval
                try:
                    await self.step()
                except Exception as exc:  # noqa: BLE001 - one bad round must not end the loop
                    self.events.write("error", error=repr(exc))
                    print(f"autoscaler: {exc!r}", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), min(1.0, self.interval))

    async def load(self) -> LoadSnapshot | None:
        """The current snapshot, or None until the bytes-in rate has been measured."""
        try:
            snapshot = await self.source.load()
        except LoadUnavailable as exc:
            print(f"autoscaler: {exc}", file=sys.stderr)
            return None
        return snapshot if snapshot.bytes_in is not None else None

    async def step(self) -> None:
        load = await self.load()
        serving = self.fleet.serving()
        current = len(serving)
        if current == 0:
            return
        bytes_in = load.bytes_in if load is not None else None
        metric = bytes_in / current if bytes_in is not None else None
        now = time.monotonic()
        desired = self.scaler.desired(now=now, current=current, metric=metric)
        self.events.write("decision", current=current, desired=desired,
                          bytes_in=round(bytes_in) if bytes_in is not None else None,
                          per_broker=round(metric) if metric is not None else None,
                          target=self.scaler.target)
        if desired > current:
            await self.scale_out(current, desired, now)
        elif desired < current:
            await self.scale_in(current, desired, now, load)
        await self.rebalance(load)

    async def scale_out(self, current: int, desired: int, now: float) -> None:
        print(f"autoscaler: scale out {current} -> {desired}", flush=True)
        self.events.write("scale_out", current=current, desired=desired)
        self.scaler.scaled(now=now, old=current, new=desired)
        started = await self.fleet.start(desired - current)
        self.source.targets([b.http for b in self.fleet.running()])
        if started:
            self.awaiting_balance = max(b.ready_at or 0.0 for b in started)
            # Plan at once: the load is per partition, so it does not wait for the new brokers' scrapes.
            await self.rebalance(await self.load())

    async def scale_in(self, current: int, desired: int, now: float, load: LoadSnapshot | None) -> None:
        view = await self.cluster()
        costs: dict[int, int] = {}
        if view is not None:
            brokers, partitions = rounds_.planner_input(view, load.partitions if load else None, seen=None)
            costs = deletion_costs(brokers, partitions)
        # Lowest deletion cost first: what an HPA scale-in removes first on Kubernetes.
        victims = sorted(self.fleet.serving(),
                         key=lambda b: (costs.get(b.node, -1) if b.node is not None else -1, -b.index))
        victims = victims[: current - desired]
        print(f"autoscaler: scale in {current} -> {desired}: draining "
              + ", ".join(f"node {b.node}" for b in victims), flush=True)
        self.events.write("scale_in", current=current, desired=desired, nodes=[b.node for b in victims])
        self.scaler.scaled(now=now, old=current, new=desired)
        for b in victims:
            self.fleet.drain(b, timeout=self.drain_timeout)

    async def cluster(self) -> schema.ClusterView | None:
        """The cluster as the first serving broker that answers sees it."""
        for b in self.fleet.serving():
            try:
                return await self.admin_for(b.http).cluster()
            except BrokerAdminError:
                continue
        return None

    async def rebalance(self, load: LoadSnapshot | None) -> None:
        view = await self.cluster()
        if view is None:
            return
        # A broker we just sent SIGTERM may not show as draining in the view yet: never a target.
        leaving = {b.node for b in self.fleet.brokers if b.draining_since is not None and b.node is not None}
        # A drain is a plan in progress: the broker moves its own partitions away. Moving them
        # concurrently raced the drain of the controller itself and left partitions closed.
        draining_now = any(b.draining_since is not None and b.exit_code is None for b in self.fleet.brokers)
        decided = self.rounds.decide(view, load.partitions if load else None, plan_running=draining_now,
                                     leaving=leaving)
        skew, leaders = decided.skew, {p.leader for p in decided.partitions}
        if decided.moves:
            target = next(iter(self.fleet.serving()), None)
            if target is None:
                return
            t0 = time.perf_counter()
            reply = await rounds_.apply(self.admin_for(target.http), decided.moves, timeout_seconds=60)
            seconds = time.perf_counter() - t0
            moves, parts = decided.moves, decided.partitions
            skew_after = decided.skew_after
            self.events.write("plan", moves=len(moves), errors=len(reply.failed), skew_before=round(skew, 1),
                              skew_after=round(skew_after, 1), seconds=round(seconds, 4),
                              load_moved=round(sum(m.load for m in moves)),
                              detail=[[m.topic, m.partition, m.source, m.target] for m in moves],
                              loads={f"{p.topic}:{p.partition}": round(p.load) for p in parts if p.load >= 1})
            print(f"autoscaler: moved {len(moves) - len(reply.failed)} partitions "
                  f"(skew {skew:.0f}% -> {skew_after:.0f}%) in {seconds:.3f}s", flush=True)
            if not reply.failed:
                skew, leaders = skew_after, {p.leader for p in rounds_.after(parts, moves)}
        if self.awaiting_balance is not None and load is not None:
            active = [b.node_id for b in decided.brokers if not b.draining]
            # Balanced: load within the band and every broker leads something (a new one included).
            if skew <= self.max_skew_percent and all(n in leaders for n in active):
                self.events.write("balanced", seconds=round(time.time() - self.awaiting_balance, 3),
                                  skew=round(skew, 1), brokers=len(active))
                print(f"autoscaler: balanced {time.time() - self.awaiting_balance:.2f}s after the new brokers "
                      f"were ready (skew {skew:.0f}%)", flush=True)
                self.awaiting_balance = None


def run(ns: argparse.Namespace) -> int:
    """``floe local up --autoscale``."""
    min_brokers = ns.min_brokers or ns.brokers
    if not 1 <= min_brokers <= ns.max_brokers:
        print("need 1 <= --min-brokers <= --max-brokers", file=sys.stderr)
        return 2
    state = Path(ns.dir).resolve()
    (state / "data").mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(ns, state, min_brokers))


async def _run(ns: argparse.Namespace, state: Path, min_brokers: int) -> int:
    storage = ns.storage or f"file://{state / 'data'}"
    events = EventLog(state / "autoscale.jsonl")
    session = aiohttp.ClientSession()
    keys = local_secrets.ensure(state)
    token = keys.admin_token()

    def admin_for(http: str) -> BrokerAdmin:
        return BrokerAdmin(f"http://{http}", session=session, token=token)

    fleet = Fleet(state=state, storage=storage, cluster=ns.cluster, host=ns.host, kafka_port=ns.kafka_port,
                  http_port=ns.http_port, extra=[*keys.broker_flags(), *ns.broker_args], events=events,
                  admin_for=admin_for)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    source: Source | None = None
    try:
        source = await asyncio.to_thread(make_source, ns, state)
        if isinstance(source, LocalPrometheus):
            print(f"prometheus: {source.url} (scraping every broker's /metrics every {ns.scrape_interval:g}s)",
                  flush=True)
        initial = max(ns.brokers, min_brokers)
        if len(await fleet.start(initial)) < initial:
            return 1
        bootstrap = ",".join(b.kafka for b in fleet.serving())
        events.write("up", bootstrap=bootstrap, storage=storage)
        print(f"\nFloe is running on {storage}\n  bootstrap servers: {bootstrap}\n"
              f"  autoscaling {min_brokers}..{ns.max_brokers} brokers on bytes in per broker "
              f"(target {ns.target_bytes_in / 1e6:g} MB/s); events in {state / 'autoscale.jsonl'}\n"
              f"  admin API token: {keys.export_hint()}\n"
              "Ctrl-C drains and stops the brokers.", flush=True)
        scaler = hpa.Autoscaler(min_replicas=min_brokers, max_replicas=ns.max_brokers, target=ns.target_bytes_in,
                                behavior=flags.behavior_from(ns), tolerance=ns.tolerance)
        policy = planner.RebalancePolicy(max_skew_percent=ns.max_skew_percent, skew_intervals=ns.skew_intervals)
        loop = Loop(fleet=fleet, source=source, scaler=scaler, rounds=rounds_.Rounds(policy), events=events,
                    admin_for=admin_for, interval=ns.autoscale_interval, drain_timeout=ns.drain_timeout,
                    max_skew_percent=ns.max_skew_percent, stop=stop)
        await loop.run()
        return 0
    finally:
        await asyncio.to_thread(fleet.stop_all, ns.drain_timeout)
        if source is not None:
            await asyncio.to_thread(source.close)
        await session.close()
        events.write("stopped")
        print("stopped", flush=True)
