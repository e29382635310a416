"""Consumer group offsets of a link's groups, copied from the source to Floe's coordinator.

Copied by the broker coordinating the group on Floe, as an ordinary simple
commit (no member, generation -1), so Kafka's rule applies: a group with live
members on Floe is not written. An offset only moves forward: once the
group's consumers commit on Floe, a source offset behind theirs is not copied
back over their progress. Only the link's own topics are copied.
"""

from __future__ import annotations

import time

import structlog

from ..groups.coordinator import GroupCoordinator
from ..groups.state import OffsetEntry
from .source import SourceCluster

log = structlog.get_logger(__name__)


async def sync_groups(source: SourceCluster, groups: GroupCoordinator, topics: set[str]) -> dict[str, int]:
    """Copy the chosen groups' newer offsets of ``topics``; returns group -> offsets copied.

    Groups this broker does not coordinate are left to the broker that does.
    """
    copied: dict[str, int] = {}
    for group in await source.groups():
        shard = await groups.shard_for(group)
        if shard is None:
            continue
        at_source = await source.group_offsets(group)
        here = shard.fetch_offsets(group)
        now = int(time.time() * 1000)
        newer = [(t, p, OffsetEntry(offset, -1, metadata, now)) for (t, p), (offset, metadata) in at_source.items()
                 if t in topics and (here.get((t, p)) is None or here[(t, p)].offset < offset)]
        if not newer:
            continue
        code = await shard.commit(group, member_id="", instance_id=None, generation=-1, offsets=newer)
        if code:
            log.info("group offsets not copied", group=group, reason=code.name)
            continue
        copied[group] = len(newer)
    return copied
