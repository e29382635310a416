"""Failover as Kafka's own Java producer sees it: kill -9 of the controller, then its first ack on each moved partition.

The same harness and bound as ``test_failover.py`` (librdkafka), with
``VerifiableProducer`` timing the acknowledgements. The controller is the
victim because it is the slower case: its lease and its session run out
together only if the controller's successor takes both over in one step.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from floe_broker.config import BrokerConfig
from tests.reliability.failover_harness import measure
from tests.reliability.java_ack_clock import JavaAckClock
from tests.reliability.test_failover import SLACK_S


def test_kill9_of_the_controller_java_producer_acknowledged_again_within_the_session_timeout(tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars

    try:
        kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))
    timeout_s = next(f.default for f in fields(BrokerConfig) if f.name == "session_timeout_ms") / 1000  # type: ignore[operator]
    result = measure(tmp_path, victim="controller", clock=JavaAckClock)
    print(result.summary())
    assert result.moved and set(result.served_s) == set(result.moved)
    assert result.worst_s <= timeout_s + SLACK_S, (
        f"kill -9 of the controller: the Java producer's first ack on a moved partition came after "
        f"{result.worst_s:.1f} s (session timeout {timeout_s:g} s): {result.summary()}")
