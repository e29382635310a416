"""Clients in other languages against real Floe brokers: Node.js (kafkajs, @platformatic/kafka) and Go (franz-go).

Each client runs one scenario program (``tests/node/*.js``, ``tests/go/``) that
prints one JSON line of what it saw; the tests assert on that. The programs'
dependencies are pinned by ``tests/node/package-lock.json`` and
``tests/go/go.sum``: ``npm ci`` and ``go build`` run here, once per checkout
(node_modules and the Go binary are never committed). Without node/npm or go the
tests skip, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import ROOT, BrokerProcess

NODE_DIR = ROOT / "tests" / "node"
GO_DIR = ROOT / "tests" / "go"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "floe" / "polyglot"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BrokerProcess]]:
    """Two brokers on one file:// store: group coordinators and partition leaders spread over both."""
    tmp = tmp_path_factory.mktemp("polyglot")
    factory = BrokerFactory(tmp)
    store = StoreSpec(kind="file", url=f"file://{tmp / 'bucket'}")
    try:
        yield [factory(store, "--group-initial-rebalance-delay-ms", "0"),
               factory(store, "--group-initial-rebalance-delay-ms", "0")]
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``npm ci`` in tests/node when its node_modules is missing or older than the lockfile."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".floe-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(digest)
    return NODE_DIR / "node_modules"


@pytest.fixture(scope="session")
def franz_go_binary() -> Path:
    """The franz-go scenario, built with ``go build`` into a cache dir keyed by its sources."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed")
    sources = sorted(GO_DIR.glob("*.go")) + [GO_DIR / "go.mod", GO_DIR / "go.sum"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    binary = CACHE / f"franz-go-scenario-{digest}"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["go", "build", "-mod=readonly", "-o", str(binary), "."], cwd=GO_DIR,
                              capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"go build failed:\n{done.stdout}\n{done.stderr}")
    return binary


def run_scenario(cmd: list[str], cwd: Path, timeout: float = 420) -> dict[str, Any]:
    """Run one client scenario; its JSON report, or a failed test with what it printed."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON report from {cmd}:\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def topic_name(client: str) -> str:
    return f"{client}-{uuid.uuid4().hex[:6]}"
