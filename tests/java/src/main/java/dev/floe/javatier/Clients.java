package dev.floe.javatier;

import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** The three clients with the settings every scenario shares; scenarios add their own on top. */
final class Clients {
    private Clients() {}

    static Properties base(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", "floe-java-tier");
        return p;
    }

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, Object... extra) {
        Properties p = base(bootstrap);
        p.put("acks", "all");
        put(p, extra);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, Object... extra) {
        Properties p = base(bootstrap);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        put(p, extra);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static Admin admin(String bootstrap) {
        Properties p = base(bootstrap);
        p.put("request.timeout.ms", "20000");
        p.put("default.api.timeout.ms", "60000");
        return Admin.create(p);
    }

    private static void put(Properties p, Object... kv) {
        for (int i = 0; i + 1 < kv.length; i += 2) p.put(String.valueOf(kv[i]), String.valueOf(kv[i + 1]));
    }
}
