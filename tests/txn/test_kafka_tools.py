"""Kafka's own tools, run from the Kafka 4.4 jars against Floe: ``kafka-transactions.sh``
(``org.apache.kafka.tools.TransactionsCommand``) and the Java client's exactly-once copier
(``org.apache.kafka.tools.TransactionalMessageCopier``). Skipped where Java or the jars are missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from confluent_kafka import Producer

from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars, run_tool
from tests.inprocess.harness import CONFIG, started_broker
from tests.txn.test_clients import consume_all

TOOLS = "org.apache.kafka.tools.TransactionsCommand"
COPIER = "org.apache.kafka.tools.TransactionalMessageCopier"


@pytest.fixture(scope="module")
def jars():  # type: ignore[no-untyped-def]
    try:
        return kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))


async def test_kafka_transactions_tool_lists_and_describes(jars) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(CONFIG, transaction_state_partitions=2)
    async with started_broker(config, listen=True) as broker:
        assert broker.listener is not None
        boot = f"127.0.0.1:{broker.listener.port}"
        await broker.serving.create_topic("tools", 1, {})
        producer = Producer({"bootstrap.servers": boot, "transactional.id": "tx-tools", "linger.ms": 0})

        def open_txn() -> None:
            producer.init_transactions(30)
            producer.begin_transaction()
            producer.produce("tools", value=b"open")
            producer.flush(30)

        await asyncio.to_thread(open_txn)

        def tool(*args: str) -> str:
            done = run_tool(TOOLS, "--bootstrap-server", boot, *args, jars=jars, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        listed = await asyncio.to_thread(tool, "list")
        assert "tx-tools" in listed and "Ongoing" in listed, listed
        described = await asyncio.to_thread(tool, "describe", "--transactional-id", "tx-tools")
        assert "Ongoing" in described and "tools-0" in described, described
        producers = await asyncio.to_thread(tool, "describe-producers", "--topic", "tools", "--partition", "0")
        part = await broker.serving.leader_partition("tools", 0)
        assert part is not None
        (pid,) = part.producers
        assert str(pid) in producers, producers
        assert str(part.txn_open[pid]) in producers, "the open transaction's start offset is shown"
        await asyncio.to_thread(producer.commit_transaction, 30)
        listed = await asyncio.to_thread(tool, "list")
        assert "CompleteCommit" in listed, listed


async def test_the_java_clients_exactly_once_copier(jars) -> None:  # type: ignore[no-untyped-def]
    """Java's transactional producer and read_committed consumer with sendOffsetsToTransaction,
    random aborts included: the output holds every input record exactly once."""
    config = dataclasses.replace(CONFIG, transaction_state_partitions=2)
    async with started_broker(config, listen=True) as broker:
        assert broker.listener is not None
        boot = f"127.0.0.1:{broker.listener.port}"
        await broker.serving.create_topic("src", 1, {})
        await broker.serving.create_topic("dst", 1, {})
        seed = Producer({"bootstrap.servers": boot, "linger.ms": 5})
        sent = [f"m{i}".encode() for i in range(200)]

        def fill() -> None:
            for v in sent:
                seed.produce("src", value=v)
            seed.flush(30)

        await asyncio.to_thread(fill)
        done = await asyncio.to_thread(
            run_tool, COPIER, "--broker-list", boot, "--input-topic", "src", "--input-partition", "0",
            "--output-topic", "dst", "--transactional-id", f"copier-{uuid.uuid4().hex[:6]}",
            "--consumer-group", "copier", "--group-mode", "--use-group-metadata",
            "--max-messages", str(len(sent)), "--transaction-size", "20",
            "--enable-random-aborts", "--transaction-timeout", "30000", jars=jars, timeout=240)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        copied = await asyncio.to_thread(consume_all, broker, "dst", "read_committed", len(sent))
        assert [v for _, _, v in copied] == sent, "every record exactly once, in order"
