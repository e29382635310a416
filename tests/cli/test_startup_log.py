"""The start-up reason is found in a broker log whichever renderer wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from floe_cli.local.startup_log import failure_reason

CONSOLE = ("2026-12-01T11:27:54.323618Z [error    ] cannot start                   "
           "reason=\"admin HTTP ('127.0.0.1', 29644): [Errno 98] address already in use\"\n")


def test_console_rendered_reason_is_unquoted(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    log.write_text("2026-12-01T11:27:54Z [info     ] starting\n" + CONSOLE)
    assert failure_reason(log) == "admin HTTP ('127.0.0.1', 29644): [Errno 98] address already in use"


def test_json_rendered_reason(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    event = {"event": "cannot start", "reason": "bucket 'x' does not exist", "level": "error"}
    log.write_text(json.dumps(event) + "\n")
    assert failure_reason(log) == "bucket 'x' does not exist"


def test_without_a_reason_the_last_lines_are_shown(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    log.write_text("Traceback (most recent call last):\n  File \"x\", line 1\nZeroDivisionError: division by zero\n")
    assert failure_reason(log, tail=2) == "  File \"x\", line 1\nZeroDivisionError: division by zero"


def test_reading_starts_at_this_runs_offset(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    log.write_text(CONSOLE)
    offset = log.stat().st_size
    with open(log, "a") as f:
        f.write('x [error    ] cannot start   reason="unsupported object store URL"\n')
    assert failure_reason(log, offset) == "unsupported object store URL"
