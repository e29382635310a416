"""Every error type of the broker, in one place at the bottom of the import graph.

Each carries what its catcher needs to decide: a Kafka error code where the
client is to be told (``KafkaError.code``), or a meaning a layer above turns
into one. The dispatcher answers any other exception escaping a handler with
UNKNOWN_SERVER_ERROR for that request (one log line) and keeps the connection.
This module imports nothing of Floe, so every layer may use it.
"""

from __future__ import annotations

# ---- answered to a Kafka client with an error code -------------------------------------


class KafkaError(Exception):
    """A failure that carries a Kafka error code and a message for the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TopicError(KafkaError):
    """A topic-level failure (create, delete, configs, partitions)."""


class SequenceError(KafkaError):
    """An idempotent producer's batch is out of sequence or from a stale epoch."""


class WriteBufferFull(KafkaError):
    """The WAL buffer stayed full (``--max-pending-bytes``) for as long as a produce may wait for room.

    Nothing of the request was appended. Answered with NOT_ENOUGH_REPLICAS:
    Kafka's "not written, retry" code, which librdkafka and the Java client
    retry without asking whether the records might have been written.
    """

    CODE = 19  # NOT_ENOUGH_REPLICAS

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


# ---- the wire ---------------------------------------------------------------------------


class FrameError(Exception):
    """The frame cannot be decoded; the connection must be closed."""


class UnsupportedVersion(Exception):
    """A known API at a version we do not serve."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"api_key={api_key} version={api_version} not supported")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class InvalidRecords(Exception):
    """The batch bytes are malformed or fail their CRC (CORRUPT_MESSAGE)."""


class RecordsTooLarge(Exception):
    """A batch is larger than the topic's max.message.bytes (MESSAGE_TOO_LARGE)."""


# ---- the log ------------------------------------------------------------------------------


class OffsetOutOfRange(Exception):
    """A read below the log start or above the high watermark."""


class NotLeader(Exception):
    """This broker no longer leads the partition (moving, moved, or fenced)."""


class Fenced(Exception):
    """This broker session was fenced by the controller; it must stop serving."""


class BadObject(Exception):
    """An object in the bucket does not have the expected layout."""


# ---- the object store ---------------------------------------------------------------------


class StoreError(Exception):
    """Base class of object-store errors."""


class NotFound(StoreError):
    """The key does not exist."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key exists (create-only) or its ETag changed (CAS)."""


class StoreUnavailable(StoreError):
    """The store did not answer usefully (5xx, timeout, connection). Outcome unknown."""


class StoreMisconfigured(StoreError):
    """The bucket does not exist, credentials are wrong, or access is denied.

    Raised by ``ObjectStore.check`` at start so the broker can exit with the
    reason instead of retrying forever.
    """


# ---- the cluster --------------------------------------------------------------------------


class StartupError(Exception):
    """Start-up cannot proceed (misconfigured store, port in use, ...)."""


class NotController(Exception):
    """This broker does not (or no longer) hold the controller lease."""


class RpcError(Exception):
    """A broker <-> controller call failed (unreachable, refused, or timed out)."""


class ClusterSecretRefused(RpcError):
    """The other broker answered 401: this broker's cluster secret is missing or not the cluster's.

    Retrying cannot help, so joining stops at once with this reason.
    """


# ---- groups ---------------------------------------------------------------------------------


class JournalClosed(Exception):
    """The partition behind a group journal is no longer led here."""


class NonEmptyGroup(Exception):
    """OffsetDelete on a live group whose subscriptions cannot be read (not a consumer group)."""
