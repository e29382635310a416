"""The brokers of one ``floe local up``: start, wait ready, watch, stop; every step told on the console.

A new user sees only this console, so each broker's fate is printed where it
happens: ready (with its node id and how long it took), failed at start-up
(with the reason from its log and the log's path), exited while running, and
draining -> exited with its code when the cluster stops.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from floe_cli.local import processes, startup_log

# What the runner's exit codes mean (floe_broker.runner).
EXIT_MEANING = {
    0: "drained",
    1: "stopped without drain or lost the controller lease",
    2: "could not start",
    3: "fenced: another process took over its session",
}


def exit_status(code: int) -> str:
    """``exit code 2``, or ``killed by SIGKILL`` for a negative ``Popen.returncode``."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def describe_exit(code: int) -> str:
    meaning = EXIT_MEANING.get(code)
    return f"{exit_status(code)} ({meaning})" if meaning else exit_status(code)


def say(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


@dataclass
class LocalBroker:
    index: int
    kafka: str
    http: str
    log_path: Path
    log_offset: int  # where this run's output starts in the (appended) log
    proc: subprocess.Popen[bytes]
    started: float
    node: int | None = None
    reported_exit: bool = False

    @property
    def label(self) -> str:
        return f"broker {self.index}" if self.node is None else f"broker {self.index} (node {self.node})"

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll()

    def failure(self) -> str:
        return startup_log.failure_reason(self.log_path, self.log_offset)


def start(*, count: int, state: Path, storage: str, cluster: str, host: str, kafka_port: int, http_port: int,
          extra: list[str]) -> list[LocalBroker]:
    brokers = []
    for i in range(count):
        log_path = state / f"broker-{i}.log"
        offset = startup_log.size(log_path)
        cmd = processes.broker_command(storage=storage, cluster=cluster, host=host, kafka_port=kafka_port + i,
                                       http_port=http_port + i, extra=extra)
        proc = processes.launch(cmd, log_path)
        brokers.append(LocalBroker(i, f"{host}:{kafka_port + i}", f"{host}:{http_port + i}", log_path, offset, proc,
                                   time.monotonic()))
    return brokers


def wait_ready(brokers: list[LocalBroker], *, timeout: float, stopping: Callable[[], bool]) -> bool:
    """Poll every broker at once until all serve; False (after saying why) if one exits or is too slow."""
    pending = list(brokers)
    begun = time.monotonic()
    next_note = begun + 5.0
    while pending:
        if stopping():
            say("interrupted while brokers were starting", err=True)
            return False
        failed = [b for b in pending if b.exit_code is not None]
        for b in failed:
            b.reported_exit = True
            say(f"broker {b.index} could not start ({exit_status(b.exit_code or 0)}): {b.failure()}\n"
                f"  log: {b.log_path}", err=True)
        if failed:
            return False
        for b in list(pending):
            ready = processes.readiness(b.http)
            if ready is not None:
                b.node = ready.node
                pending.remove(b)
                say(f"broker {b.index} ready ({len(brokers) - len(pending)}/{len(brokers)}): node {b.node}  "
                    f"kafka {b.kafka}  admin http://{b.http}  {time.monotonic() - b.started:.1f} s")
        now = time.monotonic()
        if pending and now - begun > timeout:
            for b in pending:
                say(f"broker {b.index} is not ready after {timeout:.0f} s; its log ends with:\n"
                    f"{startup_log.failure_reason(b.log_path, b.log_offset)}\n  log: {b.log_path}", err=True)
            return False
        if pending and now >= next_note:
            say(f"waiting for {len(pending)} more broker(s): {', '.join(str(b.index) for b in pending)} "
                f"({now - begun:.0f} s)")
            next_note = now + 5.0
        time.sleep(0.1)
    return True


def report_exits(brokers: list[LocalBroker]) -> None:
    """Say once for each broker that has exited on its own while the cluster runs."""
    for b in brokers:
        code = b.exit_code
        if code is not None and not b.reported_exit:
            b.reported_exit = True
            say(f"{b.label} exited: {describe_exit(code)}; log: {b.log_path}", err=code != 0)


def stop(brokers: list[LocalBroker], *, timeout: float, signals: Callable[[], int]) -> bool:
    """SIGTERM (drain) every running broker and wait; True if each one signalled here exited 0.

    ``signals`` counts the user's Ctrl-Cs: one more during the stop is passed on
    as a second SIGTERM, which a broker takes as "exit now, without draining".
    """
    running = [b for b in brokers if b.exit_code is None]
    if not running:
        return all(b.exit_code == 0 for b in brokers)
    say(f"stopping {len(running)} broker(s): each drains (its partitions move to the others), then exits")
    begun = time.monotonic()
    for b in running:
        b.proc.send_signal(signal.SIGTERM)
        say(f"{b.label}: draining")
    seen_signals = signals()
    clean = True
    pending = list(running)
    while pending:
        for b in list(pending):
            code = b.exit_code
            if code is not None:
                pending.remove(b)
                b.reported_exit = True
                clean = clean and code == 0
                say(f"{b.label}: exited, {describe_exit(code)}, after {time.monotonic() - begun:.1f} s")
                if code == 2 and b.node is None:  # it was still starting: say why it gave up
                    say(f"  {b.failure()}\n  log: {b.log_path}", err=True)
        if not pending:
            break
        if signals() > seen_signals:
            seen_signals = signals()
            say("stopping now, without draining (Ctrl-C again)")
            for b in pending:
                b.proc.send_signal(signal.SIGTERM)
        if time.monotonic() - begun > timeout:
            for b in pending:
                b.proc.kill()
                b.proc.wait()
                b.reported_exit = True
                say(f"{b.label}: did not exit within {timeout:.0f} s; killed", err=True)
            return False
        time.sleep(0.05)
    return clean
