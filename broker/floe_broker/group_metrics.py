"""Committed offsets and lag per group and partition, read from the coordinator at scrape time.

``floe_group_committed_offset`` is exported by the broker coordinating the
group; ``floe_group_lag`` (high watermark minus committed offset) where that
broker also leads the partition. Elsewhere, lag is the PromQL difference
``floe_partition_high_watermark - on(topic, partition) group_right floe_group_committed_offset``.
Both are per-partition series, so they follow ``--per-partition-metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .groups.coordinator import GroupCoordinator


class GroupOffsetsCollector(Collector):
    def __init__(self, groups: GroupCoordinator, high_watermark: Callable[[str, int], int | None]) -> None:
        self.groups = groups
        self.high_watermark = high_watermark  # (topic, partition) -> HWM if led here, else None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        committed = GaugeMetricFamily("floe_group_committed_offset", "Committed offset per group and partition",
                                      labels=["group", "topic", "partition"])
        lag = GaugeMetricFamily("floe_group_lag", "High watermark minus committed offset (partitions led here)",
                                labels=["group", "topic", "partition"])
        for group in list(self.groups.all_groups()):
            for (topic, partition), entry in list(group.offsets.items()):
                labels = [group.group_id, topic, str(partition)]
                committed.add_metric(labels, entry.offset)
                hwm = self.high_watermark(topic, partition)
                if hwm is not None:
                    lag.add_metric(labels, max(hwm - entry.offset, 0))
        yield committed
        yield lag
