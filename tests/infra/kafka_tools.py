"""Kafka's own command-line tools, run as an operator runs them, against any bootstrap address.

Each ``kafka-*.sh`` script of a Kafka distribution is ``java -cp libs/*
<main class> "$@"``; :data:`TOOLS` maps the script names to the main classes
in Kafka 4.x's jars, which ``tests.infra.apache_kafka.kafka_jars`` resolves
through Maven (cached in ``~/.cache/floe/kafka-<version>``). :func:`tool` runs
one to completion; :func:`start_tool` starts a long-running one (a console or
verifiable consumer) with its output in a file, stopped by its PID.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.infra.apache_kafka import java_command, kafka_jars

TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-verifiable-producer": "org.apache.kafka.tools.VerifiableProducer",
    "kafka-verifiable-consumer": "org.apache.kafka.tools.VerifiableConsumer",
}


def _command(name: str, *args: str) -> list[str]:
    return java_command(kafka_jars(), TOOLS[name], *args, heap="256m", log_level="ERROR")


def tool(name: str, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``kafka-<name>`` with ``args`` to completion; stdout and stderr come back as text."""
    return subprocess.run(_command(name, *args), input=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)


def ok(name: str, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
    """Like :func:`tool`, but the tool must exit 0; its stdout comes back."""
    done = tool(name, *args, stdin=stdin, timeout=timeout)
    assert done.returncode == 0, f"{name} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def start_tool(name: str, *args: str, output: Path) -> subprocess.Popen[bytes]:
    """Start a long-running tool with stdout in ``output`` (stderr beside it, ``.err``)."""
    with open(output, "wb") as out, open(output.with_suffix(".err"), "wb") as err:  # the child keeps its copies
        return subprocess.Popen(_command(name, *args), stdout=out, stderr=err)


def stop_tool(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (the tools' shutdown hooks print their summaries), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)
