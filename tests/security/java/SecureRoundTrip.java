// The Java client over SASL_SSL: what kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]'
// sends (AlterUserScramCredentials), a login as the new user, produce, a consumer group, a commit.
// Usage: SecureRoundTrip BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD NEW_USER NEW_PASSWORD TOPIC
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class SecureRoundTrip {
    static Properties conf(String bootstrap, String ca, String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", ca);
        return p;
    }

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], ca = a[1], topic = a[6];
        try (Admin admin = Admin.create(conf(bootstrap, ca, a[2], a[3]))) {
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(a[4],
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), a[5]))).all().get();
            UserScramCredentialsDescription d = admin.describeUserScramCredentials(List.of(a[4]))
                    .description(a[4]).get();
            if (d.credentialInfos().get(0).iterations() != 8192) throw new AssertionError(d.toString());
            // the topic is auto-created by the first produce (Java's createTopics result handling is
            // exercised elsewhere)
        }
        Thread.sleep(500);
        Properties pc = conf(bootstrap, ca, a[4], a[5]);
        pc.put("key.serializer", StringSerializer.class.getName());
        pc.put("value.serializer", StringSerializer.class.getName());
        pc.put("acks", "all");
        try (Producer<String, String> producer = new KafkaProducer<>(pc)) {
            for (int i = 0; i < 20; i++) producer.send(new ProducerRecord<>(topic, "v" + i)).get();
        }
        Properties cc = conf(bootstrap, ca, a[4], a[5]);
        cc.put("key.deserializer", StringDeserializer.class.getName());
        cc.put("value.deserializer", StringDeserializer.class.getName());
        cc.put("group.id", "java-" + topic);
        cc.put("auto.offset.reset", "earliest");
        cc.put("enable.auto.commit", "false");
        List<String> got = new ArrayList<>();
        try (Consumer<String, String> consumer = new KafkaConsumer<>(cc)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (got.size() < 20 && System.currentTimeMillis() < deadline)
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) got.add(r.value());
            consumer.commitSync();
        }
        if (got.size() != 20 || !got.get(19).equals("v19")) throw new AssertionError(got.toString());
        System.out.println("OK " + got.size());
    }
}
