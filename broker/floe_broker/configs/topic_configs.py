"""Every topic config Kafka 4.x has, with what Floe does with each.

Names, types, defaults, validators and broker synonyms are Kafka's
(``TopicConfig``, ``LogConfig``). ``honoured`` says whether Floe acts on the
config; the others are validated, stored and described so that tools and
clients that set them (``min.insync.replicas``, ``segment.bytes``, ...) work,
but they have no effect: there are no broker-side replicas, segments are
object-store pieces, and every byte is already remote.
"""

from __future__ import annotations

from .definitions import INT64_MAX, ConfigDef, ConfigType, Synonym, at_least, between, each_of, one_of

B, S, INT, L, D, LIST = ConfigType.BOOLEAN, ConfigType.STRING, ConfigType.INT, ConfigType.LONG, ConfigType.DOUBLE, \
    ConfigType.LIST
WEEK_MS, DAY_MS = 7 * 24 * 3600 * 1000, 24 * 3600 * 1000
HOUR_MS, MINUTE_MS = 3600 * 1000, 60 * 1000
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
NO_REPLICAS = "accepted for compatibility: the object store holds the only copy, there are no broker replicas"
NO_SEGMENT_FILES = "accepted for compatibility: data lives in WAL and consolidated objects, not segment files"
ALL_REMOTE = "accepted for compatibility: all data is already in the object store"
COMPACTION = "read by key compaction (cleanup.policy=compact)"


def _throttled_replicas(name: str, value: object) -> str | None:
    items = value if isinstance(value, list) else []
    ok = items == ["*"] or all(":" in i and all(p.strip().isdigit() for p in i.split(":")) for i in items)
    return None if ok else "must be the literal '*' or a list of replicas in the following format: " \
        "[partitionId]:[brokerId],[partitionId]:[brokerId],..."


TOPIC_CONFIG_DEFS: tuple[ConfigDef, ...] = (
    ConfigDef("cleanup.policy", LIST, "delete",
              "The retention policy on old log segments: 'delete' discards them when their retention time or "
              "size limit is reached, 'compact' keeps the latest value of each key; both may be given.",
              each_of("compact", "delete"), honoured=True,
              note="delete: retention.ms/retention.bytes drop old data; compact: key compaction",
              synonyms=(Synonym("log.cleanup.policy"),)),
    ConfigDef("compression.gzip.level", INT, "-1", "The compression level when compression.type is gzip.",
              None, note="accepted for compatibility: batches are stored as the producer compressed them",
              synonyms=(Synonym("compression.gzip.level"),)),
    ConfigDef("compression.lz4.level", INT, "9", "The compression level when compression.type is lz4.",
              between(1, 17), note="accepted for compatibility: batches are stored as the producer compressed them",
              synonyms=(Synonym("compression.lz4.level"),)),
    ConfigDef("compression.type", S, "producer",
              "The final compression type for the topic; 'producer' keeps the codec the producer set.",
              one_of(*COMPRESSION_TYPES, case_insensitive=True),
              note="'producer' is what Floe does; other values are accepted, batches are never recompressed",
              synonyms=(Synonym("compression.type"),)),
    ConfigDef("compression.zstd.level", INT, "3", "The compression level when compression.type is zstd.",
              between(-131072, 22),
              note="accepted for compatibility: batches are stored as the producer compressed them",
              synonyms=(Synonym("compression.zstd.level"),)),
    ConfigDef("delete.retention.ms", L, str(DAY_MS),
              "How long delete tombstone markers are retained for compacted topics.",
              at_least(0), honoured=True, note=COMPACTION,
              synonyms=(Synonym("log.cleaner.delete.retention.ms"),)),
    ConfigDef("file.delete.delay.ms", L, "60000", "The time to wait before deleting a file from the filesystem.",
              at_least(0), note="accepted for compatibility: unreferenced objects are collected after "
              "wal_gc_grace_ms", synonyms=(Synonym("log.segment.delete.delay.ms"),)),
    ConfigDef("flush.messages", L, str(INT64_MAX), "Messages accumulated before an fsync of the log.",
              at_least(1), note="accepted for compatibility: every acknowledged batch is already in the object store",
              synonyms=(Synonym("log.flush.interval.messages"),)),
    ConfigDef("flush.ms", L, str(INT64_MAX), "Time before an fsync of the log is forced.",
              at_least(0), note="accepted for compatibility: the broker's group commit (log.flush.interval.ms) "
              "decides when a WAL object is written", synonyms=(Synonym("log.flush.interval.ms"),)),
    ConfigDef("follower.replication.throttled.replicas", LIST, "",
              "Replicas whose follower log replication is throttled.", _throttled_replicas, note=NO_REPLICAS),
    ConfigDef("index.interval.bytes", INT, "4096", "How often an offset index entry is added.",
              at_least(0), note=NO_SEGMENT_FILES, synonyms=(Synonym("log.index.interval.bytes"),)),
    ConfigDef("leader.replication.throttled.replicas", LIST, "",
              "Replicas whose leader log replication is throttled.", _throttled_replicas, note=NO_REPLICAS),
    ConfigDef("local.retention.bytes", L, "-2", "Bytes kept locally before tiered data is deleted locally.",
              at_least(-2), note=ALL_REMOTE, synonyms=(Synonym("log.local.retention.bytes"),)),
    ConfigDef("local.retention.ms", L, "-2", "Time kept locally before tiered data is deleted locally.",
              at_least(-2), note=ALL_REMOTE, synonyms=(Synonym("log.local.retention.ms"),)),
    ConfigDef("max.compaction.lag.ms", L, str(INT64_MAX),
              "The maximum time a message remains ineligible for compaction.",
              at_least(1), honoured=True, note=COMPACTION,
              synonyms=(Synonym("log.cleaner.max.compaction.lag.ms"),)),
    ConfigDef("max.message.bytes", INT, "1048588", "The largest record batch size allowed.",
              at_least(0), honoured=True, note="produce refuses larger batches with MESSAGE_TOO_LARGE",
              synonyms=(Synonym("message.max.bytes"),)),
    ConfigDef("message.timestamp.after.max.ms", L, str(HOUR_MS),
              "The largest difference allowed between a future message timestamp and the broker's time.",
              at_least(0), note="accepted for compatibility: timestamps are not checked",
              synonyms=(Synonym("log.message.timestamp.after.max.ms"),)),
    ConfigDef("message.timestamp.before.max.ms", L, str(INT64_MAX),
              "The largest difference allowed between a past message timestamp and the broker's time.",
              at_least(0), note="accepted for compatibility: timestamps are not checked",
              synonyms=(Synonym("log.message.timestamp.before.max.ms"),)),
    ConfigDef("message.timestamp.type", S, "CreateTime",
              "Whether the timestamp in a message is its create time or its log append time.",
              one_of("CreateTime", "LogAppendTime"), honoured=True,
              note="LogAppendTime: the leader stamps each batch header with its append time",
              synonyms=(Synonym("log.message.timestamp.type"),)),
    ConfigDef("min.cleanable.dirty.ratio", D, "0.5",
              "How much of the log may be uncompacted before it becomes eligible for compaction.",
              between(0, 1), honoured=True, note=COMPACTION,
              synonyms=(Synonym("log.cleaner.min.cleanable.ratio"),)),
    ConfigDef("min.compaction.lag.ms", L, "0", "The minimum time a message remains uncompacted in the log.",
              at_least(0), honoured=True, note=COMPACTION,
              synonyms=(Synonym("log.cleaner.min.compaction.lag.ms"),)),
    ConfigDef("min.insync.replicas", INT, "1", "The minimum number of replicas that must acknowledge a write.",
              at_least(1), note=NO_REPLICAS + " (an ack already means durable in the object store)",
              synonyms=(Synonym("min.insync.replicas"),)),
    ConfigDef("preallocate", B, "false", "Whether to preallocate the file on disk when creating a segment.",
              note=NO_SEGMENT_FILES, synonyms=(Synonym("log.preallocate"),)),
    ConfigDef("remote.log.copy.disable", B, "false", "Whether copying segments to remote storage is disabled.",
              note=ALL_REMOTE),
    ConfigDef("remote.log.delete.on.disable", B, "false",
              "Whether remote data is deleted when tiered storage is disabled on the topic.", note=ALL_REMOTE),
    ConfigDef("remote.storage.enable", B, "false", "Whether tiered storage is enabled for the topic.",
              note=ALL_REMOTE),
    ConfigDef("retention.bytes", L, "-1",
              "The size a partition may grow to before old data is discarded (-1: no limit).",
              honoured=True, note="old data beyond the size is dropped, a whole piece at a time",
              synonyms=(Synonym("log.retention.bytes"),)),
    ConfigDef("retention.ms", L, str(WEEK_MS),
              "How long data is retained before it is discarded (-1: no time limit).",
              at_least(-1), honoured=True, note="older data is dropped, a whole piece at a time",
              synonyms=(Synonym("log.retention.ms"), Synonym("log.retention.minutes", MINUTE_MS),
                        Synonym("log.retention.hours", HOUR_MS))),
    ConfigDef("segment.bytes", INT, str(1024 * 1024 * 1024), "The segment file size for the log.",
              at_least(1024 * 1024), note=NO_SEGMENT_FILES, synonyms=(Synonym("log.segment.bytes"),)),
    ConfigDef("segment.index.bytes", INT, str(10 * 1024 * 1024), "The size of the offset index file.",
              at_least(4), note=NO_SEGMENT_FILES, synonyms=(Synonym("log.index.size.max.bytes"),)),
    ConfigDef("segment.jitter.ms", L, "0", "The maximum random jitter subtracted from segment.ms.",
              at_least(0), note=NO_SEGMENT_FILES,
              synonyms=(Synonym("log.roll.jitter.ms"), Synonym("log.roll.jitter.hours", HOUR_MS))),
    ConfigDef("segment.ms", L, str(WEEK_MS), "The time after which a segment is rolled.",
              at_least(1), note=NO_SEGMENT_FILES,
              synonyms=(Synonym("log.roll.ms"), Synonym("log.roll.hours", HOUR_MS))),
    ConfigDef("unclean.leader.election.enable", B, "false",
              "Whether replicas not in the ISR may be elected leader.", note=NO_REPLICAS,
              synonyms=(Synonym("unclean.leader.election.enable"),)),
)

TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in TOPIC_CONFIG_DEFS}
