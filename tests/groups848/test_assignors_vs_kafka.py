"""Our server-side assignors against Kafka 4.4's own (``UniformAssignor``, ``RangeAssignor``) as an oracle.

``java/AssignorOracle.java`` runs Kafka's assignor classes from the cached
jars on the same scenarios. Kafka orders members by its internal map; the
oracle is given them in our order (instance id, else member id), so the
assignments must be identical: fresh groups, members joining and leaving a
settled group (stickiness), several topics, static members.
"""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from floe_broker.groups.assignors import Assignment, member_order, range_assign, uniform_assign
from tests.infra.apache_kafka import KafkaUnavailable, kafka_jars

SOURCE = Path(__file__).parent / "java" / "AssignorOracle.java"
Scenario = tuple[str, dict[str, int], dict[str, tuple[str | None, set[str], Assignment]]]


def kafka_id(n: int) -> str:
    return base64.urlsafe_b64encode(uuid.UUID(int=n).bytes).decode().rstrip("=")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    try:
        jars = kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("oracle")
    subprocess.run(["javac", "-cp", f"{jars}/*", "-d", str(out), str(SOURCE)], check=True, timeout=300)
    return ["java", "-Xmx256m", "-cp", f"{out}:{jars}/*", "AssignorOracle"]


def ask_kafka(cmd: list[str], scenarios: list[Scenario]) -> list[dict[str, Assignment]]:
    lines = []
    for assignor, topics, members in scenarios:
        lines.append(f"assignor {assignor}")
        lines += [f"topic {t} {n}" for t, n in topics.items()]
        for m in member_order({mid: inst for mid, (inst, _, _) in members.items()}):
            inst, subs, current = members[m]
            cur = ";".join(f"{t}:{','.join(map(str, sorted(ps)))}" for t, ps in sorted(current.items()) if ps) or "-"
            lines.append(f"member {m} {inst or '-'} {','.join(sorted(subs))} {cur}")
        lines.append("end")
    done = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Assignment]] = [{}]
    for line in done.stdout.splitlines():
        if line == "end":
            results.append({})
            continue
        member, parts = line.split(" ", 1)
        results[-1][member] = {} if parts == "-" else {
            t: {int(p) for p in ps.split(",")} for t, ps in (x.split(":") for x in parts.split(";"))}
    return results[:-1]


def ours(scenario: Scenario) -> dict[str, Assignment]:
    assignor, topics, members = scenario
    fn = range_assign if assignor == "range" else uniform_assign
    got = fn({m: subs for m, (_, subs, _) in members.items()}, {m: inst for m, (inst, _, _) in members.items()},
             topics, {m: cur for m, (_, _, cur) in members.items()})
    return {m: {t: ps for t, ps in a.items() if ps} for m, a in got.items()}


def scenarios(assignor: str, seed: int) -> list[Scenario]:
    rnd = random.Random(seed)
    out: list[Scenario] = []
    for _ in range(20):
        topics = {kafka_id(i + 1): rnd.randint(1, 13) for i in range(rnd.randint(1, 3))}
        names = [f"m{rnd.randint(0, 99):02d}-{i}" for i in range(rnd.randint(1, 6))]
        static = rnd.random() < 0.3
        members = {m: (f"pod-{rnd.randint(0, 99)}-{i}" if static else None, set(topics), {})
                   for i, m in enumerate(names)}
        out.append((assignor, topics, members))
    return out


def settle_then_change(cmd: list[str], assignor: str, seed: int) -> list[Scenario]:
    """Groups Kafka has assigned, then one member leaves and two join: the next round starts from Kafka's."""
    first = scenarios(assignor, seed)
    settled = ask_kafka(cmd, first)
    rnd = random.Random(seed + 1)
    out: list[Scenario] = []
    for (a, topics, members), result in zip(first, settled, strict=True):
        after = {m: (inst, subs, result.get(m, {})) for m, (inst, subs, _) in members.items()}
        if len(after) > 1:
            after.pop(rnd.choice(sorted(after)))
        for j in range(2):
            after[f"new-{seed}-{j}"] = (None, set(topics), {})
        out.append((a, topics, after))
    return out


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_fresh_groups_get_what_kafka_computes(oracle: list[str], assignor: str) -> None:
    cases = scenarios(assignor, 7) + scenarios(assignor, 8)
    for case, kafka in zip(cases, ask_kafka(oracle, cases), strict=True):
        assert ours(case) == kafka, f"{case}: ours {ours(case)} kafka {kafka}"


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_members_joining_and_leaving_get_what_kafka_computes(oracle: list[str], assignor: str) -> None:
    cases = settle_then_change(oracle, assignor, 11) + settle_then_change(oracle, assignor, 12)
    for case, kafka in zip(cases, ask_kafka(oracle, cases), strict=True):
        assert ours(case) == kafka, f"{case}: ours {ours(case)} kafka {kafka}"
