package dev.floe.platform;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * {@code WordCount <bootstrap> <input> <output> <application.id> <state.dir> <progress> <stop> [key=value...]}: the
 * classic word count under {@code exactly_once_v2}, run until the stop file appears.
 *
 * <p>{@code groupBy} makes a repartition topic and {@code count} a changelog, so a restart exercises
 * what exactly-once rests on: transactional produce to three topics, TxnOffsetCommit with the
 * consumer group's metadata, read_committed fetches and the changelog restore. The store is in
 * memory on purpose: every restart rebuilds it from the changelog alone.
 *
 * <p>The progress file says how many input lines this process has seen and the Streams state (and,
 * on its second line, the first error a stream thread died of), so the test kills the JVM
 * mid-stream rather than after a sleep. The count may include lines of
 * transactions that were then aborted; it only times the kill.
 */
final class WordCount {
    private WordCount() {}

    static void run(String[] args) throws Exception {
        String bootstrap = args[0];
        String input = args[1];
        String output = args[2];
        Path progress = Path.of(args[5]);
        Path stop = Path.of(args[6]);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        // a killed instance's member must leave the group in seconds, not Kafka's 45 s default
        p.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
        p.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1000);
        for (int i = 7; i < args.length; i++) { // trailing key=value settings override the above
            String[] kv = args[i].split("=", 2);
            p.put(kv[0], kv[1]);
        }

        AtomicLong seen = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .peek((k, v) -> seen.incrementAndGet())
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .groupBy((k, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        List<String> states = new ArrayList<>();
        List<String> errors = new ArrayList<>();
        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setStateListener((now, before) -> {
            synchronized (states) {
                states.add(now.name());
            }
        });
        // a thread that dies of a broker fault is replaced, as production applications configure it
        streams.setUncaughtExceptionHandler(exc -> {
            synchronized (errors) {
                errors.add(exc.getClass().getName() + ": " + exc.getMessage());
            }
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();
        while (!Files.exists(stop)) {
            Path tmp = progress.resolveSibling(progress.getFileName() + ".tmp");
            String firstError;
            synchronized (errors) {
                firstError = errors.isEmpty() ? "" : errors.get(0);
            }
            Files.writeString(tmp, seen.get() + " " + streams.state().name() + "\n" + firstError);
            Files.move(tmp, progress, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                    java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            Thread.sleep(100);
        }
        boolean closed = streams.close(java.time.Duration.ofSeconds(60));
        Map<String, Object> verdict = new LinkedHashMap<>();
        verdict.put("seen", seen.get());
        verdict.put("closed", closed);
        synchronized (states) {
            verdict.put("states", new ArrayList<>(states));
        }
        synchronized (errors) {
            verdict.put("thread_errors", new ArrayList<>(errors));
        }
        System.out.println("VERDICT " + new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(verdict));
    }
}
