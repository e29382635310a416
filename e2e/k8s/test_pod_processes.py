"""No pod process outlives the kubelet stand-in: its own clean-up, and the harness's sweep after it.

Runs without a control plane: the stand-in's process handling is exercised
directly, on containers whose main process forks a child, so a group left
half-killed would show.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import podprocesses  # noqa: E402

kubelet = pytest.importorskip("kubelet", reason="the stand-in needs the operator's packages")


def forking_container(name: str) -> Any:
    """A container whose command leaves a child behind in its group, as ``sh -c 'x & y'`` does."""
    return kubelet.Container(name, {}, {}, ["sh", "-c", "sleep 300 & sleep 300"])


def test_the_stand_in_kills_every_process_group_it_started(tmp_path: pathlib.Path) -> None:
    node = tmp_path / "node"

    async def scenario() -> list[int]:
        stand_in = kubelet.Kubelet(kube=None, workdir=node)  # type: ignore[arg-type]
        pod = kubelet.Pod("ns", "p", "uid-1", "127.0.0.1", tmp_path, {})
        for name in ("a", "b"):
            container = forking_container(name)
            pod.containers.append(container)
            await stand_in._launch(pod, container)
        await asyncio.sleep(0)
        podprocesses.wait_until(node, lambda pids: len(pids) >= 4)  # two shells, at least a child each
        stand_in.kill_every_group()
        for container in pod.containers:
            await container.process.wait()
        return podprocesses.wait_until(node, lambda pids: not pids)

    try:
        assert asyncio.run(scenario()) == [], "processes outlived the stand-in's clean-up"
    finally:
        podprocesses.kill_all(node)  # a failing run leaves nothing either


def test_the_sweep_kills_what_carries_the_marker_and_nothing_else(tmp_path: pathlib.Path) -> None:
    node = tmp_path / "node"
    tagged = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], start_new_session=True,
                              env={**os.environ, **podprocesses.marker(node)})  # fmt: skip
    other = subprocess.Popen(["sleep", "300"], env={**os.environ, **podprocesses.marker(tmp_path / "elsewhere")})
    try:
        alive = podprocesses.wait_until(node, lambda pids: len(pids) >= 2)  # the shell and its children
        killed = podprocesses.kill_all(node)
        assert set(alive) <= set(killed) and tagged.pid in killed
        assert podprocesses.find(node) == []
        assert other.poll() is None
    finally:
        for proc in (tagged, other):
            proc.kill()
            proc.wait()
