import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.coordinator.group.api.assignor.ConsumerGroupPartitionAssignor;
import org.apache.kafka.coordinator.group.api.assignor.GroupAssignment;
import org.apache.kafka.coordinator.group.api.assignor.SubscribedTopicDescriber;
import org.apache.kafka.coordinator.group.api.assignor.SubscriptionType;
import org.apache.kafka.coordinator.group.assignor.RangeAssignor;
import org.apache.kafka.coordinator.group.assignor.UniformAssignor;
import org.apache.kafka.coordinator.group.modern.Assignment;
import org.apache.kafka.coordinator.group.modern.GroupSpecImpl;
import org.apache.kafka.coordinator.group.modern.MemberSubscriptionAndAssignmentImpl;

/**
 * Kafka's own server-side assignors, as an oracle for the KIP-848 tests. Reads scenarios from stdin:
 *
 *   assignor uniform|range
 *   topic TOPIC_ID PARTITIONS
 *   member MEMBER_ID INSTANCE_ID|- TOPIC_ID,TOPIC_ID CURRENT   (CURRENT: TOPIC_ID:0,1;TOPIC_ID:2 or -)
 *   end
 *
 * and prints, per scenario, "MEMBER_ID TOPIC_ID:p,p;..." lines sorted by member id, then "end".
 */
public final class AssignorOracle {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String assignor = "uniform";
        Map<Uuid, Integer> topics = new HashMap<>();
        Map<String, MemberSubscriptionAndAssignmentImpl> members = new LinkedHashMap<>();
        Map<Uuid, Map<Integer, String>> inverted = new HashMap<>();
        for (String line; (line = in.readLine()) != null; ) {
            String[] w = line.trim().split(" ");
            switch (w[0]) {
                case "assignor" -> assignor = w[1];
                case "topic" -> topics.put(Uuid.fromString(w[1]), Integer.parseInt(w[2]));
                case "member" -> {
                    Set<Uuid> subscribed = new HashSet<>();
                    for (String t : w[3].split(",")) subscribed.add(Uuid.fromString(t));
                    Map<Uuid, Set<Integer>> current = new HashMap<>();
                    if (!w[4].equals("-")) {
                        for (String part : w[4].split(";")) {
                            String[] tp = part.split(":");
                            Uuid id = Uuid.fromString(tp[0]);
                            Set<Integer> ps = new HashSet<>();
                            for (String p : tp[1].split(",")) {
                                ps.add(Integer.parseInt(p));
                                inverted.computeIfAbsent(id, k -> new HashMap<>()).put(Integer.parseInt(p), w[1]);
                            }
                            current.put(id, ps);
                        }
                    }
                    Optional<String> instance = w[2].equals("-") ? Optional.empty() : Optional.of(w[2]);
                    members.put(w[1], new MemberSubscriptionAndAssignmentImpl(Optional.empty(), instance, subscribed,
                        new Assignment(current)));
                }
                case "end" -> {
                    ConsumerGroupPartitionAssignor a = assignor.equals("range") ? new RangeAssignor() : new UniformAssignor();
                    Set<Set<Uuid>> distinct = new HashSet<>();
                    members.values().forEach(m -> distinct.add(m.subscribedTopicIds()));
                    SubscriptionType type = distinct.size() <= 1 ? SubscriptionType.HOMOGENEOUS : SubscriptionType.HETEROGENEOUS;
                    Map<Uuid, Integer> counts = Map.copyOf(topics);
                    SubscribedTopicDescriber describer = new SubscribedTopicDescriber() {
                        @Override public int numPartitions(Uuid id) { return counts.getOrDefault(id, -1); }
                        @Override public Set<String> racksForPartition(Uuid id, int p) { return Set.of(); }
                    };
                    GroupAssignment out = a.assign(new GroupSpecImpl(members, type, inverted), describer);
                    TreeMap<String, String> lines = new TreeMap<>();
                    out.members().forEach((id, ma) -> {
                        TreeMap<String, TreeSet<Integer>> parts = new TreeMap<>();
                        ma.partitions().forEach((t, ps) -> { if (!ps.isEmpty()) parts.put(t.toString(), new TreeSet<>(ps)); });
                        StringBuilder b = new StringBuilder();
                        parts.forEach((t, ps) -> {
                            if (b.length() > 0) b.append(';');
                            b.append(t).append(':');
                            StringBuilder q = new StringBuilder();
                            for (int p : ps) { if (q.length() > 0) q.append(','); q.append(p); }
                            b.append(q);
                        });
                        lines.put(id, b.length() == 0 ? "-" : b.toString());
                    });
                    lines.forEach((id, s) -> System.out.println(id + " " + s));
                    System.out.println("end");
                    System.out.flush();
                    topics.clear();
                    members.clear();
                    inverted.clear();
                }
                default -> { }
            }
        }
    }
}
