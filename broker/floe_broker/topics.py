"""Topic rules: what a valid topic change is, checked before the controller is asked.

Requests are checked against this broker's view of the metadata, so a bad
request fails fast with the right Kafka error code and never reaches the
controller; valid ones are applied as typed metadata changes through the
:class:`~.cluster.client.ControllerClient`, wherever the controller is.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from kio.schema.errors import ErrorCode

from floe_api.internal import AddPartitions, AlterConfigs, ConfigChange, CreateTopic, DeleteTopic, MetadataOp

from .cluster.client import ControllerClient
from .cluster.metadata import ClusterState
from .configs import InvalidConfig
from .configs.resolve import validate_topic_configs
from .errors import NotController, RpcError, TopicError
from .groups.coordinator import OFFSETS_TOPIC
from .txn.coordinator import TXN_TOPIC

log = structlog.get_logger(__name__)

MAX_PARTITIONS_PER_TOPIC = 100_000
MAX_NAME_LENGTH = 249
# Committed offsets live until their group is deleted, so the offsets topic never expires data.
OFFSETS_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact"}
# Transaction state is kept until a transactional id is rewritten, like committed offsets.
TXN_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact"}
SET, DELETE = 0, 1  # the IncrementalAlterConfigs operations that make sense for scalar configs


def valid_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME_LENGTH and all(c.isalnum() or c in "._-" for c in name)


class Topics:
    def __init__(self, controller: ControllerClient, state: Callable[[], ClusterState], *,
                 offsets_topic_partitions: int, txn_topic_partitions: int = 16) -> None:
        self._controller = controller
        self._state = state
        self.offsets_topic_partitions = offsets_topic_partitions
        self.txn_topic_partitions = txn_topic_partitions

    async def create(self, name: str, partitions: int, configs: dict[str, str], *,
                     validate_only: bool = False) -> None:
        if not valid_name(name):
            raise TopicError(ErrorCode.invalid_topic_exception, f"invalid topic name {name!r}")
        if not 0 < partitions <= MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(ErrorCode.invalid_partitions, f"partition count {partitions} out of range")
        if name in self._state().topics:
            raise TopicError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        try:
            validate_topic_configs(configs)
        except InvalidConfig as exc:
            raise TopicError(ErrorCode.invalid_config, str(exc)) from None
        if validate_only:
            return
        await self._apply(CreateTopic(name=name, partitions=partitions, configs=configs))
        log.info("topic created", topic=name, partitions=partitions, configs=configs)

    async def delete(self, name: str) -> None:
        await self._apply(DeleteTopic(name=name))
        log.info("topic deleted", topic=name)

    async def add_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        info = self._state().topics.get(name)
        if info is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        if total <= len(info.partitions):
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"topic {name!r} has {len(info.partitions)} partitions; the count can only grow",
            )
        if total > MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(ErrorCode.invalid_partitions, f"partition count {total} out of range")
        if validate_only:
            return
        await self._apply(AddPartitions(name=name, total=total))

    async def alter_configs(self, name: str, changes: list[tuple[str, int, str | None]], *,
                            validate_only: bool = False) -> None:
        """``changes``: (key, IncrementalAlterConfigs operation, value), APPEND and SUBTRACT already resolved
        into SETs (``configs.resolve.incremental``)."""
        if name not in self._state().topics:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        for key, op, _ in changes:
            if op not in (SET, DELETE):
                raise TopicError(ErrorCode.invalid_config, f"operation {op} on {key} is not supported here")
        try:
            validate_topic_configs({k: v for k, op, v in changes if op == SET})
        except InvalidConfig as exc:
            raise TopicError(ErrorCode.invalid_config, str(exc)) from None
        if validate_only:
            return
        await self._apply(AlterConfigs(name=name, changes=[ConfigChange(key=k, kind=op, value=v)
                                                           for k, op, v in changes]))

    async def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` on first use."""
        if OFFSETS_TOPIC in self._state().topics:
            return
        try:
            await self._apply(CreateTopic(name=OFFSETS_TOPIC, partitions=self.offsets_topic_partitions,
                                          configs=OFFSETS_TOPIC_CONFIGS))
        except Exception as exc:
            if OFFSETS_TOPIC not in self._state().topics:
                raise TopicError(ErrorCode.coordinator_not_available,
                                 f"cannot create {OFFSETS_TOPIC}: {exc}") from exc

    async def ensure_txn_topic(self) -> None:
        """Create ``__transaction_state`` on first use (FindCoordinator for a transactional id)."""
        if TXN_TOPIC in self._state().topics:
            return
        try:
            await self._apply(CreateTopic(name=TXN_TOPIC, partitions=self.txn_topic_partitions,
                                          configs=TXN_TOPIC_CONFIGS))
        except Exception as exc:
            if TXN_TOPIC not in self._state().topics:
                raise TopicError(ErrorCode.coordinator_not_available, f"cannot create {TXN_TOPIC}: {exc}") from exc

    async def _apply(self, change: MetadataOp) -> None:
        try:
            await self._controller.apply(change)
        except NotController:
            raise TopicError(ErrorCode.not_controller, "no controller is available right now") from None
        except RpcError as exc:
            raise TopicError(ErrorCode.not_controller, f"controller unreachable: {exc}") from None
