package dev.floe.platform;

/**
 * {@code Main <scenario> [args...]}: {@code wordcount} runs the Streams application; the Connect
 * worker is Kafka's own {@code org.apache.kafka.connect.cli.ConnectDistributed} main on this
 * classpath, which carries the line-file connectors.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) throws Exception {
        String[] rest = java.util.Arrays.copyOfRange(args, 1, args.length);
        switch (args[0]) {
            case "wordcount" -> WordCount.run(rest);
            default -> throw new IllegalArgumentException("unknown scenario " + args[0]);
        }
        System.out.flush();
        System.exit(0);
    }
}
