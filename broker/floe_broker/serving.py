"""What the Kafka handlers talk to: one object satisfying ``handlers.context.BrokerContext``.

It only delegates, one line per member, to the module that owns each rule
(topics, leadership, membership, producer ids), so handlers see one flat
interface while the rules stay where they belong. It also gives the group
coordinator its journal: an ``__consumer_offsets`` partition this broker leads, and the
transaction coordinator its own: a ``__transaction_state`` partition.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from floe_api.internal import AlterScramCredentials, MetadataOp
from floe_api.public import MoveResult

from . import configs
from .cluster.client import ControllerClient
from .cluster.membership import Membership
from .cluster.metadata import ClusterState
from .cluster.producer_ids import ProducerIds
from .cluster.rpc import Rpc
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .group_journal import PartitionJournal
from .groups.coordinator import OFFSETS_TOPIC, GroupCoordinator
from .groups.state import Limits
from .leadership import Leadership
from .log.cache import BlockCache
from .log.manager import PartitionManager
from .log.partition import Partition
from .log.service import LogService
from .log.wal import WalWriter
from .topics import Topics
from .txn.coordinator import TXN_TOPIC, TxnCoordinator
from .txn.state import Limits as TxnLimits
from .txn_journal import TxnJournal, TxnLinks


class Serving:
    def __init__(self, config: BrokerConfig, cache: BlockCache, membership: Membership,
                 leadership: Leadership, controller: ControllerClient, *, rpc: Rpc | None = None) -> None:
        self.config = config
        self.cluster_id = config.cluster
        self.cache = cache
        self.membership = membership
        self.leadership = leadership
        self.controller = controller
        self.topics = Topics(controller, membership.state, offsets_topic_partitions=config.offsets_topic_partitions,
                             txn_topic_partitions=config.transaction_state_partitions)
        self.producer_ids = ProducerIds(controller, floor=lambda: membership.state().mirrored_producer_id_max)
        self.fetch_sessions = FetchSessionCache(config.max_incremental_fetch_session_cache_slots)
        # Set by the broker once it joined and started its WAL (handlers run only after that).
        self.node_id = -1
        self.partitions: PartitionManager | None = None
        self.log: LogService = None  # type: ignore[assignment]
        self.groups = GroupCoordinator(
            self.group_journal,
            self.offsets_partitions,
            Limits(
                min_session_timeout_ms=config.group_min_session_timeout_ms,
                max_session_timeout_ms=config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
                max_size=config.group_max_size,
            ),
            snapshot_after=config.offsets_snapshot_records,
        )
        self.txn_links = TxnLinks(state=self.state, node_id=lambda: self.node_id, rpc=rpc,
                                  leader_partition=self.leader_partition, log=lambda: self.log, groups=self.groups,
                                  txn=lambda: self.txn)
        self.txn = TxnCoordinator(self.txn_journal, self.txn_partitions, self.txn_links,
                                  TxnLimits(max_timeout_ms=config.transaction_max_timeout_ms))

    def serve(self, node_id: int, wal: WalWriter, partitions: PartitionManager) -> None:
        self.node_id, self.partitions = node_id, partitions
        self.log = LogService(wal, partitions, self.cache)
        self.leadership.partitions = partitions

    # ---- the group coordinator's view of the log ---------------------------------------

    async def group_journal(self, index: int) -> PartitionJournal | None:
        part = await self.leader_partition(OFFSETS_TOPIC, index)
        if part is None or self.log is None:
            return None
        return PartitionJournal(part, self.log)

    def offsets_partitions(self) -> int:
        info = self.state().topics.get(OFFSETS_TOPIC)
        return len(info.partitions) if info else 0

    # ---- the transaction coordinator's view of the log ---------------------------------

    async def txn_journal(self, index: int) -> TxnJournal | None:
        part = await self.leader_partition(TXN_TOPIC, index)
        if part is None or self.log is None:
            return None
        return TxnJournal(part, self.log)

    def txn_partitions(self) -> int:
        info = self.state().topics.get(TXN_TOPIC)
        return len(info.partitions) if info else 0

    async def ensure_txn_topic(self) -> None:
        await self.topics.ensure_txn_topic()

    async def verify_txn(self, transactional_id: str, producer_id: int, epoch: int, topic: str,
                         index: int) -> ErrorCode:
        return await self.txn_links.verify(transactional_id, producer_id, epoch, topic, index)

    def local_high_watermark(self, topic: str, index: int) -> int | None:
        part = self.partitions.get(topic, index) if self.partitions is not None else None
        return part.high_watermark if part is not None else None

    # ---- BrokerContext -----------------------------------------------------------------

    def state(self) -> ClusterState:
        return self.membership.state()

    def controller_node(self) -> int:
        return self.membership.controller_node()

    def topic_config(self, topic: str, key: str) -> str | None:
        info = self.state().topics.get(topic)
        if info is None:
            return None
        # its override, else the dynamic broker default (per broker, cluster-wide), flag or default: live
        return configs.topic_value(self.config, self.state().broker_configs, self.node_id, info.configs, key)

    async def leader_partition(self, topic: str, index: int) -> Partition | None:
        return await self.leadership.leader_partition(topic, index)

    async def wait_for_new_leaders(self, keys: list[tuple[str, int]], within_s: float) -> None:
        await self.leadership.wait_for_new_leaders(keys, within_s)

    async def next_producer_id(self) -> int:
        return await self.producer_ids.next()

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[MoveResult]:
        return await self.controller.reassign(moves)

    async def ensure_offsets_topic(self) -> None:
        await self.topics.ensure_offsets_topic()

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], *, validate_only: bool = False
    ) -> None:
        await self.topics.create(name, partitions, configs, validate_only=validate_only)

    async def delete_topic(self, name: str) -> None:
        await self.topics.delete(name)

    async def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        await self.topics.add_partitions(name, total, validate_only=validate_only)

    async def apply_metadata(self, change: MetadataOp) -> None:
        await self.controller.apply(change)

    async def alter_topic_configs(
        self, name: str, changes: list[tuple[str, int, str | None]], *, validate_only: bool = False
    ) -> None:
        await self.topics.alter_configs(name, changes, validate_only=validate_only)

    async def alter_scram_credentials(self, change: AlterScramCredentials) -> None:
        await self.controller.apply(change)
