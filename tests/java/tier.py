"""The Java test tier: build the scenario drivers against a kafka-clients line, run one, read its verdict.

``pom.xml`` here builds ``dev.floe.javatier.Main`` against whichever
``kafka.version`` is asked, into ``~/.cache/floe/java-tier/<version>``
(``$FLOE_KAFKA_CACHE`` moves it), never into the repository. A build is
reused while the sources and the pom are unchanged (a stamp of their hash).
Maven runs offline first (``-o``: fast when the repository is warm) and online
only if that fails, so CI downloads once.

Every driver prints one ``VERDICT {json}`` line: the steps it ran, each with
``ok`` and what a Java application saw, so tests assert per step.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.infra.apache_kafka import cache_root

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
MAIN = "dev.floe.javatier.Main"
# Kafka Streams and Kafka Connect run from their own project, on the newest line only
PLATFORM = HERE / "platform"
PLATFORM_MAIN = "dev.floe.platform.Main"
CONNECT_MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
# the newest 4.x line Maven Central serves, and the 3.x line most applications still run
CLIENT_VERSIONS = ("4.4.0", "3.9.1")


class JavaUnavailable(RuntimeError):
    """No java or mvn here, or the build failed to resolve: the tier's tests skip with this reason."""


def _stamp(project: Path) -> str:
    digest = hashlib.sha256((project / "pom.xml").read_bytes())
    for src in sorted((project / "src").rglob("*")):
        if not src.is_file():
            continue
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    return digest.hexdigest()


def build(version: str, *, project: Path = HERE, timeout: float = 900) -> Path:
    """The directory holding ``classes/`` and ``lib/`` of ``project``'s drivers built against Kafka ``version``.

    ``project`` is this directory (the client drivers, ``java-tier``) or ``PLATFORM`` (Streams and
    Connect, ``java-platform``).
    """
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise JavaUnavailable(f"`{tool}` is not installed")
    target = cache_root() / ("java-tier" if project == HERE else f"java-{project.name}") / version
    target.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(project)
    with open(target.parent / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes build one version once
        stamp_file = target / ".stamp"
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return target
        cmd = ["mvn", "-q", "-B", "-f", str(project / "pom.xml"), f"-Dkafka.version={version}",
               f"-Dtier.dir={target}", "package"]
        done = None
        for offline in (["-o"], []):
            try:
                done = subprocess.run([*cmd[:1], *offline, *cmd[1:]], capture_output=True, text=True,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0:
                break
        if done is None or done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:] if done else "timed out"
            raise JavaUnavailable(f"building {project.name} against Kafka {version} failed:\n{tail}")
        stamp_file.write_text(stamp)
    return target


def java_command(tier: Path, main: str, *args: str, log_level: str = "error") -> list[str]:
    """``java`` running ``main`` on the built classes and their jars, slf4j logging to stderr at ``log_level``."""
    classpath = os.pathsep.join([str(tier / "classes"), str(tier / "lib" / "*")])
    return ["java", "-Xmx384m", "-XX:+UseSerialGC", f"-Dorg.slf4j.simpleLogger.defaultLogLevel={log_level}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp", classpath, main, *args]


def command(tier: Path, scenario: str, bootstrap: str, *args: str) -> list[str]:
    return java_command(tier, MAIN, scenario, bootstrap, *args)


def verdict_of(stdout: str, stderr: str = "") -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("VERDICT "):
            parsed: dict[str, Any] = json.loads(line[len("VERDICT "):])
            return parsed
    raise AssertionError(f"the Java driver printed no verdict:\n{stdout[-2000:]}\n{stderr[-4000:]}")


def run(tier: Path, scenario: str, bootstrap: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run one scenario to completion and return its verdict (a ``fatal`` key if it stopped early)."""
    done = subprocess.run(command(tier, scenario, bootstrap, *args), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return verdict_of(done.stdout, done.stderr)


def start(tier: Path, scenario: str, bootstrap: str, *args: str, log: Path) -> subprocess.Popen[str]:
    """Start a long-running scenario (``produce-steady``); its stdout (the verdict) is read at the end."""
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command(tier, scenario, bootstrap, *args), stdout=subprocess.PIPE, stderr=err,
                                text=True)
