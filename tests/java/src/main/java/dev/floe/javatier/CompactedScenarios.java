package dev.floe.javatier;

import static dev.floe.javatier.Steps.map;
import static dev.floe.javatier.Steps.step;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/** The consumer on a compacted partition: offsets with gaps where compaction removed records. */
final class CompactedScenarios {
    private CompactedScenarios() {}

    /**
     * {@code compacted-read <topic> <offset in a gap>}: partition 0 read from its start to its end
     * (every record with its offset, key and value), then a seek to a removed offset, which must
     * land on the next record that is still there, as Kafka's fetch answers from the batch after.
     */
    static void read(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        TopicPartition tp = new TopicPartition(args[0], 0);
        long gap = Long.parseLong(args[1]);
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(bootstrap)) {
            consumer.assign(List.of(tp));
            step(verdict, "read_all", () -> {
                long end = consumer.endOffsets(List.of(tp)).get(tp);
                consumer.seekToBeginning(List.of(tp));
                List<Object> records = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 60_000;
                while (consumer.position(tp) < end && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                        records.add(List.of(r.offset(), text(r.key()), r.value() == null ? "<null>" : text(r.value())));
                    }
                }
                return map("beginning", consumer.beginningOffsets(List.of(tp)).get(tp), "end", end,
                        "position", consumer.position(tp), "records", records);
            });
            step(verdict, "seek_into_gap", () -> {
                consumer.seek(tp, gap);
                long deadline = System.currentTimeMillis() + 30_000;
                while (System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                        return map("first_offset", r.offset(), "key", text(r.key()));
                    }
                }
                return map("first_offset", -1L);
            });
        }
    }

    private static String text(byte[] b) {
        return b == null ? "<null>" : new String(b, StandardCharsets.UTF_8);
    }
}
