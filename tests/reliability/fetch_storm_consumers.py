"""One process of a fetch storm: many librdkafka consumers, each assigned every partition, small fetches.

    python -m tests.reliability.fetch_storm_consumers BOOTSTRAP TOPIC PARTITIONS CONSUMERS SECONDS

Half the consumers read from the beginning (old data, through the block cache),
half from the end (new data, from the memory tail), each with fetch sizes small
enough that they come back for more all the time. Prints one JSON line with the
records read and the errors seen, so the test can tell a storm that ran from one
that never connected.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition


def main(argv: list[str]) -> int:
    bootstrap, topic, partitions, count, seconds = argv[0], argv[1], int(argv[2]), int(argv[3]), float(argv[4])
    consumers = []
    for i in range(count):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"storm-{i}", "enable.auto.commit": False,
                      "fetch.max.bytes": 64 * 1024, "message.max.bytes": 64 * 1024,
                      "max.partition.fetch.bytes": 16 * 1024, "fetch.wait.max.ms": 100,
                      "queued.max.messages.kbytes": 256, "log_level": 2})
        start = OFFSET_BEGINNING if i % 2 == 0 else OFFSET_END
        c.assign([TopicPartition(topic, p, start) for p in range(partitions)])
        consumers.append(c)
    read, errors = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in consumers:
            for m in c.consume(100, timeout=0):
                if m.error():
                    errors += 1
                else:
                    read += 1
        time.sleep(0.01)
    for c in consumers:
        c.close()
    print(json.dumps({"read": read, "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
