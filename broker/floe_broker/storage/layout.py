"""Where everything lives in the bucket: the one place that knows key names.

The controller (fencing, leases, metadata), the log (WAL writer, recovery,
checkpoints, consolidation) and WAL garbage collection all address the same
objects; keeping the key scheme here lets them agree without importing each
other, and makes the bucket readable from this file alone::

    meta/cluster                         cluster metadata snapshot (controller writes, CAS, now and then)
    meta/log/<version>                   the metadata delta making <version> (controller, create-only)
    meta/controller                      the controller lease
    meta/partitions/<topic-id>/<p>       a partition's checkpoint (open, close, move)
    meta/checkpoints/<node>/<session>/<seq>  a checkpoint batch: every led partition of a session
    meta/unanswered/<session>            a member's note that the controller stopped answering it
    wal/<node>/<session>/<seq>           a WAL object (or a tombstone)
    data/s/<node>/<session>/<seq>        a consolidated object: many partitions' ranges
    data/<topic-id>/<p>/<base>-<epoch>   a one-partition data object (older layout, still read)

Sequence numbers and offsets are zero-padded so lexicographic listing is
numeric order.
"""

from __future__ import annotations

CLUSTER_KEY = "meta/cluster"
LEASE_KEY = "meta/controller"
CHECKPOINT_PREFIX = "meta/partitions/"
METADATA_LOG_PREFIX = "meta/log/"
BATCH_PREFIX = "meta/checkpoints/"
UNANSWERED_PREFIX = "meta/unanswered/"
WAL_PREFIX = "wal/"
DATA_PREFIX = "data/"
CONSOLIDATED_PREFIX = "data/s/"

# Content of a tombstone: the controller creates it, create-only, at a fenced
# session's next WAL key, so that session can never commit that seq (I3, docs/architecture.md#i3-fencing).
TOMBSTONE = b"FLOE-TOMBSTONE"


def wal_prefix(node: int, session: str) -> str:
    return f"{WAL_PREFIX}{node}/{session}/"


def wal_key(node: int, session: str, seq: int) -> str:
    return f"{WAL_PREFIX}{node}/{session}/{seq:012d}"


def seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def session_of(key: str) -> str:
    """The writing session of a WAL key."""
    return key.split("/")[2]


def data_key(topic_id: str, partition: int, base: int) -> str:
    return f"data/{topic_id}/{partition}/{base:020d}"


def batch_prefix(node: int, session: str) -> str:
    return f"{BATCH_PREFIX}{node}/{session}/"


def batch_key(node: int, session: str, seq: int) -> str:
    """A session's checkpoint batch ``seq``; create-only, so a batch never changes once written."""
    return f"{BATCH_PREFIX}{node}/{session}/{seq:012d}"


def consolidated_prefix(node: int, session: str) -> str:
    return f"{CONSOLIDATED_PREFIX}{node}/{session}/"


def consolidated_key(node: int, session: str, seq: int) -> str:
    """A consolidated object ``seq`` of one session: ranges of many partitions, create-only."""
    return f"{CONSOLIDATED_PREFIX}{node}/{session}/{seq:012d}"


def owner_session(key: str) -> str:
    """The writing session of a checkpoint batch or consolidated object key."""
    return key.split("/")[3]


def is_consolidated(key: str) -> bool:
    return key.startswith(CONSOLIDATED_PREFIX)


def checkpoint_key(topic_id: str, partition: int) -> str:
    return f"{CHECKPOINT_PREFIX}{topic_id}/{partition}"


def metadata_delta_key(version: int) -> str:
    """The delta that makes metadata ``version`` from ``version - 1`` (create-only, by the controller)."""
    return f"{METADATA_LOG_PREFIX}{version:020d}"


def metadata_delta_version(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def unanswered_key(session: str) -> str:
    """A member's note, written while the controller does not answer its heartbeats (JSON)."""
    return f"{UNANSWERED_PREFIX}{session}"
