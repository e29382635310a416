"""Floe's topics follow the source's: the chosen topics created with the source's partition count and
configs, new source partitions added, config changes copied, until the topic is promoted.

Run by the controller's broker only, so two brokers never race to create the
same topic. A Floe topic of the same name that no link created is left alone
(it is not linked) and reported once in the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from floe_api.internal import AddPartitions, AlterConfigs, ConfigChange, CreateTopic, MetadataOp
from floe_api.links import PROMOTED, LinkRecord, LinkTopics

from ..cluster.metadata import ClusterState
from ..configs.topic_configs import TOPIC_CONFIGS
from .source import SourceCluster

log = structlog.get_logger(__name__)


def followed_configs(configs: dict[str, str]) -> dict[str, str]:
    """The source configs Floe knows (a config Floe has never heard of is not copied)."""
    return {k: v for k, v in configs.items() if k in TOPIC_CONFIGS}


async def follow_topics(name: str, link: LinkRecord, source: SourceCluster, state: Callable[[], ClusterState],
                        apply: Callable[[MetadataOp], Awaitable[None]], warned: set[str]) -> None:
    counts = await source.topics()
    current = state()
    following = [t for t in counts if t not in link.topics or t not in current.topics
                 or link.topics[t].state(len(current.topics[t].partitions)) != PROMOTED]
    configs = await source.topic_configs(following)
    for topic in following:
        wanted = followed_configs(configs.get(topic, {}))
        info = current.topics.get(topic)
        if info is None:
            log.info("creating linked topic", link=name, topic=topic, partitions=counts[topic], configs=wanted)
            await apply(CreateTopic(name=topic, partitions=counts[topic], configs=wanted))
            await apply(LinkTopics(name=name, topics=[topic]))
            continue
        if topic not in link.topics:
            if topic not in warned:
                warned.add(topic)
                log.warning("a topic of that name exists and is not linked; not mirrored", link=name, topic=topic)
            continue
        if counts[topic] > len(info.partitions):
            log.info("source partitions added", link=name, topic=topic, partitions=counts[topic])
            await apply(AddPartitions(name=topic, total=counts[topic]))
        changes = [ConfigChange(key=k, kind=0, value=v) for k, v in wanted.items() if info.configs.get(k) != v]
        changes += [ConfigChange(key=k, kind=1) for k in info.configs if k not in wanted]
        if changes:
            log.info("source topic configs changed", link=name, topic=topic, changes=[c.key for c in changes])
            await apply(AlterConfigs(name=topic, changes=changes))
