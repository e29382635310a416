import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One group.protocol=consumer member for the KIP-848 tests: prints its assignment whenever it changes
 * ("ASSIGNED topic:p,topic:p,..."), every record it reads ("RECORD topic partition offset"), and leaves the group cleanly
 * once its standard input closes ("CLOSED").
 *
 * Usage: Member848 bootstrap group topic|regex:PATTERN assignor
 */
public final class Member848 {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("group.id", args[1]);
        props.put("group.protocol", "consumer");
        props.put("group.remote.assignor", args[3]);
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        // The client learns the name of a topic id a regex brought in from its next metadata refresh.
        props.put("metadata.max.age.ms", "1000");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        AtomicBoolean stop = new AtomicBoolean();
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) { }
            } catch (Exception ignored) { }
            stop.set(true);
        });
        stdin.setDaemon(true);
        stdin.start();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            TreeSet<String> owned = new TreeSet<>();
            ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                @Override public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    consumer.commitSync();
                    parts.forEach(tp -> owned.remove(tp.topic() + ":" + tp.partition()));
                    report(owned);
                }
                @Override public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    parts.forEach(tp -> owned.add(tp.topic() + ":" + tp.partition()));
                    report(owned);
                }
            };
            if (args[2].startsWith("regex:")) {
                // a broker-side regex (KIP-848 SubscribedTopicRegex) in RE2/J syntax
                consumer.subscribe(new SubscriptionPattern(args[2].substring(6)), listener);
            } else {
                consumer.subscribe(List.of(args[2]), listener);
            }
            while (!stop.get()) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                    System.out.println("RECORD " + r.topic() + " " + r.partition() + " " + r.offset());
                }
                consumer.commitSync();
                System.out.flush();
            }
        }
        System.out.println("CLOSED");
        System.out.flush();
    }

    private static void report(TreeSet<String> owned) {
        StringBuilder b = new StringBuilder("ASSIGNED ");
        for (String p : owned) {
            if (b.length() > 9) b.append(',');
            b.append(p);
        }
        System.out.println(b);
        System.out.flush();
    }
}
