"""StreamUser ACLs as Kafka stores them, and confluent-kafka's admin types for them, both ways."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

from floe_operator import kafka_admin, user_spec
from floe_operator.kafka_admin import Acl, Connection


def test_every_operation_of_a_rule_is_its_own_binding() -> None:
    user = user_spec.StreamUser.from_body({"metadata": {"name": "app"}, "spec": {"cluster": "demo", "authorization": {
        "acls": [{"resource": {"type": "topic", "name": "orders", "patternType": "prefixed"},
                  "operations": ["Read", "Write"], "type": "deny", "host": "10.0.0.1"},
                 {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}]}}})
    assert kafka_admin.desired_acls(user) == {
        Acl("topic", "orders", "prefixed", "User:app", "10.0.0.1", "Read", "deny"),
        Acl("topic", "orders", "prefixed", "User:app", "10.0.0.1", "Write", "deny"),
        Acl("cluster", "kafka-cluster", "literal", "User:app", "*", "IdempotentWrite", "allow"),
    }


def test_bindings_convert_to_confluent_kafka_and_back() -> None:
    for acl in (Acl("topic", "orders", "prefixed", "User:app", "*", "Read", "allow"),
                Acl("group", "g", "literal", "User:app", "*", "Describe", "deny"),
                Acl("cluster", "kafka-cluster", "literal", "User:app", "*", "IdempotentWrite", "allow"),
                Acl("transactionalId", "tx", "literal", "User:app", "*", "Write", "allow")):
        binding = kafka_admin._to_binding(acl)
        assert kafka_admin._from_binding(binding) == acl
    b = kafka_admin._to_binding(Acl("cluster", "kafka-cluster", "literal", "User:a", "*", "DescribeConfigs", "allow"))
    assert (b.restype, b.resource_pattern_type, b.operation, b.permission_type) == (
        ResourceType.BROKER, ResourcePatternType.LITERAL, AclOperation.DESCRIBE_CONFIGS, AclPermissionType.ALLOW)


def test_the_connection_never_shows_its_password() -> None:
    conn = Connection("b:9092", "SASL_SSL", "SCRAM-SHA-512", "floe-operator", "pw-123", ca_pem="PEM")
    assert "pw-123" not in repr(conn) and "PEM" not in repr(conn)
    assert conn.client_config() == {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL",
                                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "floe-operator",
                                    "sasl.password": "pw-123", "ssl.ca.pem": "PEM"}
