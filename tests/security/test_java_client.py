"""The Java client (kafka-clients) over SASL_SSL with SCRAM-SHA-512, creating its user as kafka-configs does.

``kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type users``
is AlterUserScramCredentials from the Java AdminClient; this test sends exactly
that, then logs in as the new user to produce and consume in a group. The
jars come from Maven Central through ``mvn`` (cached in ~/.m2 after the
first run); without Maven or the network the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import USERS, SecureBroker

JAVA = Path(__file__).parent / "java"


@pytest.fixture(scope="module")
def classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not (shutil.which("mvn") and shutil.which("javac")):
        pytest.skip("needs Maven and a JDK")
    out = tmp_path_factory.mktemp("java")
    got = subprocess.run(["mvn", "-q", "-f", str(JAVA / "pom.xml"), "dependency:copy-dependencies",
                          f"-DoutputDirectory={out / 'lib'}"], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"cannot fetch kafka-clients from Maven Central: {got.stdout[-300:]}{got.stderr[-300:]}")
    cp = ":".join(str(p) for p in sorted((out / "lib").glob("*.jar")))
    built = subprocess.run(["javac", "-cp", cp, "-d", str(out), str(JAVA / "SecureRoundTrip.java")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return f"{cp}:{out}"


def test_java_client_creates_a_user_and_round_trips_over_sasl_ssl(secure_broker: SecureBroker, classpath: str) -> None:
    topic = f"java-{uuid.uuid4().hex[:8]}"
    run = subprocess.run(["java", "-cp", classpath, "SecureRoundTrip", secure_broker.bootstrap("SASL_SSL"),
                          secure_broker.ca_file, "admin", USERS["admin"], "javauser", "java-pw-1", topic],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and "OK 20" in run.stdout, run.stdout[-2000:] + run.stderr[-3000:]
