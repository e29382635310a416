"""Fetch sessions (KIP-227): a consumer of many partitions sends and gets only what changed.

Without a session, every Fetch names every partition with its offset and every
answer carries every partition, data or not: with 1,000 partitions that is
tens of kilobytes each way per poll for nothing. A session remembers the
partitions and their fetch offsets on the broker, so

* a **full** fetch (session epoch 0) names every partition and opens a session
  (the answer carries its id), or closes one (epoch -1, no new session);
* an **incremental** fetch (the session's id and its next epoch) names only
  the partitions added or whose fetch offset changed, and the ones to forget;
* an incremental **answer** carries only the partitions with something new:
  records, an error, or a high watermark, last stable offset or log start
  offset other than the one last sent. A partition that moved away answers
  NOT_LEADER_OR_FOLLOWER every time, so the client looks the leader up again
  and forgets it here.

A partition that returned records goes to the end of the session's order, so
under ``max_bytes`` the others get their turn (Kafka does the same).

The cache is per broker and bounded (``max.incremental.fetch.session.cache.slots``,
Kafka's default 1,000; 0 turns sessions off, every answer has session id 0 and
clients fall back to full fetches). When it is full, a new session takes the
slot of the least recently used session idle for at least
:data:`EVICTABLE_AFTER_S` (Kafka's two minutes), else of the session with the
fewest partitions if the new one has more; else it is not created (session
id 0), which clients handle by fetching in full. This is Kafka's rule without
its privileged follower sessions (there are no followers here).

Errors are Kafka's: an incremental fetch naming an unknown session gets
FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH, a
session opened with topic names used with topic ids (or the reverse)
FETCH_SESSION_TOPIC_ID_ERROR; each answer has session id 0 and no partitions,
and the client starts again with a full fetch.

Pure bookkeeping: no I/O, no protocol classes (requests and answers are read
by attribute name and answers rebuilt with ``dataclasses.replace``), so the
fetch handler keeps reading partitions and the hot path stays its own.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

INITIAL_EPOCH, FINAL_EPOCH = 0, -1
DEFAULT_SLOTS = 1000  # Kafka's max.incremental.fetch.session.cache.slots
EVICTABLE_AFTER_S = 120.0  # Kafka's minimum idle time before a session may be evicted
MIN_SESSION_VERSION = 7  # Fetch v7 introduced sessions
TOPIC_IDS_VERSION = 13  # from v13 topics are named by id

TopicKey = Any  # the topic's name (Fetch < v13) or its id (v13+), as the request names it


def next_epoch(epoch: int) -> int:
    """Kafka's epoch sequence: 1, 2, ... 2**31 - 1, then 1 again (0 and -1 are reserved)."""
    return 1 if epoch >= 2**31 - 1 else epoch + 1


@dataclass(slots=True)
class Wanted:
    """One partition as the fetch handler reads it (the attributes of a request's FetchPartition)."""

    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    log_start_offset: int = -1
    # what the last answer sent, to tell whether the next one must carry this partition
    high_watermark: int = -2
    last_stable_offset: int = -2
    sent_log_start: int = -2


@dataclass(slots=True)
class WantedTopic:
    """One topic as the fetch handler reads it (the attributes of a request's FetchTopic)."""

    topic: str | None
    topic_id: Any
    partitions: list[Wanted]


@dataclass
class Session:
    id: int
    uses_topic_ids: bool
    epoch: int = 1  # the epoch the next incremental fetch must carry
    last_used: float = 0.0
    partitions: OrderedDict[tuple[TopicKey, int], Wanted] = field(default_factory=OrderedDict)
    names: dict[TopicKey, str | None] = field(default_factory=dict)  # topic key -> name (None when by id)


@dataclass
class FetchContext:
    """What one Fetch request does with sessions: the partitions to read, and how to answer."""

    error: ErrorCode = ErrorCode.none
    topics: list[WantedTopic] | list[Any] = field(default_factory=list)
    session: Session | None = None  # the session this request uses or creates
    full: bool = True
    uses_topic_ids: bool = False
    _cache: FetchSessionCache | None = None

    def answer(self, responses: Iterable[Any]) -> tuple[int, list[Any]]:
        """The session id and the topics for the response, from the handler's per-topic answers.

        A full fetch answers everything (and opens its session here, once the answer
        is known); an incremental one only the partitions with something new.
        """
        responses = list(responses)
        if self.full:
            if self._cache is None or self.session is None:
                return 0, responses
            self._remember(responses, select=False)
            return (self.session.id if self._cache.admit(self.session) else 0), responses
        return (self.session.id if self.session else 0), self._remember(responses, select=True)

    def _remember(self, responses: list[Any], *, select: bool) -> list[Any]:
        assert self.session is not None
        session, out = self.session, []
        for topic in responses:
            key = topic.topic_id if self.uses_topic_ids else topic.topic
            kept = []
            for p in topic.partitions:
                cached = session.partitions.get((key, p.partition_index))
                if cached is None:
                    continue
                has_records = len(p.records or b"") > 0
                must = has_records or p.error_code != ErrorCode.none \
                    or p.high_watermark != cached.high_watermark \
                    or p.last_stable_offset != cached.last_stable_offset \
                    or p.log_start_offset != cached.sent_log_start
                if p.error_code != ErrorCode.none:
                    cached.high_watermark = -2  # an error is answered until it clears, and after
                else:
                    cached.high_watermark, cached.last_stable_offset = p.high_watermark, p.last_stable_offset
                    cached.sent_log_start = p.log_start_offset
                if has_records and select:
                    session.partitions.move_to_end((key, p.partition_index))
                if must or not select:
                    kept.append(p)
            if kept or not select:
                out.append(dataclasses.replace(topic, partitions=tuple(kept)))
        return out


class FetchSessionCache:
    """This broker's fetch sessions, at most ``slots`` of them (see the module docstring)."""

    def __init__(self, slots: int = DEFAULT_SLOTS, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.slots = slots
        self._clock = clock
        self._rng = rng or random.Random()
        self._sessions: OrderedDict[int, Session] = OrderedDict()  # least recently used first
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> Session | None:
        return self._sessions.get(session_id)

    def context(self, version: int, req: Any) -> FetchContext:
        """How to serve this Fetch request: the partitions to read, and the session to answer with."""
        uses_ids = version >= TOPIC_IDS_VERSION
        session_id = getattr(req, "session_id", 0) if version >= MIN_SESSION_VERSION else 0
        epoch = getattr(req, "session_epoch", FINAL_EPOCH) if version >= MIN_SESSION_VERSION else FINAL_EPOCH
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id:
                self._remove(session_id)
            if epoch == FINAL_EPOCH or self.slots <= 0:
                return FetchContext(topics=list(req.topics), uses_topic_ids=uses_ids)
            fresh = Session(id=0, uses_topic_ids=uses_ids)
            self._add(fresh, req.topics)
            return FetchContext(topics=list(req.topics), session=fresh, uses_topic_ids=uses_ids, _cache=self)
        session = self._sessions.get(session_id)
        if session is None:
            return FetchContext(error=ErrorCode.fetch_session_id_not_found)
        if session.epoch != epoch:
            return FetchContext(error=ErrorCode.invalid_fetch_session_epoch)
        if session.uses_topic_ids != uses_ids:
            return FetchContext(error=ErrorCode.fetch_session_topic_id_error)
        self._add(session, req.topics)
        for forgotten in getattr(req, "forgotten_topics_data", ()) or ():
            key = forgotten.topic_id if uses_ids else forgotten.topic
            for index in forgotten.partitions:
                session.partitions.pop((key, index), None)
        if not session.partitions:
            self._remove(session.id)
            return FetchContext(topics=[], uses_topic_ids=uses_ids)
        session.epoch = next_epoch(session.epoch)
        session.last_used = self._clock()
        self._sessions.move_to_end(session.id)
        return FetchContext(topics=self._topics_of(session), session=session, full=False,
                            uses_topic_ids=uses_ids, _cache=self)

    # ---- the session's partitions -----------------------------------------------------

    @staticmethod
    def _add(session: Session, topics: Iterable[Any]) -> None:
        """Add or update the partitions a request names (their fetch offsets and limits)."""
        for topic in topics:
            key = topic.topic_id if session.uses_topic_ids else topic.topic
            session.names.setdefault(key, getattr(topic, "topic", None))
            for fp in topic.partitions:
                cached = session.partitions.get((key, fp.partition))
                if cached is None:
                    session.partitions[(key, fp.partition)] = Wanted(
                        fp.partition, fp.fetch_offset, fp.partition_max_bytes,
                        getattr(fp, "current_leader_epoch", -1), getattr(fp, "log_start_offset", -1))
                else:
                    cached.fetch_offset, cached.partition_max_bytes = fp.fetch_offset, fp.partition_max_bytes
                    cached.current_leader_epoch = getattr(fp, "current_leader_epoch", -1)
                    cached.log_start_offset = getattr(fp, "log_start_offset", -1)

    @staticmethod
    def _topics_of(session: Session) -> list[WantedTopic]:
        """Every partition of the session, grouped by topic in the session's order."""
        out: list[WantedTopic] = []
        for (key, _), wanted in session.partitions.items():
            if not out or (out[-1].topic_id if session.uses_topic_ids else out[-1].topic) != key:
                name = session.names.get(key)
                out.append(WantedTopic(topic=None if session.uses_topic_ids else name,
                                       topic_id=key if session.uses_topic_ids else None, partitions=[]))
            out[-1].partitions.append(wanted)
        return out

    # ---- slots ---------------------------------------------------------------------------

    def admit(self, session: Session) -> bool:
        """Give a new session a slot (evicting one if Kafka's rule allows); False: no session."""
        if self.slots <= 0 or not session.partitions:
            return False
        now = self._clock()
        if len(self._sessions) >= self.slots and not self._evict_for(session, now):
            return False
        session.id = self._new_id()
        session.last_used = now
        self._sessions[session.id] = session
        return True

    def _evict_for(self, new: Session, now: float) -> bool:
        oldest_id, oldest = next(iter(self._sessions.items()))
        if now - oldest.last_used >= EVICTABLE_AFTER_S:
            victim = oldest_id
        else:
            victim, smallest = min(((sid, s) for sid, s in self._sessions.items()),
                                   key=lambda kv: (len(kv[1].partitions), kv[1].last_used))
            if len(smallest.partitions) >= len(new.partitions):
                return False
        self._remove(victim)
        self.evicted += 1
        return True

    def _new_id(self) -> int:
        while True:
            candidate = self._rng.randint(1, 2**31 - 1)
            if candidate not in self._sessions:
                return candidate

    def _remove(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)
