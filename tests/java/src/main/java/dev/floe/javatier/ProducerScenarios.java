package dev.floe.javatier;

import static dev.floe.javatier.Steps.map;
import static dev.floe.javatier.Steps.step;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/** The producer: idempotent by default, acks=all, codecs, headers, big records, many partitions, faults. */
final class ProducerScenarios {
    private ProducerScenarios() {}

    static final List<String> CODECS = List.of("none", "gzip", "snappy", "lz4", "zstd");

    /** {@code produce-features <topic-prefix>}: each codec with headers, then one 1 MiB record. */
    static void features(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String prefix = args[0];
        try (Admin admin = Clients.admin(bootstrap)) {
            List<NewTopic> topics = new ArrayList<>();
            for (String codec : CODECS) topics.add(new NewTopic(prefix + "-" + codec, 2, (short) 1));
            topics.add(new NewTopic(prefix + "-big", 1, (short) 1));
            admin.createTopics(topics).all().get();
        }
        for (String codec : CODECS) {
            step(verdict, "codec_" + codec, () -> roundTrip(bootstrap, prefix + "-" + codec, codec));
        }
        step(verdict, "one_mib_record", () -> bigRecord(bootstrap, prefix + "-big"));
    }

    private static Map<String, Object> roundTrip(String bootstrap, String topic, String codec) throws Exception {
        int n = 200;
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, "compression.type", codec,
                "linger.ms", "5")) {
            for (int i = 0; i < n; i++) {
                List<Header> headers = List.of(new RecordHeader("i", bytes(Integer.toString(i))),
                        new RecordHeader("codec", bytes(codec)));
                // compressible values, so the codec really shrinks the batch
                byte[] value = bytes(("value-" + i + "-").repeat(20));
                sent.add(producer.send(new ProducerRecord<>(topic, i % 2, bytes("k" + i), value, headers)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) f.get();
        }
        int headersOk = 0;
        int valuesOk = 0;
        List<ConsumerRecord<byte[], byte[]>> got = readAll(bootstrap, topic, 2, n);
        for (ConsumerRecord<byte[], byte[]> r : got) {
            String i = text(r.headers().lastHeader("i").value());
            if (codec.equals(text(r.headers().lastHeader("codec").value())) && r.headers().toArray().length == 2) {
                headersOk++;
            }
            if (Arrays.equals(r.value(), bytes(("value-" + i + "-").repeat(20)))
                    && Arrays.equals(r.key(), bytes("k" + i))) valuesOk++;
        }
        return map("sent", n, "consumed", got.size(), "headers_ok", headersOk, "values_ok", valuesOk);
    }

    private static Map<String, Object> bigRecord(String bootstrap, String topic) throws Exception {
        byte[] value = new byte[1024 * 1024];
        for (int i = 0; i < value.length; i++) value[i] = (byte) (i * 31 + 7);
        RecordMetadata md;
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, "max.request.size",
                Integer.toString(2 * 1024 * 1024))) {
            md = producer.send(new ProducerRecord<>(topic, 0, null, value)).get();
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(bootstrap, topic, 1, 1);
        boolean same = got.size() == 1 && Arrays.equals(got.get(0).value(), value);
        return map("offset", md.offset(), "consumed", got.size(), "same_bytes", same);
    }

    /** {@code produce-many-partitions <topic> <partitions>}: create, write every partition, read every one. */
    static void manyPartitions(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        int partitions = Integer.parseInt(args[1]);
        int perPartition = 5;
        step(verdict, "create", () -> {
            try (Admin admin = Clients.admin(bootstrap)) {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
            }
            return null;
        });
        step(verdict, "produce", () -> {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, "linger.ms", "20")) {
                for (int i = 0; i < perPartition; i++) {
                    for (int p = 0; p < partitions; p++) {
                        sent.add(producer.send(new ProducerRecord<>(topic, p, null, bytes(p + ":" + i))));
                    }
                }
                producer.flush();
                for (Future<RecordMetadata> f : sent) f.get();
            }
            return map("acked", sent.size());
        });
        step(verdict, "consume", () -> {
            List<ConsumerRecord<byte[], byte[]>> got = readAll(bootstrap, topic, partitions, partitions * perPartition);
            int[] counts = new int[partitions];
            int misplaced = 0;
            for (ConsumerRecord<byte[], byte[]> r : got) {
                counts[r.partition()]++;
                if (!text(r.value()).startsWith(r.partition() + ":")) misplaced++;
            }
            int exact = 0;
            for (int c : counts) if (c == perPartition) exact++;
            return map("consumed", got.size(), "partitions_exact", exact, "misplaced", misplaced);
        });
    }

    /**
     * {@code produce-steady <topic> <partitions> <progress-file> <stop-file>}: writes "p:n" with n counting
     * up per partition until the stop file appears, writing how many were acked to the progress file, so the
     * test can move, drain or kill brokers meanwhile. The verdict has the acked count per partition and every
     * send error; {@code read-sequences} then checks what the log holds.
     */
    static void steady(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        int partitions = Integer.parseInt(args[1]);
        Path progress = Path.of(args[2]);
        Path stop = Path.of(args[3]);
        AtomicLongArray acked = new AtomicLongArray(partitions);  // highest n acked + 1, per partition
        AtomicLong ackedTotal = new AtomicLong();
        ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
        long[] next = new long[partitions];
        long started = System.currentTimeMillis();
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap, "linger.ms", "5",
                "delivery.timeout.ms", "120000", "request.timeout.ms", "10000",
                "max.in.flight.requests.per.connection", "5")) {
            long lastWrite = 0;
            while (!Files.exists(stop)) {
                for (int p = 0; p < partitions; p++) {
                    final int partition = p;
                    final long n = next[p]++;
                    producer.send(new ProducerRecord<>(topic, p, null, bytes(p + ":" + n)), (md, exc) -> {
                        if (exc != null) {
                            if (errors.size() < 20) errors.add(Steps.describe(exc));
                        } else {
                            acked.accumulateAndGet(partition, n + 1, Math::max);
                            ackedTotal.incrementAndGet();
                        }
                    });
                }
                Thread.sleep(2);
                long now = System.currentTimeMillis();
                if (now - lastWrite > 200) {
                    Files.writeString(progress, Long.toString(ackedTotal.get()));
                    lastWrite = now;
                }
            }
            producer.flush();
        }
        Files.writeString(progress, Long.toString(ackedTotal.get()));
        List<Long> perPartition = new ArrayList<>();
        long sent = 0;
        for (int p = 0; p < partitions; p++) {
            perPartition.add(acked.get(p));
            sent += next[p];
        }
        verdict.put("sent", sent);
        verdict.put("acked_total", ackedTotal.get());
        verdict.put("acked_max_per_partition", perPartition);
        verdict.put("errors", new ArrayList<>(errors));
        verdict.put("seconds", (System.currentTimeMillis() - started) / 1000.0);
    }

    /** {@code read-sequences <topic> <partitions>}: every partition from the start; duplicates and gaps in n. */
    static void readSequences(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        int partitions = Integer.parseInt(args[1]);
        Map<Integer, List<Long>> seen = new TreeMap<>();
        for (ConsumerRecord<byte[], byte[]> r : readAll(bootstrap, topic, partitions, -1)) {
            String[] pn = text(r.value()).split(":");
            if (Integer.parseInt(pn[0]) != r.partition()) throw new IllegalStateException("record in wrong partition");
            seen.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(Long.parseLong(pn[1]));
        }
        List<Map<String, Object>> out = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            List<Long> ns = seen.getOrDefault(p, List.of());
            long duplicates = 0;
            long outOfOrder = 0;
            java.util.Set<Long> unique = new java.util.HashSet<>();
            long prev = -1;
            for (long n : ns) {
                if (!unique.add(n)) duplicates++;
                if (n != prev + 1) outOfOrder++;
                prev = n;
            }
            out.add(map("partition", p, "count", ns.size(), "duplicates", duplicates, "out_of_order", outOfOrder,
                    "max", ns.isEmpty() ? -1 : ns.get(ns.size() - 1)));
        }
        verdict.put("partitions", out);
    }

    /** Every record of the topic's partitions up to their end offsets now (or until {@code expect} records). */
    static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic, int partitions, int expect) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(bootstrap, "max.partition.fetch.bytes",
                Integer.toString(4 * 1024 * 1024))) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = new ConcurrentHashMap<>(consumer.endOffsets(tps, Duration.ofSeconds(30)));
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) out.add(r);
                if (expect >= 0 && out.size() >= expect) break;
                boolean done = true;
                for (TopicPartition tp : tps) if (consumer.position(tp) < end.get(tp)) done = false;
                if (done && expect < 0) break;
            }
        }
        return out;
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }
}
