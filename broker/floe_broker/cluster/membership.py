"""This broker's membership of the cluster: joining, the lease, heartbeats, being fenced.

Every broker runs the same two loops; which role it plays follows the lease:

* the lease loop renews the controller lease while this broker holds it, on
  its own task, because controller work (fencing, pushes to brokers that are
  recovering partitions) may take longer than the lease lasts;
* the heartbeat loop, as controller, supervises (fences brokers that missed
  their heartbeats, schedules WAL garbage collection); as a member, it
  heartbeats to the controller, takes the lease over when it expired, stops
  the broker when the controller failed its session, and catches up on
  metadata when the controller's version moved past ours.

Metadata arrives as deltas pushed by the controller (:meth:`Membership.receive`),
applied in version order; a delta that does not follow our version (a push
we missed, or two pushes crossing) makes us catch up from the bucket: the
deltas after our version, or the snapshot when those are gone.

A broker that drained and is leaving on purpose sets :attr:`Membership.leaving`:
from then on the controller forgetting its session is expected, not a fence.

What "fenced" and "new metadata" mean for the broker (stop; reopen
partitions) is left to the callbacks, so this module knows nothing of the
log or of groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from floe_api.internal import HeartbeatRequest, MetadataPush, RegisterRequest

from ..errors import ClusterSecretRefused, NotController, RpcError, StartupError, StoreUnavailable
from ..storage.health import state_of
from ..storage.layout import unanswered_key
from ..storage.objectstore import ObjectStore
from .client import ControllerClient, LocalController, RemoteController
from .controller import Controller, Lease, now_ms
from .delta import Delta, Gap, apply
from .metadata import ClusterState
from .metadata_log import MetadataLog

log = structlog.get_logger(__name__)

JOIN_TIMEOUT_S = 120.0
# How long a stopping broker keeps looking for a controller to drain through, and to leave through.
DRAIN_TIMEOUT_S = 60.0
LEAVE_TIMEOUT_S = 15.0

T = TypeVar("T")


class Membership:
    def __init__(
        self,
        controller: Controller,
        remote: RemoteController,
        store: ObjectStore,
        *,
        registration: RegisterRequest,
        heartbeat_interval_ms: int,
        session_timeout_ms: int,
        wal_gc_interval_ms: int,
        on_fenced: Callable[[], None],
        on_metadata: Callable[[ClusterState], Awaitable[None]],
        collect_wal: Callable[[set[str]], Awaitable[object]],
        join_timeout_s: float = JOIN_TIMEOUT_S,
    ) -> None:
        self.controller = controller
        self.local = LocalController(controller)
        self.remote = remote
        self.store = store
        self.registration = registration
        self.session = registration.session
        self.interval_s = heartbeat_interval_ms / 1000
        self.session_timeout_ms = session_timeout_ms
        self.gc_interval_s = wal_gc_interval_ms / 1000
        self._next_gc = time.monotonic() + self.gc_interval_s
        self._on_fenced = on_fenced
        self._on_metadata = on_metadata
        self._collect_wal = collect_wal
        self.join_timeout_s = join_timeout_s
        self.node_id = -1
        self.leaving = False  # drained, now leaving the cluster: heartbeats may be refused
        self.view = ClusterState()  # metadata as last pushed or read, when not the controller
        self.reader = MetadataLog(store)
        self._catching_up = asyncio.Lock()  # one change of the view at a time, in version order
        self._answered_at = time.monotonic()  # the controller's last answer to a heartbeat
        self._known_lease: Lease | None = None  # the last lease read from the bucket
        self._noted_unanswered = False  # we wrote a note that the controller does not answer us
        self.is_fenced = False  # the controller failed this session: the broker is stopping

    # ---- what this broker knows ---------------------------------------------------

    def state(self) -> ClusterState:
        """The newest metadata this broker knows. A controller whose lease ran out while the
        store took no writes keeps its own state until newer metadata arrives: its view was
        never filled while it led, and an empty one would tell clients no broker exists."""
        own = self.controller.state
        if own is not None and (self.controller.active or own.version > self.view.version):
            return own
        return self.view

    def controller_node(self) -> int:
        """Node id of the current controller (-1 while it changes)."""
        if self.controller.active:
            return self.node_id
        for n, b in self.state().brokers.items():
            if b.session == self.remote.holder:
                return n
        return -1

    def adopt(self, state: ClusterState) -> bool:
        """Take pushed or read metadata as our view; the controller's own state always wins."""
        if self.controller.active or state.version < self.state().version:
            return False
        self.view = state
        return True

    async def refresh_view(self, target: int | None = None) -> None:
        """Catch up from the bucket (to at least ``target`` when known) and hand the result on."""
        async with self._catching_up:
            state = await self._read_bucket(target)
            if state is None or not self.adopt(state):
                return
        await self._on_metadata(state)

    async def _read_bucket(self, target: int | None) -> ClusterState | None:
        try:
            if self.view.version == 0:
                state = await self.reader.load()
            else:
                state = await self.reader.catch_up(self.view, target)
        except StoreUnavailable as exc:
            log.warning("could not read the metadata from the bucket", error=str(exc))
            return None
        return state if state.version > self.view.version else None

    async def receive(self, push: MetadataPush) -> ClusterState | None:
        """A push from the controller, as our new view (None when it changes nothing).

        The next delta is applied to our view; a delta from further on means we missed
        one, so we catch up from the bucket; a delta we already have is ignored.
        """
        async with self._catching_up:
            if self.controller.active:
                return None
            if push.delta is not None:
                try:
                    delta = Delta.from_bytes(push.delta)
                except (ValueError, KeyError, TypeError) as exc:
                    # Not ours to trust: the bucket says what was committed.
                    log.warning("undecodable metadata push; reading the bucket instead", error=repr(exc))
                    state: ClusterState | None = await self._read_bucket(None)
                else:
                    if delta.version <= self.view.version:
                        return None
                    try:
                        state = apply(self.view, delta)
                    except Gap:
                        log.info("missed a metadata delta; catching up from the bucket",
                                 have=self.view.version, got=delta.version)
                        state = await self._read_bucket(delta.version)
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        log.warning("metadata delta does not apply; reading the bucket instead", error=repr(exc))
                        state = await self._read_bucket(delta.version)
            elif push.state is not None:
                state = ClusterState.from_bytes(push.state.encode())
            else:
                return None
            if state is None or not self.adopt(state):
                return None
            return state

    # ---- joining --------------------------------------------------------------------

    async def join(self) -> int:
        """Become controller if the lease is free, else register with the one holding it."""
        started = time.monotonic()
        while True:
            if await self.controller.try_acquire():
                try:
                    self.node_id = await self.local.register(self.registration)
                    return self.node_id
                except NotController:
                    # Two joiners saw the lease free; we took it and lost it again before
                    # registering: join whoever holds it now.
                    log.info("lost the controller lease while registering; joining its holder")
            lease = await self.remote.lease()
            if lease is not None and lease.expires_ms > now_ms():
                try:
                    node = await self.remote.register(self.registration, lease=lease)
                    await self._read_joined_view(node, started)
                    self.node_id = node
                    return node
                except ClusterSecretRefused:
                    raise StartupError("the controller refused this broker's cluster secret") from None
                except (RpcError, NotController) as exc:
                    log.info("controller not reachable yet", controller=lease.http, error=str(exc))
            if time.monotonic() - started > self.join_timeout_s:
                raise StartupError(f"could not join the cluster: no controller answered for {self.join_timeout_s:g} s")
            await asyncio.sleep(min(0.5, self.session_timeout_ms / 4000))

    async def _read_joined_view(self, node: int, started: float) -> None:
        """Read the metadata until it shows us registered, before anything is served.

        A broker serving an empty (or pre-registration) view answers Metadata with every
        topic unknown, and librdkafka then drops the topic and fails queued messages with
        "Unknown topic"; so a read the bucket refused is tried again, within the join timeout.
        """
        while True:
            await self.refresh_view()
            if node in self.view.brokers:
                return
            if time.monotonic() - started > self.join_timeout_s:
                raise StartupError(f"registered as broker {node} but could not read the cluster metadata "
                                   f"from the bucket for {self.join_timeout_s:g} s")
            await asyncio.sleep(min(0.5, self.session_timeout_ms / 4000))

    # ---- leaving on purpose -----------------------------------------------------------

    async def at_controller(self, call: Callable[[ControllerClient], Awaitable[T]], *, timeout_s: float) -> T:
        """Run ``call`` at the controller, taking the lease ourselves when it is free.

        When a whole cluster stops, controllers leave one after another and release the
        lease; the brokers still draining must then reach the next holder, or become it,
        instead of calling one that has exited. Retried until ``timeout_s``; the last
        failure is raised.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.controller.active or await self.controller.try_acquire():
                    return await call(self.local)
                return await self._while_lease_held(call(self.remote))
            except (NotController, RpcError, StoreUnavailable) as exc:
                if time.monotonic() >= deadline:
                    raise
                log.info("controller not reachable; trying again", error=str(exc))
            await asyncio.sleep(min(0.2, self.interval_s))

    async def _while_lease_held(self, call: Awaitable[T]) -> T:
        """Await a call to the lease holder, abandoning it once the lease passes to another or runs out.

        A controller that was paused or cut off answers nothing until its RPC timeout; the
        lease says much sooner that somebody else (or nobody) is the controller now.
        """
        called = await self.remote.lease()
        task: asyncio.Future[T] = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.interval_s)
                if done:
                    return task.result()
                now = await self.remote.lease()  # None: unreadable right now, so no news
                if now is not None and (called is None or now.holder != called.holder
                                        or now.expires_ms <= now_ms()):
                    raise NotController("the controller changed during the call")
        finally:
            task.cancel()

    async def leave(self, *, timeout_s: float) -> None:
        """Leave the cluster after a drain; as the controller, hand the lease on at once.

        If this fails the broker is still registered: its session times out like a crash,
        and as its partitions were closed with clean checkpoints a successor loses nothing.
        """
        self.leaving = True  # from here a refused heartbeat is our own doing, not a fence
        await self.at_controller(lambda c: c.leave(self.node_id), timeout_s=timeout_s)
        await self.controller.release()

    # ---- loops ------------------------------------------------------------------------

    def _holds_lease(self) -> bool:
        return self.controller.lease is not None and self.controller.lease.holder == self.session

    async def lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if self._holds_lease() and not await self.controller.renew():
                    self.controller.lease = None  # someone else holds it now: become a member
            except Exception as exc:
                log.warning("lease renewal failed", error=repr(exc))

    async def heartbeat_loop(self) -> None:
        while not self.is_fenced:  # once fenced the broker is stopping: nothing left to say
            await asyncio.sleep(self.interval_s)
            try:
                if not self._holds_lease():
                    await self.member_round()
                elif self.controller.active and not await self.controller_round():
                    return
            except Exception as exc:
                log.warning("controller round failed", error=repr(exc))

    async def controller_round(self) -> bool:
        """Supervise the cluster; False once this broker's own session was failed."""
        if not self.controller.heartbeat(self.node_id, self.session):
            self.fenced("the controller no longer knows this session")
            return False
        await self.controller.check_liveness()
        if time.monotonic() >= self._next_gc:
            self._next_gc = time.monotonic() + self.gc_interval_s
            await self._collect_wal({b.session for b in self.state().brokers.values()})
        return True

    async def member_round(self) -> None:
        lease = None if state_of(self.store) == "unavailable" else await self._read_lease()
        if lease is not None:
            self._known_lease = lease
        elif self._known_lease is not None:
            # The bucket does not answer us, or too slowly to wait for (a request cut off in
            # flight waits out its read timeout), but the controller may: heartbeat to the
            # last holder we know, saying how our store is, so that it fails us if the store
            # stays unavailable (its own answers) and its reply tells us so at once. If it is
            # no longer the controller it answers "not the controller", which is no worse.
            lease = dataclasses.replace(self._known_lease, expires_ms=now_ms() + self.session_timeout_ms)
        if lease is None or lease.expires_ms <= now_ms():
            if await self.controller.try_acquire():
                log.info("took over as controller")
                if not self.controller.heartbeat(self.node_id, self.session):
                    self.fenced("this session was failed while the controller changed")
            return
        try:
            # Up to half a session: under load a slow answer still counts.
            timeout_s = self._round_wait_s()
            request = HeartbeatRequest(node=self.node_id, session=self.session, store=state_of(self.store))
            reply = await self.remote.heartbeat(request, lease=lease, timeout_s=timeout_s)
        except (RpcError, NotController) as exc:
            # The controller may be changing (the lease tells us), or we are cut off from it
            # while the bucket still answers: after a session without an answer, the metadata
            # in the bucket says whether the controller failed us meanwhile.
            unanswered_s = time.monotonic() - self._answered_at
            if isinstance(exc, RpcError) and unanswered_s > self.session_timeout_ms / 3000:
                await self._note_unanswered(lease)
            if unanswered_s > self.session_timeout_ms / 1000:
                await self.refresh_view()
                if self.view.version and self.node_id not in self.view.brokers:
                    self.fenced("the controller failed this session (seen in the bucket; the controller "
                                "does not answer)")
            return
        self._answered_at = time.monotonic()
        if self._noted_unanswered:
            self._noted_unanswered = False
            with contextlib.suppress(StoreUnavailable):
                await self.store.delete(unanswered_key(self.session))
        if not reply.ok:
            self.fenced("the controller failed this session (missed heartbeats, or its store was unavailable)")
            return
        if reply.version > self.view.version:
            await self.refresh_view(reply.version)

    def _round_wait_s(self) -> float:
        """How long a heartbeat round waits for one answer, the controller's or the bucket's: half a session."""
        return max(self.interval_s, self.session_timeout_ms / 2000)

    async def _read_lease(self) -> Lease | None:
        """The lease from the bucket; None when it is missing or unreadable within :meth:`_round_wait_s`."""
        try:
            return await asyncio.wait_for(self.remote.lease(), self._round_wait_s())
        except TimeoutError:
            return None

    async def _note_unanswered(self, lease: Lease) -> None:
        """Tell the controller, through the bucket, that it does not answer us (it may be the one cut off)."""
        note = {"node": self.node_id, "holder": lease.holder, "at_ms": now_ms()}
        try:
            await asyncio.wait_for(self.store.put(unanswered_key(self.session), json.dumps(note).encode()),
                                   self._round_wait_s())
            self._noted_unanswered = True
        except (StoreUnavailable, TimeoutError):
            pass

    def fenced(self, reason: str) -> None:
        if self.leaving:
            return  # we are leaving on purpose: the controller forgetting this session is expected
        log.error("stopping: session fenced", reason=reason)
        self.is_fenced = True
        self._on_fenced()
