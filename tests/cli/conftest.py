"""Running the ``floe`` command as a user does: a process, its exit code and what it prints."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from floe_cli.local.ports import port_free
from tests.infra.broker import ROOT

SOURCE_ROOTS = os.pathsep.join(str(ROOT / root) for root in ("api", "broker", "cli", "operator"))


def floe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "floe_cli", *args]


def floe_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SOURCE_ROOTS, **extra}


@pytest.fixture
def floe() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``floe ARGS...`` to completion; ``input`` feeds stdin."""

    def run(*args: str, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(floe_command(*args), input=input, capture_output=True, text=True, timeout=timeout,
                              env=floe_env(**(env or {})))

    return run


@pytest.fixture
def free_ranges() -> Callable[[int], tuple[int, int]]:
    """Two first ports (Kafka, admin) with ``n`` free consecutive ports each, away from the defaults."""

    def pick(n: int) -> tuple[int, int]:
        for _ in range(200):
            k = random.randrange(20000, 32000 - 2 * n)
            h = k + n
            if all(port_free("127.0.0.1", p) for p in range(k, k + 2 * n)):
                return k, h
        raise RuntimeError("no free port range")

    return pick


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
