package dev.floe.javatier;

import static dev.floe.javatier.ProducerScenarios.bytes;
import static dev.floe.javatier.Steps.map;
import static dev.floe.javatier.Steps.step;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;

/** The AdminClient, call by call, as an operator's automation would use it. */
final class AdminScenarios {
    private AdminScenarios() {}

    /** {@code admin <topic> <group>}: every call once, each step recorded on its own. */
    static void all(String bootstrap, String[] args, Map<String, Object> verdict) throws Exception {
        String topic = args[0];
        String group = args[1];
        long base = System.currentTimeMillis() - 60_000;
        try (Admin admin = Clients.admin(bootstrap)) {
            step(verdict, "create_topics", () -> {
                var result = admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1)
                        .configs(Map.of("retention.ms", "3600000"))));
                result.all().get();
                return map("partitions", result.numPartitions(topic).get(),
                        "replication_factor", result.replicationFactor(topic).get());
            });
            step(verdict, "describe_cluster", () -> {
                DescribeClusterResult c = admin.describeCluster();
                List<Integer> ids = new ArrayList<>();
                for (Node n : c.nodes().get()) ids.add(n.id());
                return map("cluster_id", c.clusterId().get(), "nodes", ids, "controller", c.controller().get().id());
            });
            step(verdict, "describe_topics", () -> describe(admin, topic));
            step(verdict, "produce", () -> {
                try (KafkaProducer<byte[], byte[]> producer = Clients.producer(bootstrap)) {
                    for (int i = 0; i < 30; i++) {
                        // partition 0 gets the newest timestamp at its offset 3, so max-timestamp is not "latest"
                        long ts = base + (i == 9 ? 50_000 : i * 100L);
                        producer.send(new ProducerRecord<>(topic, i % 3, ts, null, bytes("v" + i))).get();
                    }
                }
                return null;
            });
            TopicPartition tp0 = new TopicPartition(topic, 0);
            step(verdict, "list_offsets", () -> {
                long earliest = offsets(admin, tp0, OffsetSpec.earliest()).offset();
                long latest = offsets(admin, tp0, OffsetSpec.latest()).offset();
                ListOffsetsResult.ListOffsetsResultInfo max = offsets(admin, tp0, OffsetSpec.maxTimestamp());
                long byTime = offsets(admin, tp0, OffsetSpec.forTimestamp(base + 50_000)).offset();
                return map("earliest", earliest, "latest", latest, "max_timestamp_offset", max.offset(),
                        "max_timestamp", max.timestamp() - base, "for_timestamp", byTime);
            });
            step(verdict, "create_partitions", () -> {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
                long deadline = System.currentTimeMillis() + 30_000;
                int n = 0;
                while (System.currentTimeMillis() < deadline) {
                    n = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
                    if (n == 5) break;
                    Thread.sleep(100);
                }
                return map("partitions", n);
            });
            step(verdict, "reassign", () -> reassign(admin, topic));
            step(verdict, "list_reassignments", () -> {
                Map<TopicPartition, PartitionReassignment> ongoing = admin.listPartitionReassignments().reassignments()
                        .get();
                return map("ongoing", ongoing.size());
            });
            step(verdict, "elect_leaders", () -> {
                var result = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp0, new TopicPartition(topic, 1)));
                Map<String, Object> per = new LinkedHashMap<>();
                for (var e : result.partitions().get().entrySet()) {
                    per.put(e.getKey().toString(), e.getValue().map(Steps::describe).orElse("ok"));
                }
                String all;
                try {
                    result.all().get();
                    all = "ok";
                } catch (Exception exc) {
                    all = Steps.describe(exc);
                }
                return map("partitions", per, "all", all);
            });
            step(verdict, "describe_log_dirs", () -> {
                List<Integer> ids = new ArrayList<>();
                for (Node n : admin.describeCluster().nodes().get()) ids.add(n.id());
                Map<String, Object> out = new LinkedHashMap<>();
                long topicBytes = 0;
                int topicPartitions = 0;
                for (var broker : admin.describeLogDirs(ids).allDescriptions().get().entrySet()) {
                    List<String> dirs = new ArrayList<>();
                    for (Map.Entry<String, LogDirDescription> dir : broker.getValue().entrySet()) {
                        dirs.add(dir.getKey());
                        for (Map.Entry<TopicPartition, ReplicaInfo> r : dir.getValue().replicaInfos().entrySet()) {
                            if (r.getKey().topic().equals(topic)) {
                                topicBytes += r.getValue().size();
                                topicPartitions++;
                            }
                        }
                    }
                    out.put(Integer.toString(broker.getKey()), dirs);
                }
                return map("dirs", out, "topic_partitions", topicPartitions, "topic_bytes", topicBytes);
            });
            step(verdict, "commit_group", () -> {
                try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, "group.id", group)) {
                    c.subscribe(List.of(topic));
                    int got = 0;
                    long deadline = System.currentTimeMillis() + 60_000;
                    while (got < 30 && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(200))
                            .count();
                    c.commitSync();
                    return map("consumed", got);
                }
            });
            step(verdict, "list_topics", () -> {
                Map<String, Object> out = new LinkedHashMap<>();
                for (TopicListing l : admin.listTopics(new ListTopicsOptions().listInternal(true)).listings().get()) {
                    out.put(l.name(), l.isInternal());
                }
                return map("internal", out.get("__consumer_offsets"), "has_topic", out.containsKey(topic),
                        "without_internal", admin.listTopics().names().get().contains("__consumer_offsets"));
            });
            step(verdict, "list_groups", () -> {
                List<String> ids = new ArrayList<>();
                for (ConsumerGroupListing l : listGroups(admin)) ids.add(l.groupId());
                return map("has_group", ids.contains(group));
            });
            step(verdict, "describe_groups", () -> {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                return map("state", state(d), "members", d.members().size(), "coordinator", d.coordinator().id());
            });
            step(verdict, "alter_group_offsets", () -> {
                admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(1))).all().get();
                return map("tp0", committed(admin, group).get(tp0.toString()));
            });
            step(verdict, "delete_group_offsets", () -> {
                TopicPartition tp1 = new TopicPartition(topic, 1);
                admin.deleteConsumerGroupOffsets(group, Set.of(tp1)).all().get();
                Map<String, Long> left = committed(admin, group);
                return map("tp1_gone", !left.containsKey(tp1.toString()), "tp0", left.get(tp0.toString()));
            });
            step(verdict, "delete_groups", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get();
                List<String> ids = new ArrayList<>();
                for (ConsumerGroupListing l : listGroups(admin)) ids.add(l.groupId());
                return map("still_listed", ids.contains(group));
            });
            step(verdict, "delete_topics", () -> {
                admin.deleteTopics(List.of(topic)).all().get();
                long deadline = System.currentTimeMillis() + 30_000;
                boolean listed = true;
                while (listed && System.currentTimeMillis() < deadline) {
                    listed = admin.listTopics().names().get().contains(topic);
                    if (listed) Thread.sleep(100);
                }
                return map("still_listed", listed);
            });
        }
    }

    @SuppressWarnings("deprecation")
    private static Collection<ConsumerGroupListing> listGroups(Admin admin) throws Exception {
        return admin.listConsumerGroups().all().get();
    }

    @SuppressWarnings("deprecation")
    private static String state(ConsumerGroupDescription d) {
        return d.state().toString();
    }

    private static Map<String, Long> committed(Admin admin, String group) throws Exception {
        Map<String, Long> out = new LinkedHashMap<>();
        for (var e : admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
            out.put(e.getKey().toString(), e.getValue().offset());
        }
        return out;
    }

    private static ListOffsetsResult.ListOffsetsResultInfo offsets(Admin admin, TopicPartition tp, OffsetSpec spec)
            throws Exception {
        return admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get();
    }

    private static Map<String, Object> describe(Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        List<Map<String, Object>> parts = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            parts.add(map("partition", p.partition(), "leader", p.leader() == null ? -1 : p.leader().id(),
                    "replicas", p.replicas().stream().map(Node::id).toList(),
                    "isr", p.isr().stream().map(Node::id).toList()));
        }
        return map("name", d.name(), "internal", d.isInternal(), "topic_id", String.valueOf(d.topicId()),
                "partitions", parts);
    }

    /** Moves partition 0 to another broker when there is one (else onto its own leader) and waits for it. */
    private static Map<String, Object> reassign(Admin admin, String topic) throws Exception {
        TopicPartition tp0 = new TopicPartition(topic, 0);
        int leader = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().get(0)
                .leader().id();
        int target = leader;
        for (Node n : admin.describeCluster().nodes().get()) if (n.id() != leader) target = n.id();
        admin.alterPartitionReassignments(Map.of(tp0, Optional.of(new NewPartitionReassignment(List.of(target)))))
                .all().get();
        long deadline = System.currentTimeMillis() + 30_000;
        int now = leader;
        while (System.currentTimeMillis() < deadline) {
            TopicPartitionInfo p = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions()
                    .get(0);
            now = p.leader() == null ? -1 : p.leader().id();
            if (now == target) break;
            Thread.sleep(100);
        }
        return map("from", leader, "to", target, "leader_now", now);
    }
}
