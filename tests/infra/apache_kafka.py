"""Apache Kafka as a reference peer: its jars through Maven, KRaft nodes as processes.

Benchmarks compare Floe with Kafka on the same machine, with the same clients,
in the same run; compatibility tests run Kafka's own tools. Both need a real
Kafka broker without Docker or a distribution tarball, so this module:

- resolves ``org.apache.kafka:kafka_2.13`` and ``kafka-tools`` (plus a log4j2
  binding) with ``mvn dependency:copy-dependencies`` through
  ``tools/kafka/pom.xml`` into a cache directory that a second run reuses
  (``~/.cache/floe/kafka-<version>``, or ``$FLOE_KAFKA_CACHE/kafka-<version>``);
- starts a KRaft cluster of one or more combined broker+controller nodes as
  ``java -cp <jars>/* kafka.Kafka server.properties`` on free loopback ports,
  data in a directory the caller chooses, and stops every node by its PID;
- runs any tool main class (``ProducerPerformance``, ``ConsumerPerformance``,
  ...) with the same classpath.

Anything that makes Kafka unavailable here (no ``java``/``mvn``, a failed
download) raises ``KafkaUnavailable``, so a test can skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.broker import ROOT, free_port, wait_until

KAFKA_VERSION = os.environ.get("FLOE_KAFKA_VERSION", "4.4.0")
POM = ROOT / "tools" / "kafka" / "pom.xml"
PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERFORMANCE = "org.apache.kafka.tools.ConsumerPerformance"
STORAGE_TOOL = "kafka.tools.StorageTool"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
"""


class KafkaUnavailable(RuntimeError):
    """Kafka cannot run on this machine (missing java/mvn, or its jars did not resolve)."""


def cache_root() -> Path:
    return Path(os.environ.get("FLOE_KAFKA_CACHE", Path.home() / ".cache" / "floe"))


def kafka_jars(version: str = KAFKA_VERSION, *, timeout: float = 900) -> Path:
    """The directory holding every jar Kafka ``version`` needs; downloaded once, then reused.

    The jars land in a temporary sibling first and are renamed into place, so a
    download cut short never leaves a half-filled cache that later runs trust.
    """
    target = cache_root() / f"kafka-{version}"
    if (target / ".complete").exists():
        return target
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaUnavailable(f"`{tool}` is not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-", dir=target.parent))
    cmd = ["mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}", "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaUnavailable(f"resolving Kafka {version} through Maven took over {timeout:.0f}s") from None
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise KafkaUnavailable(f"Maven could not resolve Kafka {version}:\n{tail}")
    (staging / ".complete").write_text(version + "\n")
    try:
        staging.rename(target)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return target


def java_command(jars: Path, main_class: str, *args: str, heap: str = "512m",
                 log_level: str = "WARN", log4j_dir: Path | None = None) -> list[str]:
    """``java`` running ``main_class`` on Kafka's classpath, logging through log4j2 to stdout."""
    log4j_dir = log4j_dir or cache_root()
    log4j = log4j_dir / f"log4j2-{log_level.lower()}.properties"
    if not log4j.exists():
        log4j_dir.mkdir(parents=True, exist_ok=True)
        log4j.write_text(_LOG4J2.format(level=log_level))
    return ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*", main_class, *args]


def run_tool(main_class: str, *args: str, jars: Path | None = None, timeout: float = 600,
             heap: str = "512m") -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's tool main classes to completion; its stdout and stderr come back as text."""
    jars = jars or kafka_jars()
    return subprocess.run(java_command(jars, main_class, *args, heap=heap), capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class KafkaNode:
    """One KRaft process that is both broker and controller."""

    node_id: int
    directory: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.directory / "data"

    @property
    def properties(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class KafkaCluster:
    """A KRaft cluster of ``size`` combined nodes on loopback, data under ``directory``.

    One node is the single-broker reference; three give the replicated
    comparison (``default_replication_factor`` and the internal topics follow
    the size, ``min.insync.replicas`` is 2 when there are three or more).
    """

    directory: Path
    size: int = 1
    heap: str = "1g"
    version: str = KAFKA_VERSION
    extra_properties: dict[str, str] = field(default_factory=dict)
    nodes: list[KafkaNode] = field(default_factory=list)
    jars: Path | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def _write_properties(self, node: KafkaNode, voters: str) -> None:
        replication = min(self.size, 3)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(node.log_dir),
            "num.partitions": "1",
            "default.replication.factor": str(replication),
            "min.insync.replicas": "2" if replication >= 3 else "1",
            "offsets.topic.replication.factor": str(replication),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": "2" if replication >= 3 else "1",
            "share.coordinator.state.topic.replication.factor": str(replication),
            "share.coordinator.state.topic.min.isr": "2" if replication >= 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            **self.extra_properties,
        }
        node.directory.mkdir(parents=True, exist_ok=True)
        node.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _format(self, jars: Path, node: KafkaNode, cluster_id: str) -> None:
        cmd = java_command(jars, STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(node.properties),
                           "--ignore-formatted", heap="256m", log4j_dir=self.directory)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"formatting Kafka node {node.node_id} failed:\n{done.stdout}\n{done.stderr}")

    def start(self, timeout: float = 180) -> KafkaCluster:
        """Format every node's storage, start the nodes, wait until all brokers are in the metadata."""
        jars = self.jars = self.jars or kafka_jars(self.version)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.nodes = [KafkaNode(i, self.directory / f"node-{i}") for i in range(1, self.size + 1)]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        cluster_id = str(_kafka_uuid())
        for node in self.nodes:
            self._write_properties(node, voters)
        with ThreadPoolExecutor(self.size) as pool:  # each format is a JVM start: do them side by side
            list(pool.map(lambda n: self._format(jars, n, cluster_id), self.nodes))
        for node in self.nodes:
            log = open(node.log_path, "ab")  # noqa: SIM115 - the child holds it; closed right after Popen
            try:
                node.proc = subprocess.Popen(
                    java_command(jars, "kafka.Kafka", str(node.properties), heap=self.heap, log_level="INFO",
                                 log4j_dir=self.directory),
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                log.close()
        try:
            wait_until(self._all_brokers_up, timeout, interval=0.5, message=f"{self.size} Kafka broker(s) up")
        except BaseException:
            tails = "\n".join(f"--- node {n.node_id}\n{n.log_tail()}" for n in self.nodes)
            self.stop()
            raise RuntimeError(f"Kafka did not start:\n{tails}") from None
        return self

    def _all_brokers_up(self) -> bool:
        from confluent_kafka.admin import AdminClient

        for node in self.nodes:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"Kafka node {node.node_id} exited with {node.proc.returncode}")
            try:  # a plain connect first: a client polling a closed port only fills the log with refusals
                socket.create_connection(("127.0.0.1", node.port), timeout=1).close()
            except OSError:
                return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 5000})
        return len(admin.list_topics(timeout=5).brokers) == self.size

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM every node (a clean shutdown), then SIGKILL what is still there; by PID only."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _kafka_uuid() -> str:
    """A cluster id the way ``kafka-storage random-uuid`` makes one: 16 random bytes, URL-safe base64."""
    import base64

    while True:  # Kafka refuses ids that start with "-" (they read as a command-line flag)
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
