"""What handlers may ask of the broker (implemented by ``app.Broker``).

Handlers stay thin: they translate between Kafka messages and these calls.
Typing them against a Protocol keeps ``handlers`` free of imports from
``app`` (imports go one way: app -> dispatch -> handlers -> log/cluster).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

from floe_api.internal import AlterScramCredentials, MetadataOp

from ..cluster.metadata import ClusterState
from ..config import BrokerConfig
from ..fetch_sessions import FetchSessionCache
from ..groups.coordinator import GroupCoordinator
from ..log.partition import Partition
from ..log.service import LogService
from ..txn.coordinator import TxnCoordinator

# (client id, client host) of the request being handled, set by the dispatcher
CLIENT: ContextVar[tuple[str, str]] = ContextVar("floe_client", default=("", ""))


class BrokerContext(Protocol):
    config: BrokerConfig
    groups: GroupCoordinator
    txn: TxnCoordinator
    node_id: int
    cluster_id: str
    log: LogService  # appends and reads; handlers never touch the WAL, partition manager or cache
    fetch_sessions: FetchSessionCache  # KIP-227 incremental fetches

    def state(self) -> ClusterState: ...

    def topic_config(self, topic: str, key: str) -> str | None: ...

    def controller_node(self) -> int:
        """Node id of the current controller (-1 while it changes)."""

    async def wait_for_new_leaders(self, keys: list[tuple[str, int]], within_s: float) -> None:
        """Return once none of these partitions is led here (a move committed), or at the timeout."""

    async def leader_partition(self, topic: str, index: int) -> Partition | None:
        """The open partition if this broker leads it (opening it if needed), else None."""

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], *, validate_only: bool = False
    ) -> None:
        """Raise TopicError on failure."""

    async def delete_topic(self, name: str) -> None: ...

    async def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` if it does not exist yet (TopicError on failure)."""

    async def ensure_txn_topic(self) -> None:
        """Create ``__transaction_state`` if it does not exist yet (TopicError on failure)."""

    async def verify_txn(self, transactional_id: str, producer_id: int, epoch: int, topic: str,
                         index: int) -> Any:
        """The coordinator's ErrorCode for a transactional batch to this partition (none: append it)."""

    async def next_producer_id(self) -> int: ...

    async def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None: ...

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[Any]:
        """Metadata-only leader moves (topic, partition, to node), at the controller."""

    async def apply_metadata(self, change: MetadataOp) -> None:
        """Commit one metadata change at the controller (NotController / RpcError on failure)."""

    async def alter_topic_configs(
        self, name: str, changes: list[tuple[str, int, str | None]], *, validate_only: bool = False
    ) -> None:
        """changes: (key, op 0=set 1=delete 2=append 3=subtract, value)."""

    async def alter_scram_credentials(self, change: AlterScramCredentials) -> None:
        """Commit SCRAM credential changes (keys only) at the controller; NotController or RpcError."""
