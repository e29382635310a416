"""ACLs: the decision's rules, a rule for every API, and an authorization matrix with real clients.

Until SASL names clients, the brokers here run with the test-only flag
``insecure_principal_from_client_id``: a client's principal is
``User:<client.id>``. ``admin`` is the super user; ``alice`` gets ACLs as the
tests go; anyone else (and ``User:ANONYMOUS``, a client without an id) has none.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
import typing
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
from kafka.admin import ResourceType as KResourceType
from kafka.errors import ClusterAuthorizationFailedError
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from floe_broker.app import Broker
from floe_broker.config import BrokerConfig, add_arguments, from_namespace
from floe_broker.dispatch import Dispatcher
from floe_broker.handlers.authz import RULES
from floe_broker.protocol.build import ZERO_UUID, mk
from floe_broker.security import acls as A
from floe_broker.security.authorizer import AclIndex, AuthorizerSettings, authorize, authorize_any, parse_super_users
from floe_broker.security.principal import PRINCIPAL, Principal
from floe_operator.kafka_admin import Acl as OperatorAcl
from floe_operator.kafka_admin import ConfluentUserAdmin
from floe_operator.kafka_admin import Connection as OperatorConnection
from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import wait_until
from tests.inprocess.harness import CONFIG, started_broker
from tests.inprocess.test_dispatch_errors import error_codes, sample
from tests.inprocess.wire import PEER, decode_response, encode_request
from tests.inprocess.wire import request as entity
from tests.security.kafka_wire import request

AUTH_CODES = {ErrorCode.topic_authorization_failed, ErrorCode.group_authorization_failed,
              ErrorCode.cluster_authorization_failed, ErrorCode.transactional_id_authorization_failed}
SECURED = dataclasses.replace(CONFIG, authorizer="on", super_users="User:admin",
                              insecure_principal_from_client_id=True)


# ---- the decision ------------------------------------------------------------------------------------

def binding(rt: A.ResourceType, name: str, op: A.Operation, *, principal: str = "User:alice",
            perm: A.Permission = A.Permission.ALLOW, pattern: A.PatternType = A.PatternType.LITERAL,
            host: str = "*") -> A.AclBinding:
    return A.AclBinding(rt, pattern, name, principal, host, op, perm)


ON = AuthorizerSettings(enabled=True, super_users=frozenset({"User:admin"}))
T, G, C = A.ResourceType.TOPIC, A.ResourceType.GROUP, A.ResourceType.CLUSTER
Op = A.Operation


def may(bindings: list[A.AclBinding], op: A.Operation, rt: A.ResourceType, name: str, *,
        principal: str = "User:alice", host: str = "10.0.0.1", settings: AuthorizerSettings = ON) -> bool:
    return authorize(bindings, settings, principal, host, op, rt, name)


def test_off_allows_everything_and_on_denies_without_acls() -> None:
    assert may([], Op.WRITE, T, "t", settings=AuthorizerSettings(enabled=False))
    assert not may([], Op.WRITE, T, "t")
    assert may([], Op.WRITE, T, "t", settings=dataclasses.replace(ON, allow_everyone_if_no_acl_found=True))


def test_allow_everyone_if_no_acl_found_only_where_no_acl_exists() -> None:
    lenient = dataclasses.replace(ON, allow_everyone_if_no_acl_found=True)
    acl = [binding(T, "t", Op.READ, principal="User:bob")]
    assert not may(acl, Op.READ, T, "t", settings=lenient), "t has an ACL, so alice needs her own"
    assert may(acl, Op.READ, T, "other", settings=lenient)


def test_literal_wildcard_and_prefixed_names() -> None:
    assert may([binding(T, "t", Op.WRITE)], Op.WRITE, T, "t")
    assert not may([binding(T, "t", Op.WRITE)], Op.WRITE, T, "t2")
    assert may([binding(T, "*", Op.WRITE)], Op.WRITE, T, "anything")
    pre = [binding(T, "orders.", Op.READ, pattern=A.PatternType.PREFIXED)]
    assert may(pre, Op.READ, T, "orders.eu")
    assert not may(pre, Op.READ, T, "order")
    assert not may(pre, Op.READ, G, "orders.eu"), "a topic ACL says nothing about a group"


def test_deny_wins_over_any_allow() -> None:
    acl = [binding(T, "*", Op.ALL), binding(T, "secret", Op.READ, perm=A.Permission.DENY)]
    assert may(acl, Op.READ, T, "public")
    assert not may(acl, Op.READ, T, "secret")
    everyone_denied = [binding(T, "t", Op.READ), binding(T, "t", Op.ALL, principal="User:*", perm=A.Permission.DENY)]
    assert not may(everyone_denied, Op.READ, T, "t")


def test_principal_and_host_must_match() -> None:
    acl = [binding(T, "t", Op.READ, host="10.0.0.1")]
    assert may(acl, Op.READ, T, "t", host="10.0.0.1")
    assert not may(acl, Op.READ, T, "t", host="10.0.0.2")
    assert not may(acl, Op.READ, T, "t", principal="User:bob")
    assert may([binding(T, "t", Op.READ, principal="User:*")], Op.READ, T, "t", principal="User:bob")


def test_describe_is_implied_by_the_operations_that_need_it() -> None:
    for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER):
        assert may([binding(T, "t", op)], Op.DESCRIBE, T, "t"), op
    assert not may([binding(T, "t", Op.CREATE)], Op.DESCRIBE, T, "t")
    assert may([binding(T, "t", Op.ALTER_CONFIGS)], Op.DESCRIBE_CONFIGS, T, "t")
    assert not may([binding(T, "t", Op.READ)], Op.WRITE, T, "t"), "READ does not imply WRITE"


def test_super_users() -> None:
    assert parse_super_users("User:admin; User:ops;") == {"User:admin", "User:ops"}
    deny_all = [binding(T, "*", Op.ALL, principal="User:*", perm=A.Permission.DENY)]
    assert may(deny_all, Op.WRITE, T, "t", principal="User:admin")


def test_by_type_check_respects_denies() -> None:
    acl = [binding(T, "t", Op.WRITE)]
    assert authorize_any(acl, ON, "User:alice", "h", Op.WRITE, T)
    assert not authorize_any(acl, ON, "User:bob", "h", Op.WRITE, T)
    denied = [*acl, binding(T, "t", Op.WRITE, perm=A.Permission.DENY)]
    assert not authorize_any(denied, ON, "User:alice", "h", Op.WRITE, T)


def test_filters_match_any_and_match_patterns() -> None:
    lit = binding(T, "orders", Op.READ)
    pre = binding(T, "ord", Op.READ, pattern=A.PatternType.PREFIXED)
    star = binding(T, "*", Op.READ)
    grp = binding(G, "orders", Op.READ)
    every = [lit, pre, star, grp]

    def selected(f: A.AclFilter) -> list[A.AclBinding]:
        return [b for b in every if f.matches(b)]

    assert selected(A.AclFilter()) == every
    assert selected(A.AclFilter(resource_type=T, resource_name="orders")) == [lit]
    assert selected(A.AclFilter(resource_type=T, pattern_type=A.PatternType.MATCH, resource_name="orders")) == [
        lit, pre, star]
    assert selected(A.AclFilter(pattern_type=A.PatternType.PREFIXED)) == [pre]
    assert selected(A.AclFilter(resource_type=T, pattern_type=A.PatternType.LITERAL)) == [lit, star]
    assert selected(A.AclFilter(principal="User:bob")) == []


def test_invalid_bindings_are_named() -> None:
    assert A.invalid_reason(binding(T, "t", Op.READ)) is None
    assert A.invalid_reason(binding(T, "t", Op.ANY)) is not None
    assert A.invalid_reason(binding(C, "other", Op.ALTER)) is not None
    assert A.invalid_reason(binding(T, "t", Op.READ, principal="alice")) is not None
    assert A.invalid_reason(dataclasses.replace(binding(T, "t", Op.READ), pattern_type=A.PatternType.MATCH))


# ---- every API has a rule, and it is enforced -------------------------------------------------------

def test_every_api_in_the_dispatch_table_has_an_authorization_rule() -> None:
    table = Dispatcher(ctx=None).table  # type: ignore[arg-type]  # the table needs no broker
    assert set(table) <= set(RULES), f"APIs without an authorization rule: {sorted(set(table) - set(RULES))}"


@pytest.fixture
async def secured() -> AsyncIterator[Broker]:
    async with started_broker(SECURED) as b:
        yield b


async def _as(d: Dispatcher, principal: str, api_key: int, version: int, body: Any) -> Any:
    token = PRINCIPAL.set(Principal.parse(principal))
    try:
        parts = await d(encode_request(api_key, version, body, client_id=""), PEER)
    finally:
        PRINCIPAL.reset(token)
    assert parts is not None
    return decode_response(api_key, version, parts)[1]


def aimed(entity: Any, topic_id: uuid.UUID) -> Any:
    """``entity`` aimed at the topic: every topic id (at any depth) and resource type set to it."""
    if not dataclasses.is_dataclass(entity) or isinstance(entity, type):
        return entity
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.name == "topic_id":
            changes[f.name] = topic_id
        elif f.name == "resource_type":
            changes[f.name] = type(value)(2)  # a topic (0 is UNKNOWN, refused before any check)
        elif isinstance(value, tuple):
            changes[f.name] = tuple(aimed(v, topic_id) for v in value)
    return dataclasses.replace(entity, **changes)


LISTINGS = {16: "groups", 66: "transaction_states"}  # ListGroups, ListTransactions: refusal is an empty list


async def test_no_api_answers_a_principal_without_acls(secured: Broker) -> None:
    """Every API but ApiVersions and SASL refuses a principal with no ACL (or lists nothing); a super user is served."""
    await secured.serving.create_topic("x", 1, {})
    topic_id = uuid.UUID(secured.state().topics["x"].topic_id)
    d = Dispatcher(secured.serving)
    for api_key, (_, hi, _) in sorted(d.table.items()):
        if api_key in (17, 18, 36):
            continue  # ApiVersions and the SASL exchange come before there is a principal to authorize
        body = aimed(sample(load_request_schema(api_key, hi)), topic_id)
        refused = await _as(d, "User:nobody", api_key, hi, body)
        codes = set(error_codes(refused))
        if api_key in LISTINGS:
            assert getattr(refused, LISTINGS[api_key]) == (), refused
        else:
            assert codes & AUTH_CODES, f"api {api_key} answered an unauthorized principal: {refused}"
        served = await _as(d, "User:admin", api_key, hi, body)
        assert not set(error_codes(served)) & AUTH_CODES, f"api {api_key} refused the super user: {served}"


# ---- the matrix, with real clients ------------------------------------------------------------------

def _admin(bootstrap: str, client_id: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id})


def _code(future: Any) -> int:
    """The Kafka error code a confluent-kafka admin future ends with (0 for success)."""
    try:
        future.result(timeout=20)
        return 0
    except KafkaException as exc:
        return int(exc.args[0].code())


def _allow(admin: AdminClient, *acls: tuple[ResourceType, str, AclOperation], principal: str = "User:alice",
           pattern: ResourcePatternType = ResourcePatternType.LITERAL,
           permission: AclPermissionType = AclPermissionType.ALLOW) -> None:
    bindings = [AclBinding(rt, name, pattern, principal, "*", op, permission) for rt, name, op in acls]
    for f in admin.create_acls(bindings).values():
        f.result(timeout=20)


def _produce(bootstrap: str, client_id: str, topic: str, **conf: Any) -> KafkaError | None:
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "message.timeout.ms": 10000,
                  "enable.idempotence": False, **conf})
    out: list[KafkaError | None] = []
    p.produce(topic, b"v", on_delivery=lambda err, _m: out.append(err))
    p.flush(15)
    return out[0] if out else KafkaError(KafkaError._MSG_TIMED_OUT)


def _consume_error(bootstrap: str, client_id: str, topic: str, group: str) -> int:
    """Consume one message; 0 on success, else the error code the consumer reported."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                return int(m.error().code())
            c.commit(message=m, asynchronous=False)
            return 0
        return -1
    finally:
        c.close()


async def test_authorization_matrix_with_real_clients() -> None:
    """Each API refuses alice with Kafka's code until she has the ACL, then serves her."""
    async with started_broker(SECURED, listen=True) as broker:
        assert broker.listener is not None
        # the clients block, so they run in a thread while the broker serves on this loop
        await asyncio.to_thread(_matrix, f"127.0.0.1:{broker.listener.port}")


def _matrix(boot: str) -> None:
    admin, alice = _admin(boot, "admin"), _admin(boot, "alice")

    for f in admin.create_topics([NewTopic("orders", 1), NewTopic("secret", 1)]).values():
        f.result(20)

    # produce: WRITE on the topic
    err = _produce(boot, "alice", "orders")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    _allow(admin, (ResourceType.TOPIC, "orders", AclOperation.WRITE))
    assert _produce(boot, "alice", "orders") is None
    # an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic: alice has the latter
    assert _produce(boot, "alice", "orders", **{"enable.idempotence": True}) is None
    err = _produce(boot, "mallory", "orders", **{"enable.idempotence": True})
    assert err is not None and err.code() in (KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                                              KafkaError.TOPIC_AUTHORIZATION_FAILED), err

    # metadata: alice sees only the topic she may describe; a named one is refused whether it exists or not
    listed = alice.list_topics(timeout=10)
    assert set(listed.topics) == {"orders"}
    for name in ("secret", "no-such-topic"):
        md = alice.list_topics(topic=name, timeout=10)
        assert md.topics[name].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, md.topics[name].error

    # consume: READ on the group, then READ on the topic
    assert _consume_error(boot, "alice", "orders", "g1") == KafkaError.GROUP_AUTHORIZATION_FAILED
    _allow(admin, (ResourceType.GROUP, "g", AclOperation.READ), pattern=ResourcePatternType.PREFIXED)
    assert _consume_error(boot, "alice", "orders", "g1") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    _allow(admin, (ResourceType.TOPIC, "orders", AclOperation.READ))
    assert _consume_error(boot, "alice", "orders", "g1") == 0

    # groups: alice lists and describes what she may describe, no more
    admin_groups, alice_groups = [a.list_consumer_groups().result(20).valid for a in (admin, alice)]
    assert {g.group_id for g in admin_groups} == {"g1"} and {g.group_id for g in alice_groups} == {"g1"}
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g1")])["g1"].result(20)
    assert [tp.topic for tp in offsets.topic_partitions] == ["orders"]
    assert _code(alice.delete_consumer_groups(["g1"])["g1"]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert _code(alice.describe_consumer_groups(["other"])["other"]) == KafkaError.GROUP_AUTHORIZATION_FAILED

    # topic administration
    assert _code(alice.create_topics([NewTopic("new", 1)])["new"]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _code(alice.delete_topics(["secret"])["secret"]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _code(alice.create_partitions([NewPartitions("orders", 2)])["orders"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    topic_res = ConfigResource(ConfigResource.Type.TOPIC, "secret")
    assert _code(alice.describe_configs([topic_res])[topic_res]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    broker_res = ConfigResource(ConfigResource.Type.BROKER, "1")
    assert _code(alice.describe_configs([broker_res])[broker_res]) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    _allow(admin, (ResourceType.TOPIC, "orders", AclOperation.ALTER),
           (ResourceType.TOPIC, "orders", AclOperation.ALTER_CONFIGS),
           (ResourceType.TOPIC, "new", AclOperation.CREATE))
    assert _code(alice.create_topics([NewTopic("new", 1)])["new"]) == 0
    assert _code(alice.create_partitions([NewPartitions("orders", 2)])["orders"]) == 0
    orders_res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    assert _code(alice.describe_configs([orders_res])[orders_res]) == 0, "ALTER_CONFIGS implies DESCRIBE_CONFIGS"

    # cluster-level APIs
    # (librdkafka's describe_cluster is a Metadata request, which needs no cluster ACL, as in Kafka)
    legacy = KafkaAdminClient(bootstrap_servers=boot, client_id="alice")
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            legacy.list_partition_reassignments()
        with pytest.raises(ClusterAuthorizationFailedError):
            legacy.alter_partition_reassignments({TopicPartition("orders", 0): [1]})
    finally:
        legacy.close()
    # (librdkafka 2.16 drops DescribeAcls' top-level error code; kafka-python reports it)
    legacy = KafkaAdminClient(bootstrap_servers=boot, client_id="alice")
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            legacy.describe_acls(ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                                           permission_type=ACLPermissionType.ANY,
                                           resource_pattern=ResourcePatternFilter(
                                               KResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        legacy.close()
    grab = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:alice", "*",
                      AclOperation.READ, AclPermissionType.ALLOW)
    assert _code(alice.create_acls([grab])[grab]) == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    # deny wins: a DENY on the prefix takes back what the literal ALLOW gave
    _allow(admin, (ResourceType.TOPIC, "ord", AclOperation.WRITE), pattern=ResourcePatternType.PREFIXED,
           permission=AclPermissionType.DENY)
    err = _produce(boot, "alice", "orders")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # ...and deleting it through a filter gives it back
    deleted = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, "ord", ResourcePatternType.PREFIXED,
                                                  None, None, AclOperation.ANY, AclPermissionType.DENY)])
    assert len(next(iter(deleted.values())).result(20)) == 1
    assert _produce(boot, "alice", "orders") is None


# ---- every broker enforces an ACL created through any one of them ----------------------------------

def _create_acl_request(name: str, op: A.Operation) -> Any:
    cls = load_request_schema(30, 3)
    creation = dataclasses.fields(cls)[0]
    entry = typing.get_args(typing.get_type_hints(cls)[creation.name])[0]
    return mk(cls, creations=(mk(entry, resource_type=A.ResourceType.TOPIC, resource_name=name,
                                 resource_pattern_type=A.PatternType.LITERAL, principal="User:alice", host="*",
                                 operation=op, permission_type=A.Permission.ALLOW),))


def _metadata_request(name: str) -> Any:
    cls = load_request_schema(3, 12)
    entry = typing.get_args(typing.get_type_hints(cls)["topics"])[0]
    entry = typing.get_args(entry)[0] if typing.get_origin(entry) is tuple else entry
    return mk(cls, topics=(mk(entry, name=name, topic_id=ZERO_UUID),), allow_auto_topic_creation=False)


def test_an_acl_created_on_one_broker_is_enforced_by_every_broker_within_a_second(
        brokers: BrokerFactory, file_store: StoreSpec) -> None:
    flags = ("--authorizer", "on", "--super-users", "User:admin", "--insecure-principal-from-client-id", "true")
    a = brokers(file_store, *flags)
    b = brokers(file_store, *flags)
    admin = AdminClient({"bootstrap.servers": a.bootstrap, "client.id": "admin"})
    admin.create_topics([NewTopic("shared", 1)])["shared"].result(20)

    def alice_sees_it_on_b() -> bool:
        md = request(b.bootstrap, 3, 12, _metadata_request("shared"), client_id="alice")
        return md.topics[0].error_code == ErrorCode.none

    wait_until(lambda: request(b.bootstrap, 3, 12, _metadata_request("shared"), client_id="admin")
               .topics[0].error_code == ErrorCode.none, 10, message="the topic on broker B")
    assert not alice_sees_it_on_b(), "alice has no ACL yet"

    created = request(a.bootstrap, 30, 3, _create_acl_request("shared", A.Operation.WRITE), client_id="admin")
    assert [r.error_code for r in created.results] == [ErrorCode.none]
    t0 = time.monotonic()
    wait_until(alice_sees_it_on_b, 5, interval=0.01, message="broker B to enforce the new ACL")
    assert time.monotonic() - t0 < 1.0, "the ACL took more than a second to reach broker B"
    # and a real client of B's is now served
    err = _produce(b.bootstrap, "alice", "shared")
    assert err is None, err
    # an unprivileged principal cannot do the same through B
    refused = request(b.bootstrap, 30, 3, _create_acl_request("shared", A.Operation.READ), client_id="mallory")
    assert [r.error_code for r in refused.results] == [ErrorCode.cluster_authorization_failed]

    # the other way round: B is not the controller, so it forwards the change; A enforces it
    def alice_may_describe_fresh_on_a() -> bool:
        md = request(a.bootstrap, 3, 12, _metadata_request("fresh"), client_id="alice")
        return md.topics[0].error_code != ErrorCode.topic_authorization_failed

    fresh = request(b.bootstrap, 30, 3, _create_acl_request("fresh", A.Operation.DESCRIBE), client_id="admin")
    assert [r.error_code for r in fresh.results] == [ErrorCode.none]
    t0 = time.monotonic()
    wait_until(alice_may_describe_fresh_on_a, 5, interval=0.01, message="broker A to enforce the ACL created through B")
    assert time.monotonic() - t0 < 1.0, "the ACL took more than a second to reach broker A"


# ---- bad input -----------------------------------------------------------------------------------------

def _creation(rt: int, name: str, pattern: int, op: int, perm: int, principal: str = "User:alice") -> dict[str, Any]:
    return {"resource_type": rt, "resource_name": name, "resource_pattern_type": pattern, "principal": principal,
            "host": "*", "operation": op, "permission_type": perm}


async def test_bad_acl_requests_get_invalid_request_and_the_rest_still_applies(secured: Broker) -> None:
    d = Dispatcher(secured.serving)
    good = _creation(2, "t", 3, 3, 3)
    bad = [_creation(99, "t", 3, 3, 3), _creation(2, "t", 2, 3, 3), _creation(2, "t", 3, 1, 3),
           _creation(2, "t", 3, 3, 1), _creation(4, "not-the-cluster", 3, 7, 3), _creation(2, "t", 3, 3, 3, "alice"),
           _creation(2, "", 3, 3, 3), _creation(2, "t", 3, 77, 3)]
    created = await _as(d, "User:admin", 30, 3, entity(30, 3, creations=[good, *bad]))
    assert [r.error_code for r in created.results] == [ErrorCode.none] + [ErrorCode.invalid_request] * len(bad)
    assert [b.resource_name for b in secured.state().acls] == ["t"]

    described = await _as(d, "User:admin", 29, 3, entity(29, 3, resource_type_filter=0, pattern_type_filter=1,
                                                          operation=1, permission_type=1))
    assert described.error_code == ErrorCode.invalid_request
    deleted = await _as(d, "User:admin", 31, 3, entity(31, 3, filters=[
        {"resource_type_filter": 0, "pattern_type_filter": 1, "operation": 1, "permission_type": 1},
        {"resource_type_filter": 2, "resource_name_filter": "t", "pattern_type_filter": 3, "operation": 1,
         "permission_type": 1}]))
    assert [r.error_code for r in deleted.filter_results] == [ErrorCode.invalid_request, ErrorCode.none]
    assert [len(r.matching_acls) for r in deleted.filter_results] == [0, 1]
    assert secured.state().acls == []


async def test_an_api_without_a_rule_is_refused_when_the_authorizer_is_on(secured: Broker) -> None:
    """Fail closed: a handler added to the table without a rule is never reached, not even by a super user."""
    async def leak(ctx: Any, version: int, req: Any) -> Any:
        raise AssertionError("the handler must not run")

    d = Dispatcher(secured.serving, extra={57: (0, 0, leak)})  # UpdateFeatures: no rule in RULES
    refused = await _as(d, "User:admin", 57, 0, sample(load_request_schema(57, 0)))
    assert set(error_codes(refused)) == {ErrorCode.cluster_authorization_failed}


def test_the_index_answers_like_a_scan_of_every_binding() -> None:
    every = [binding(T, "t", Op.READ), binding(T, "*", Op.WRITE), binding(T, "t", Op.READ, perm=A.Permission.DENY,
                                                                           principal="User:bob"),
             binding(T, "ord", Op.ALL, pattern=A.PatternType.PREFIXED), binding(G, "t", Op.READ)]
    index = AclIndex(every)
    for name in ("t", "orders", "x", "*"):
        for rt in (T, G):
            expected = [b for b in every if b.matches_resource(rt, name)]
            assert sorted(index.on_resource(rt, name), key=repr) == sorted(expected, key=repr), (rt, name)


def test_authorizer_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    on = from_namespace(parser.parse_args(["--storage", "memory://", "--authorizer", "simple",
                                           "--super-users", "User:admin;User:ops"]))
    assert on.authorizer_enabled and parse_super_users(on.super_users) == {"User:admin", "User:ops"}
    assert not from_namespace(parser.parse_args(["--storage", "memory://"])).authorizer_enabled, "off by default"
    with pytest.raises(SystemExit):
        parser.parse_args(["--storage", "memory://", "--authorizer", "bogus"])
    with pytest.raises(ValueError):
        BrokerConfig(storage="memory://", authorizer="bogus")


def renamed(entity: Any, old: str, new: str) -> Any:
    """``entity`` with every string field (at any depth) equal to ``old`` set to ``new``."""
    if isinstance(entity, str):
        return new if entity == old else entity
    if not dataclasses.is_dataclass(entity) or isinstance(entity, type):
        return entity
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if isinstance(value, str | tuple) or dataclasses.is_dataclass(value):
            changes[f.name] = (tuple(renamed(v, old, new) for v in value) if isinstance(value, tuple)
                               else renamed(value, old, new))
    return dataclasses.replace(entity, **changes)


NAME_VERSIONS = {0: 12, 1: 12}  # Produce and Fetch by name (topic ids are random UUIDs, not guessable names)


async def test_a_refused_principal_cannot_tell_an_existing_topic_from_a_missing_one(secured: Broker) -> None:
    await secured.serving.create_topic("x", 1, {})
    d = Dispatcher(secured.serving)
    for api_key, (_, hi, _) in sorted(d.table.items()):
        version = NAME_VERSIONS.get(api_key, hi)
        body = sample(load_request_schema(api_key, version))
        existing = await _as(d, "User:nobody", api_key, version, body)
        missing = await _as(d, "User:nobody", api_key, version, renamed(body, "x", "nope"))
        assert sorted(error_codes(existing)) == sorted(error_codes(missing)), (api_key, existing, missing)


def test_acls_survive_a_restart_of_the_whole_cluster(brokers: BrokerFactory, file_store: StoreSpec) -> None:
    """ACLs live in meta/cluster in the bucket, not in any broker: a fresh broker enforces them at once."""
    flags = ("--authorizer", "on", "--super-users", "User:admin", "--insecure-principal-from-client-id", "true")
    first = brokers(file_store, *flags)
    admin = AdminClient({"bootstrap.servers": first.bootstrap, "client.id": "admin"})
    admin.create_topics([NewTopic("kept", 1)])["kept"].result(20)
    created = request(first.bootstrap, 30, 3, _create_acl_request("kept", A.Operation.DESCRIBE), client_id="admin")
    assert [r.error_code for r in created.results] == [ErrorCode.none]
    del admin
    assert first.terminate() == 0
    second = brokers(file_store, *flags)
    md = request(second.bootstrap, 3, 12, _metadata_request("kept"), client_id="alice")
    assert md.topics[0].error_code == ErrorCode.none, "alice's ACL came back with the metadata"
    stranger = request(second.bootstrap, 3, 12, _metadata_request("kept"), client_id="mallory")
    assert stranger.topics[0].error_code == ErrorCode.topic_authorization_failed
    meta = Path(file_store.url.removeprefix("file://")) / "test" / "meta"
    written = [meta / "cluster", *sorted((meta / "log").glob("*"))]  # the snapshot and the deltas after it
    assert any(p.is_file() and b"User:alice" in p.read_bytes() for p in written), "the ACL is in the bucket"


def _authorized_operations(boot: str) -> tuple[set[str], set[str]]:
    admin, alice = _admin(boot, "admin"), _admin(boot, "alice")
    admin.create_topics([NewTopic("ops", 1)])["ops"].result(20)
    _allow(admin, (ResourceType.TOPIC, "ops", AclOperation.WRITE), (ResourceType.TOPIC, "ops", AclOperation.DESCRIBE))
    described = alice.describe_topics(TopicCollection(["ops"]), include_authorized_operations=True)["ops"].result(20)
    cluster = admin.describe_cluster(include_authorized_operations=True).result(20)
    return {op.name for op in described.authorized_operations}, {op.name for op in cluster.authorized_operations}


async def test_authorized_operations_are_reported_when_asked_for() -> None:
    async with started_broker(SECURED, listen=True) as broker:
        assert broker.listener is not None
        topic_ops, cluster_ops = await asyncio.to_thread(_authorized_operations, f"127.0.0.1:{broker.listener.port}")
    assert topic_ops == {"WRITE", "DESCRIBE"}
    assert {"ALTER", "DESCRIBE", "CREATE"} <= cluster_ops, "the super user may do everything"


async def test_the_operators_streamuser_acl_client_round_trips_against_a_broker() -> None:
    """The operator manages StreamUser ACLs with confluent-kafka; the broker must understand them exactly.

    Plaintext here (SASL is not this module's): the test-only flag makes librdkafka's
    default client id, ``rdkafka``, the super user the operator would be.
    """
    config = dataclasses.replace(SECURED, super_users="User:rdkafka")
    async with started_broker(config, listen=True) as broker:
        assert broker.listener is not None
        admin = ConfluentUserAdmin(OperatorConnection(f"127.0.0.1:{broker.listener.port}", "PLAINTEXT",
                                                      "SCRAM-SHA-512", "unused", "unused"))
        wanted = {OperatorAcl("topic", "orders.", "prefixed", "User:app", "*", "Write", "allow"),
                  OperatorAcl("group", "app", "literal", "User:app", "*", "Read", "allow"),
                  OperatorAcl("cluster", "kafka-cluster", "literal", "User:app", "*", "IdempotentWrite", "allow"),
                  OperatorAcl("topic", "orders.secret", "literal", "User:app", "*", "All", "deny")}
        await admin.create_acls(wanted)
        assert await admin.acls_of("User:app") == wanted
        assert await admin.acls_of("User:other") == set()
        bindings = {(b.resource_type, b.resource_name, b.operation, b.permission) for b in broker.state().acls}
        assert (A.ResourceType.CLUSTER, "kafka-cluster", A.Operation.IDEMPOTENT_WRITE, A.Permission.ALLOW) in bindings
        await admin.delete_acls({a for a in wanted if a.permission == "deny"})
        assert await admin.acls_of("User:app") == {a for a in wanted if a.permission == "allow"}
        await admin.close()
