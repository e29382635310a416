"""Prometheus metric declarations (no logic), all named ``floe_*``.

Cardinality is bounded: labels are small enums (operation, object kind, API
name) or, for per-partition series, switchable off with
``--per-partition-metrics=false``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- object store -----------------------------------------------------------
# kind: what the key holds (storage/instrumented.key_kind): wal, data, checkpoint, cluster,
# lease, meta (other meta/ keys) or other; a small fixed set.
STORE_REQUESTS = Counter(
    "floe_objectstore_requests_total",
    "Object-store requests by operation and key kind",
    ["op", "kind"],
)
STORE_ERRORS = Counter(
    "floe_objectstore_errors_total",
    "Object-store requests that failed (5xx, timeouts, connection errors)",
    ["op", "kind"],
)
STORE_BYTES_READ = Counter(
    "floe_objectstore_read_bytes_total", "Bytes read from the object store", ["kind"]
)
STORE_BYTES_WRITTEN = Counter(
    "floe_objectstore_written_bytes_total", "Bytes written to the object store", ["kind"]
)
STORE_LATENCY = Histogram(
    "floe_objectstore_request_seconds",
    "Object-store request latency",
    ["op"],
    buckets=LATENCY_BUCKETS,
)
# Size of each object a PUT writes: what an object store's per-request price is spread over.
OBJECT_SIZE_BUCKETS = tuple(float(1 << n) for n in range(8, 27))  # 256 B .. 64 MiB
STORE_PUT_SIZE = Histogram(
    "floe_objectstore_put_bytes",
    "Size of the objects written, by key kind",
    ["kind"],
    buckets=OBJECT_SIZE_BUCKETS,
)

# --- Kafka requests ---------------------------------------------------------
REQUESTS = Counter("floe_requests_total", "Kafka requests by API", ["api"])
REQUEST_ERRORS = Counter(
    "floe_request_errors_total", "Kafka partition/topic-level error codes returned", ["api", "error"]
)
QUOTA_THROTTLED = Counter("floe_quota_throttled_requests_total", "Requests over a client quota, by API",
                          ["api"])
REQUEST_LATENCY = Histogram(
    "floe_request_seconds", "Kafka request latency by API", ["api"], buckets=LATENCY_BUCKETS
)
CONNECTIONS = Gauge("floe_connections", "Open Kafka client connections")
BAD_FRAMES = Counter(
    "floe_bad_frames_total", "Connections closed because of a malformed or oversized frame"
)

# --- data path --------------------------------------------------------------
BYTES_IN = Counter("floe_bytes_in_total", "Record-batch bytes appended (produce)")
RECORDS_IN = Counter("floe_records_in_total", "Records appended (produce)")
BYTES_OUT = Counter("floe_bytes_out_total", "Record-batch bytes served (fetch)")
RECORDS_OUT = Counter("floe_records_out_total", "Records served (fetch; whole batches, as sent)")
PARTITION_BYTES_IN = Counter(
    "floe_partition_bytes_in_total", "Record-batch bytes appended per partition", ["topic", "partition"]
)
PARTITION_BYTES_OUT = Counter(
    "floe_partition_bytes_out_total", "Record-batch bytes served per partition", ["topic", "partition"]
)
PARTITION_RECORDS_IN = Counter(
    "floe_partition_records_in_total", "Records appended per partition", ["topic", "partition"]
)
PARTITION_RECORDS_OUT = Counter(
    "floe_partition_records_out_total", "Records served per partition", ["topic", "partition"]
)
# Set by the leader once a produce is durable; with fetch offsets or committed
# offsets it gives the lag per partition.
HIGH_WATERMARK = Gauge(
    "floe_partition_high_watermark", "High watermark per partition", ["topic", "partition"]
)
PARTITIONS_LED = Gauge("floe_partitions_led", "Partitions this broker leads")
# floe_group_committed_offset and floe_group_lag come from a collector (group_metrics.py) that
# reads the coordinator at scrape time, so a group that moves away leaves no stale series here.

WAL_PUTS = Counter("floe_wal_puts_total", "WAL objects written")
WAL_BYTES = Counter("floe_wal_bytes_total", "Bytes written in WAL objects")
WAL_PUT_LATENCY = Histogram(
    "floe_wal_put_seconds", "Latency of one WAL object PUT (including retries)", buckets=LATENCY_BUCKETS
)
WAL_PENDING_BYTES = Gauge("floe_wal_pending_bytes", "Bytes waiting for the next WAL flush")
# reason: interval (the flush's time was up), size (flush bytes reached), barrier (a move or
# checkpoint needed everything durable now). Says which bound of the flush profile is binding.
WAL_FLUSHES = Counter("floe_wal_flushes_total", "WAL flushes cut, by reason", ["reason"])

CACHE_HITS = Counter("floe_block_cache_hits_total", "Block-cache hits on the read path")
CACHE_MISSES = Counter("floe_block_cache_misses_total", "Block-cache misses on the read path")

BROKER_STATE = Gauge(
    "floe_broker_state", "1 for the broker's current state", ["state"]
)

# Key compaction (cleanup.policy=compact): passes, bytes read and kept, and the key map's largest size.
KEY_COMPACTION_PASSES = Counter("floe_key_compaction_passes_total", "Key-compaction passes swapped in")
KEY_COMPACTION_BYTES = Counter(
    "floe_key_compaction_bytes_total", "Key-compaction bytes read (in) and written (out)", ["direction"]
)
KEY_COMPACTION_MAP_PEAK_BYTES = Gauge(
    "floe_key_compaction_map_peak_bytes", "Largest key map of a key-compaction pass since start (estimated)"
)

# Cluster links (link/): each mirrored partition's lag behind its source, and the bytes mirrored.
LINK_LAG_RECORDS = Gauge("floe_link_lag_records", "Offsets a mirrored partition is behind its source",
                         ["link", "topic", "partition"])
LINK_LAG_SECONDS = Gauge("floe_link_lag_seconds", "Seconds since a mirrored partition was last caught up",
                         ["link", "topic", "partition"])
LINK_BYTES = Counter("floe_link_bytes_total", "Bytes of record batches mirrored from source clusters",
                     ["link", "topic"])

# --- object-store health (storage.health) --------------------------------------
STORE_STATE = Gauge(
    "floe_objectstore_state",
    "1 for the object store's current state: ok, degraded (some requests fail) or unavailable (all fail)",
    ["state"],
)

# Produce requests refused because the WAL buffer (--max-pending-bytes) stayed full for as long as
# a produce may wait for room: the object store is not keeping up. Clients retry them.
PRODUCE_BUFFER_FULL = Counter(
    "floe_produce_buffer_full_total", "Produce requests refused with NOT_ENOUGH_REPLICAS: the WAL buffer stayed full"
)
