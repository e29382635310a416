"""Fixtures the reliability tests share with the CLI tests, and the network-namespace ones."""

import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.cli.conftest import free_ranges  # noqa: F401 - a fixture, found by name
from tests.reliability.netns import Netns, namespaces_unavailable


@pytest.fixture
def netns() -> Iterator[Callable[[], Netns]]:
    """Make network namespaces (``netns()``); all are deleted, with their links, at teardown.

    Skips the test where namespaces cannot be made (not root, no iproute2, a
    sandbox that refuses them).
    """
    why = namespaces_unavailable()
    if why:
        pytest.skip(why)
    made: list[Netns] = []

    def make() -> Netns:
        try:
            ns = Netns.create()
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot create a network namespace here: {exc}")
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in made:
            ns.delete()
