package dev.floe.javatier;

import static dev.floe.javatier.ProducerScenarios.bytes;
import static dev.floe.javatier.Steps.map;
import static dev.floe.javatier.Steps.step;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/** The consumer on the classic group protocol: assignors, static membership, positions and commits. */
final class ConsumerScenarios {
    private ConsumerScenarios() {}

    static final Map<String, String> ASSIGNORS = Map.of(
            "range", "org.apache.kafka.clients.consumer.RangeAssignor",
            "roundrobin", "org.apache.kafka.clients.consumer.RoundRobinAssignor",
            "sticky", "org.apache.kafka.clients.consumer.StickyAssignor",
            "cooperative-sticky", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");

    /** Remembers what the rebalances took away from one consumer. */
    static final class Revocations implements ConsumerRebalanceListener {
        final List<String> revoked = new ArrayList<>();

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            for (TopicPartition tp : partitions) revoked.add(tp.toString());
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {}
    }

    /**
     * {@code consumer-assignor <topic> <group> <assignor>}: two consumers share six partitions, then one
     * leaves and the other must end up with all six; both poll from this one thread, as the classic
     * protocol lets them (each poll drives its own join and sync).
     */
    static void assignor(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        String group = args[1];
        String strategy = ASSIGNORS.get(args[2]);
        int partitions = 6;
        createAndFill(bootstrap, topic, partitions, 10);
        // auto-commit: the consumer commits before giving partitions up and on close, so the survivor
        // resumes where the other stopped and every record is consumed once
        Object[] settings = {"group.id", group, "partition.assignment.strategy", strategy, "enable.auto.commit", "true",
            "session.timeout.ms", "10000", "heartbeat.interval.ms", "500", "max.poll.interval.ms", "60000"};
        Revocations aRevoked = new Revocations();
        try (KafkaConsumer<byte[], byte[]> a = Clients.consumer(bootstrap, settings)) {
            a.subscribe(List.of(topic), aRevoked);
            KafkaConsumer<byte[], byte[]> b = Clients.consumer(bootstrap, settings);
            b.subscribe(List.of(topic));
            int[] consumed = {0};
            step(verdict, "shared", () -> {
                long deadline = System.currentTimeMillis() + 90_000;
                while (System.currentTimeMillis() < deadline) {
                    consumed[0] += a.poll(Duration.ofMillis(100)).count();
                    consumed[0] += b.poll(Duration.ofMillis(100)).count();
                    Set<TopicPartition> sa = a.assignment();
                    Set<TopicPartition> sb = b.assignment();
                    Set<TopicPartition> union = new HashSet<>(sa);
                    union.addAll(sb);
                    if (!sa.isEmpty() && !sb.isEmpty() && union.size() == partitions
                            && sa.size() + sb.size() == partitions && consumed[0] >= partitions * 10) {
                        return map("a", names(sa), "b", names(sb));
                    }
                }
                throw new IllegalStateException("no shared assignment: a=" + a.assignment() + " b=" + b.assignment()
                        + " consumed=" + consumed[0]);
            });
            aRevoked.revoked.clear();
            Set<TopicPartition> before = new HashSet<>(a.assignment());
            b.close();  // commits what it consumed and leaves the group (LeaveGroup): a rebalance at once
            step(verdict, "after_leave", () -> {
                long deadline = System.currentTimeMillis() + 90_000;
                while (System.currentTimeMillis() < deadline && a.assignment().size() < partitions) {
                    consumed[0] += a.poll(Duration.ofMillis(200)).count();
                }
                if (a.assignment().size() < partitions) {
                    throw new IllegalStateException("survivor never got every partition: " + a.assignment());
                }
                fill(bootstrap, topic, partitions, 10);  // the survivor reads these, and nothing twice
                while (System.currentTimeMillis() < deadline && consumed[0] < partitions * 20) {
                    consumed[0] += a.poll(Duration.ofMillis(200)).count();
                }
                consumed[0] += a.poll(Duration.ofMillis(1000)).count();  // anything read twice shows up here
                List<String> keptRevoked = new ArrayList<>();
                for (String s : aRevoked.revoked) {
                    if (before.stream().anyMatch(tp -> tp.toString().equals(s))) keptRevoked.add(s);
                }
                return map("a", names(a.assignment()), "kept_revoked", keptRevoked);
            });
            verdict.put("consumed", consumed[0]);
        }
    }

    /**
     * {@code consumer-static <topic> <group>}: a member with group.instance.id closes and a new process with
     * the same id comes back within the session timeout: it gets the same partitions, the group has one member
     * with that instance id.
     */
    static void staticMembership(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        String group = args[1];
        createAndFill(bootstrap, topic, 3, 5);
        Object[] settings = {"group.id", group, "group.instance.id", "static-1", "session.timeout.ms", "30000",
            "heartbeat.interval.ms", "500"};
        List<String> first = new ArrayList<>();
        step(verdict, "first_join", () -> {
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, settings)) {
                c.subscribe(List.of(topic));
                first.addAll(pollUntilAssigned(c, 3));
                return map("assignment", first, "generation", c.groupMetadata().generationId());
            }
        });
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, settings);
             Admin admin = Clients.admin(bootstrap)) {
            c.subscribe(List.of(topic));
            step(verdict, "rejoin", () -> {
                List<String> again = pollUntilAssigned(c, 3);
                return map("assignment", again, "same", again.equals(first),
                        "generation", c.groupMetadata().generationId());
            });
            step(verdict, "describe", () -> {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                List<String> instances = new ArrayList<>();
                for (MemberDescription m : d.members()) instances.add(m.groupInstanceId().orElse("-"));
                return map("members", d.members().size(), "instance_ids", instances);
            });
        }
    }

    /** {@code consumer-positions <topic> <group>}: seek, offsetsForTimes, commitSync, commitAsync. */
    static void positions(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        String group = args[1];
        long base = System.currentTimeMillis() - 3_600_000;
        try (Admin admin = Clients.admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        }
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, "linger.ms", "1000")) {
            for (int i = 0; i < 100; i++) {
                // one batch of 100 records; record 40 has the newest timestamp, out of order
                long ts = i == 40 ? base + 500_000L : base + i * 1000L;
                producer.send(new ProducerRecord<>(topic, 0, ts, null, bytes("v" + i)));
            }
            producer.flush();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, "group.id", group)) {
            c.assign(List.of(tp));
            step(verdict, "seek", () -> {
                c.seek(tp, 50);
                long first = firstOffset(c);
                c.seekToBeginning(List.of(tp));
                long begin = c.position(tp);
                c.seekToEnd(List.of(tp));
                long end = c.position(tp);
                return map("first_after_seek_50", first, "beginning", begin, "end", end);
            });
            step(verdict, "offsets_for_times", () -> {
                Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, base + 30_000L));
                Map<TopicPartition, OffsetAndTimestamp> between = c.offsetsForTimes(Map.of(tp, base + 30_500L));
                Map<TopicPartition, OffsetAndTimestamp> future = c.offsetsForTimes(Map.of(tp, base + 10_000_000L));
                return map("at_30", at.get(tp).offset(), "ts_30", at.get(tp).timestamp() - base,
                        "between_30_31", between.get(tp).offset(), "future_is_null", future.get(tp) == null);
            });
            step(verdict, "max_timestamp", () -> {
                try (Admin admin = Clients.admin(bootstrap)) {
                    var max = admin.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.maxTimestamp()))
                            .partitionResult(tp).get();
                    return map("offset", max.offset(), "timestamp", max.timestamp() - base);
                }
            });
            step(verdict, "commit_sync", () -> {
                c.commitSync(Map.of(tp, new OffsetAndMetadata(42, "sync")));
                OffsetAndMetadata got = c.committed(Set.of(tp)).get(tp);
                return map("committed", got.offset(), "metadata", got.metadata());
            });
            step(verdict, "commit_async", () -> {
                CompletableFuture<String> done = new CompletableFuture<>();
                c.commitAsync(Map.of(tp, new OffsetAndMetadata(77)), (offsets, exc) ->
                        done.complete(exc == null ? "ok" : Steps.describe(exc)));
                long deadline = System.currentTimeMillis() + 30_000;
                while (!done.isDone() && System.currentTimeMillis() < deadline) c.poll(Duration.ofMillis(100));
                String outcome = done.get(1, TimeUnit.SECONDS);
                return map("callback", outcome, "committed", c.committed(Set.of(tp)).get(tp).offset());
            });
        }
    }

    /**
     * {@code consumer-follow <topic> <progress> <stop>}: one assigned partition read from the start with
     * {@code auto.offset.reset=none}, so a position the consumer could not validate after a leader change
     * (KIP-320) would surface as an exception instead of a silent reset. Writes the records consumed so far
     * to {@code progress}; stops once {@code stop} exists. Any offset that is not the one after the last
     * (a rewind or a skip) is counted.
     */
    static void follow(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        java.nio.file.Path progress = java.nio.file.Path.of(args[1]);
        java.nio.file.Path stop = java.nio.file.Path.of(args[2]);
        TopicPartition tp = new TopicPartition(topic, 0);
        List<String> errors = new ArrayList<>();
        long consumed = 0;
        long expected = 0;
        long jumps = 0;
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, "auto.offset.reset", "none",
                "metadata.max.age.ms", "1000", "fetch.max.wait.ms", "100")) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            while (!java.nio.file.Files.exists(stop)) {
                try {
                    for (var r : c.poll(Duration.ofMillis(200))) {
                        if (r.offset() != expected) jumps++;
                        expected = r.offset() + 1;
                        consumed++;
                    }
                } catch (org.apache.kafka.common.KafkaException exc) {
                    if (errors.size() < 20) errors.add(Steps.describe(exc));
                }
                java.nio.file.Files.writeString(progress, Long.toString(consumed));
            }
            verdict.put("position", c.position(tp));
        }
        verdict.put("consumed", consumed);
        verdict.put("jumps", jumps);
        verdict.put("errors", errors);
    }

    static void createAndFill(String bootstrap, String topic, int partitions, int perPartition) throws Exception {
        try (Admin admin = Clients.admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        fill(bootstrap, topic, partitions, perPartition);
    }

    static void fill(String bootstrap, String topic, int partitions, int perPartition) {
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap)) {
            for (int p = 0; p < partitions; p++) {
                for (int i = 0; i < perPartition; i++) producer.send(new ProducerRecord<>(topic, p, null, bytes("x")));
            }
            producer.flush();
        }
    }

    private static long firstOffset(KafkaConsumer<byte[], byte[]> c) {
        long deadline = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < deadline) {
            var records = c.poll(Duration.ofMillis(200));
            if (!records.isEmpty()) return records.iterator().next().offset();
        }
        return -1;
    }

    private static List<String> pollUntilAssigned(KafkaConsumer<byte[], byte[]> c, int partitions) {
        long deadline = System.currentTimeMillis() + 90_000;
        while (System.currentTimeMillis() < deadline) {
            c.poll(Duration.ofMillis(200));
            if (c.assignment().size() == partitions) return names(c.assignment());
        }
        throw new IllegalStateException("not assigned: " + c.assignment());
    }

    static List<String> names(Set<TopicPartition> tps) {
        Set<String> sorted = new TreeSet<>();
        for (TopicPartition tp : tps) sorted.add(tp.toString());
        return new ArrayList<>(sorted);
    }
}
