package dev.floe.javatier;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Runs one scenario: {@code Main <scenario> <bootstrap> [args...]}.
 *
 * <p>Every scenario prints exactly one line starting with {@code VERDICT } followed by a JSON
 * object on stdout, whatever happens: a failing step is recorded in the verdict with the
 * exception a Java application would have seen, so pytest can assert each step on its own.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Main <scenario> <bootstrap> [args...]");
            System.exit(2);
        }
        String scenario = args[0];
        String bootstrap = args[1];
        String[] rest = java.util.Arrays.copyOfRange(args, 2, args.length);
        Map<String, Object> verdict = new LinkedHashMap<>();
        verdict.put("scenario", scenario);
        verdict.put("client_version", clientVersion());
        try {
            switch (scenario) {
                case "produce-features" -> ProducerScenarios.features(bootstrap, rest, verdict);
                case "produce-many-partitions" -> ProducerScenarios.manyPartitions(bootstrap, rest, verdict);
                case "produce-steady" -> ProducerScenarios.steady(bootstrap, rest, verdict);
                case "read-sequences" -> ProducerScenarios.readSequences(bootstrap, rest, verdict);
                case "consumer-assignor" -> ConsumerScenarios.assignor(bootstrap, rest, verdict);
                case "consumer-static" -> ConsumerScenarios.staticMembership(bootstrap, rest, verdict);
                case "consumer-positions" -> ConsumerScenarios.positions(bootstrap, rest, verdict);
                case "consumer-follow" -> ConsumerScenarios.follow(bootstrap, rest, verdict);
                case "admin" -> AdminScenarios.all(bootstrap, rest, verdict);
                case "compacted-read" -> CompactedScenarios.read(bootstrap, rest, verdict);
                default -> throw new IllegalArgumentException("unknown scenario " + scenario);
            }
        } catch (Throwable t) {
            verdict.put("fatal", Steps.describe(t));
        }
        System.out.println("VERDICT " + Json.write(verdict));
        System.out.flush();
        System.exit(0);
    }

    /** kafka-clients' own version (its jar's kafka-version.properties: the class reading it moved in 4.x). */
    static String clientVersion() {
        java.util.Properties p = new java.util.Properties();
        try (var in = org.apache.kafka.clients.producer.KafkaProducer.class
                .getResourceAsStream("/kafka/kafka-version.properties")) {
            if (in != null) p.load(in);
        } catch (java.io.IOException exc) {
            return "unknown";
        }
        return p.getProperty("version", "unknown");
    }
}
