"""API key -> handler table; ApiVersions is derived from it.

Version ranges are what Floe implements *and* ``kio`` can encode. Kafka 4's
protocol floor applies (e.g. Produce v3+, Fetch v4+), which every client we
test (librdkafka 2.x, kafka-python 3, aiokafka 0.14, Java 3.x/4.x) negotiates.

Error handling follows the protocol: an ApiVersions request at a version we
do not know gets a v0 response with UNSUPPORTED_VERSION (so the client can
retry lower); any other undecodable request closes the connection with one
log line (``FrameError``), and never affects other connections.

Once a request is decoded it is always answered. An exception escaping its
handler becomes an error response for that request alone, built from the
request (``protocol.error_response``): the exception's own code for a
``KafkaError``, UNKNOWN_SERVER_ERROR for anything else (with one log line).
The connection stays up for the next request.

Before a handler runs, the dispatcher makes the request's cluster-level
authorization check (``handlers.authz``; per-topic and per-group checks are the
handlers') and counts produce and fetch bytes against client quotas
(``quota_gate``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from . import errors, metrics
from .handlers import acls, admin, authz, fetch, groups, meta, produce, producer_id, quotas, reassign, sasl, scram_users
from .handlers import txn as txn_handlers
from .handlers.consumer_groups import consumer_group_describe, consumer_group_heartbeat
from .handlers.context import CLIENT, BrokerContext
from .handlers.delete_records import delete_records
from .handlers.describe_log_dirs import describe_log_dirs
from .handlers.describe_topic_partitions import describe_topic_partitions
from .handlers.elect_leaders import elect_leaders
from .handlers.list_offsets import list_offsets
from .handlers.offset_for_leader_epoch import offset_for_leader_epoch
from .ordering import CURRENT_TURN
from .protocol import codec
from .protocol.error_response import error_response
from .quota_gate import QuotaGate, with_throttle
from .security.principal import PRINCIPAL, Principal
from .security.session import SESSION

log = structlog.get_logger(__name__)

Handler = Callable[[BrokerContext, int, Any], Awaitable[Any]]
PRODUCE, FETCH = 0, 1

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 18: "api_versions",
    19: "create_topics", 20: "delete_topics", 32: "describe_configs", 37: "create_partitions",
    44: "incremental_alter_configs", 60: "describe_cluster", 45: "alter_partition_reassignments",
    46: "list_partition_reassignments", 22: "init_producer_id",
    10: "find_coordinator", 11: "join_group", 12: "heartbeat", 13: "leave_group", 14: "sync_group",
    8: "offset_commit", 9: "offset_fetch", 15: "describe_groups", 16: "list_groups", 42: "delete_groups",
    47: "offset_delete", 17: "sasl_handshake", 36: "sasl_authenticate",
    50: "describe_user_scram_credentials", 51: "alter_user_scram_credentials",
    29: "describe_acls", 30: "create_acls", 31: "delete_acls",
    48: "describe_client_quotas", 49: "alter_client_quotas",
    24: "add_partitions_to_txn", 25: "add_offsets_to_txn", 26: "end_txn", 28: "txn_offset_commit",
    61: "describe_producers", 65: "describe_transactions", 66: "list_transactions",
    33: "alter_configs", 74: "list_config_resources",
    21: "delete_records",
    68: "consumer_group_heartbeat", 69: "consumer_group_describe",
    75: "describe_topic_partitions", 43: "elect_leaders", 35: "describe_log_dirs",
    23: "offset_for_leader_epoch",
}


class Dispatcher:
    def __init__(self, ctx: BrokerContext, extra: dict[int, tuple[int, int, Handler]] | None = None) -> None:
        self.ctx = ctx
        self.table: dict[int, tuple[int, int, Handler]] = {
            0: (3, 13, produce.produce),
            1: (4, 17, fetch.fetch),
            2: (1, 8, list_offsets),
            3: (1, 12, meta.metadata),
            18: (0, 3, self._api_versions),
            19: (2, 7, admin.create_topics),
            20: (1, 6, admin.delete_topics),
            32: (1, 4, admin.describe_configs),
            37: (0, 3, admin.create_partitions),
            44: (0, 1, admin.incremental_alter_configs),
            60: (0, 1, meta.describe_cluster),
            45: (0, 0, reassign.alter_partition_reassignments),
            46: (0, 0, reassign.list_partition_reassignments),
            22: (0, 4, producer_id.init_producer_id),
            10: (0, 6, groups.find_coordinator),
            11: (0, 9, groups.join_group),
            12: (0, 4, groups.heartbeat),
            13: (0, 5, groups.leave_group),
            14: (0, 5, groups.sync_group),
            8: (2, 9, groups.offset_commit),
            9: (1, 9, groups.offset_fetch),
            15: (0, 6, groups.describe_groups),
            16: (0, 5, groups.list_groups),
            42: (0, 2, groups.delete_groups),
            47: (0, 0, groups.offset_delete),
            17: (0, 1, sasl.sasl_handshake),
            36: (0, 2, sasl.sasl_authenticate),
            50: (0, 0, scram_users.describe_user_scram_credentials),
            51: (0, 0, scram_users.alter_user_scram_credentials),
            29: (1, 3, acls.describe_acls),
            30: (1, 3, acls.create_acls),
            31: (1, 3, acls.delete_acls),
            48: (0, 1, quotas.describe_client_quotas),
            49: (0, 1, quotas.alter_client_quotas),
            24: (0, 3, txn_handlers.add_partitions_to_txn),
            25: (0, 4, txn_handlers.add_offsets_to_txn),
            26: (0, 4, txn_handlers.end_txn),
            28: (0, 4, txn_handlers.txn_offset_commit),
            61: (0, 0, txn_handlers.describe_producers),
            65: (0, 0, txn_handlers.describe_transactions),
            66: (0, 1, txn_handlers.list_transactions),
            33: (0, 2, admin.alter_configs),
            74: (0, 1, admin.list_config_resources),
            21: (0, 2, delete_records),
            68: (0, 1, consumer_group_heartbeat),
            69: (0, 1, consumer_group_describe),
            75: (0, 0, describe_topic_partitions),
            43: (1, 2, elect_leaders),
            35: (1, 4, describe_log_dirs),
            23: (2, 4, offset_for_leader_epoch),
        }
        self.table.update(extra or {})
        self.supported = {k: (lo, hi) for k, (lo, hi, _) in self.table.items()}
        self.quotas = QuotaGate(ctx)

    async def _api_versions(self, ctx: BrokerContext, version: int, req: Any) -> Any:
        return meta.api_versions(version, self.supported)

    async def __call__(self, frame: bytes | memoryview, peer: str) -> codec.Frame | None:
        try:
            return await self._handle(frame, peer)
        finally:
            turn = CURRENT_TURN.get()
            if turn is not None:
                turn.release()

    async def _handle(self, frame: bytes | memoryview, peer: str) -> codec.Frame | None:
        try:
            request = codec.decode_request(frame, self.supported)
        except errors.UnsupportedVersion as exc:
            if exc.api_key == 18:
                body = meta.api_versions(0, self.supported, ErrorCode.unsupported_version)
                return codec.encode_response(18, 0, exc.correlation_id, body)
            raise errors.FrameError(str(exc)) from None
        api = API_NAMES.get(request.api_key, str(request.api_key))
        session = SESSION.get()
        if session is not None:
            # On a SASL listener only the authentication APIs come before authentication (Kafka closes too).
            if not session.may_serve(request.api_key):
                raise errors.FrameError(f"{api} before SASL authentication on listener {session.listener}")
            if session.expired():
                raise errors.FrameError(f"SASL session expired (connections.max.reauth.ms) on {session.listener}")
            PRINCIPAL.set(session.principal)
        metrics.REQUESTS.labels(api).inc()
        t0 = time.perf_counter()
        _, _, handler = self.table[request.api_key]
        CLIENT.set((request.client_id or "", "/" + peer.rpartition(":")[0]))
        if self.ctx.config.insecure_principal_from_client_id and request.client_id:
            PRINCIPAL.set(Principal("User", request.client_id))  # test-only seam until SASL names clients
        response: codec.Frame | None
        try:
            authz.require_request(self.ctx, request.api_key)
            produce_throttle = self.quotas.produce(request, len(frame), api) if request.api_key == PRODUCE else 0
            body = await handler(self.ctx, request.api_version, request.body)
            if body is None:
                response = None
            elif request.api_key == FETCH:
                response = self.quotas.fetch_response(request, body, api)
            else:
                if produce_throttle:
                    body = with_throttle(body, produce_throttle)
                response = codec.encode_response(request.api_key, request.api_version, request.correlation_id, body)
        except Exception as exc:
            response = self._failed(request, api, peer, exc)
        metrics.REQUEST_LATENCY.labels(api).observe(time.perf_counter() - t0)
        return response

    @staticmethod
    def _failed(request: codec.Request, api: str, peer: str, exc: Exception) -> codec.Frame | None:
        """The error response for a request whose handler raised, or None if acks=0 wants none."""
        if isinstance(exc, errors.KafkaError):
            code, message = ErrorCode(exc.code), exc.message
            log.info("request failed", api=api, version=request.api_version, client=request.client_id,
                     peer=peer, error_code=code.name, error=message)
        else:
            code, message = ErrorCode.unknown_server_error, "unexpected server error"
            log.error("request failed; answering UNKNOWN_SERVER_ERROR", api=api, version=request.api_version,
                      client=request.client_id, peer=peer, error=repr(exc), at=_origin(exc))
        metrics.REQUEST_ERRORS.labels(api, code.name).inc()
        if request.api_key == PRODUCE and request.body.acks == 0:
            return None  # acks=0 never gets a response; the client learns from its next metadata
        body = error_response(request.api_key, request.api_version, request.body, code, message)
        return codec.encode_response(request.api_key, request.api_version, request.correlation_id, body)


def _origin(exc: BaseException) -> str:
    """file:line where the exception was raised (the log line stays one line)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"

