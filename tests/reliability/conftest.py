"""Fixtures the reliability tests share with the CLI tests."""

from tests.cli.conftest import free_ranges  # noqa: F401 - a fixture, found by name
