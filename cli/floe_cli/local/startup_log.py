"""Why a broker did not start, read back from its log for the console.

A broker that cannot start logs one ``cannot start`` event with a ``reason``
and exits 2 (see ``floe_broker.runner``); in a local cluster that line lands
in ``DIR/broker-N.log``. The log is appended to across runs, so reading starts
at the offset the file had when this run launched the broker.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REASON = re.compile(r"""reason=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+)""")


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _reason_in(line: str) -> str | None:
    """The ``reason`` of a ``cannot start`` line, JSON or console-rendered; None for other lines."""
    if "cannot start" not in line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict):
        return str(event.get("reason", "")) or None
    match = _REASON.search(line)
    if match is None:
        return None
    value = match.group(1)
    if value[0] in "\"'":
        try:
            return str(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            return value[1:-1]
    return value


def failure_reason(path: Path, offset: int = 0, tail: int = 5) -> str:
    """The logged start-up reason, or failing that the last ``tail`` lines (a traceback, a flag error)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    for line in lines:
        reason = _reason_in(line)
        if reason:
            return reason
    last = [line for line in lines if line.strip()][-tail:]
    return "\n".join(last) if last else "(the log is empty)"
