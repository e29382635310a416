"""KIP-848 under ACLs, in process: READ on the group and DESCRIBE on every topic subscribed by name, as Kafka."""

from __future__ import annotations

import datetime
import uuid

from kio.schema.errors import ErrorCode

from floe_broker.dispatch import Dispatcher
from tests.inprocess.harness import started_broker
from tests.inprocess.wire import request as entity
from tests.security.test_acls import SECURED, _as, _creation

GROUP_T, TOPIC_T, LITERAL, READ, DESCRIBE, ALLOW = 3, 2, 3, 3, 8, 3


def heartbeat(group: str, *topics: str) -> object:
    return entity(68, 1, group_id=group, member_id=str(uuid.uuid4()), member_epoch=0,
                  rebalance_timeout=datetime.timedelta(seconds=30), subscribed_topic_names=list(topics),
                  topic_partitions=[])


async def test_heartbeat_needs_describe_on_each_topic_subscribed_by_name() -> None:
    async with started_broker(SECURED) as broker:
        await broker.serving.create_topic("open", 2, {})
        await broker.serving.create_topic("secret", 2, {})
        d = Dispatcher(broker.serving)
        created = await _as(d, "User:admin", 30, 3, entity(30, 3, creations=[
            _creation(GROUP_T, "g", LITERAL, READ, ALLOW), _creation(TOPIC_T, "open", LITERAL, DESCRIBE, ALLOW)]))
        assert all(r.error_code == ErrorCode.none for r in created.results)
        await _as(d, "User:admin", 10, 4, entity(10, 4, key_type=0, coordinator_keys=["g"]))  # the offsets topic
        refused = await _as(d, "User:alice", 68, 1, heartbeat("g", "open", "secret"))
        assert refused.error_code == ErrorCode.topic_authorization_failed
        other_group = await _as(d, "User:alice", 68, 1, heartbeat("h", "open"))
        assert other_group.error_code == ErrorCode.group_authorization_failed
        joined = await _as(d, "User:alice", 68, 1, heartbeat("g", "open"))
        assert joined.error_code == ErrorCode.none and joined.member_epoch == 1
        assert sorted(joined.assignment.topic_partitions[0].partitions) == [0, 1]
