"""Run one broker until it is told to stop; map failures to exit codes.

Exit codes: 0 after a drain, 1 lost controller lease / second signal,
2 start-up failure (reason logged), 3 session fenced.
"""

from __future__ import annotations

import asyncio
import gc
import signal

import structlog

from .admin_http import server as admin_server
from .app import Broker
from .config import BrokerConfig, load_secrets
from .errors import StartupError
from .storage.factory import open_store

log = structlog.get_logger(__name__)

# The cyclic garbage collector's thresholds for a running broker: CPython's default (a young
# collection every 700 container allocations) made a Fetch of 1,000 partitions spend a third of
# its CPU in collections that find almost nothing (request objects die young, without cycles).
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Collect less often, and never again scan what start-up built (it lives as long as the broker)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def install_signal_handlers(broker: Broker) -> None:
    """First SIGTERM/SIGINT drains; a second one exits at once."""
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_term() -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            log.warning("second signal: exiting without drain")
            broker.exit_code = 1
            broker.stopped.set()
            return
        asyncio.ensure_future(broker.drain())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)


async def run_broker(cfg: BrokerConfig) -> int:
    try:
        store = open_store(
            cfg.storage,
            cluster=cfg.cluster,
            s3_endpoint=cfg.s3_endpoint,
            s3_region=cfg.s3_region,
            s3_path_style=cfg.s3_path_style,
            fsync=cfg.fsync,
        )
        secrets = load_secrets(cfg)
    except ValueError as exc:
        log.error("cannot start", reason=str(exc))
        return 2
    broker = Broker(cfg, store, secrets=secrets)
    install_signal_handlers(broker)
    runner = None
    try:
        runner = await admin_server.start(broker, *cfg.http)
        await broker.start()
        tune_gc()
    except StartupError as exc:
        log.error("cannot start", reason=str(exc))
        await broker.stop()
        if runner is not None:
            await runner.cleanup()
        return 2
    except OSError as exc:
        log.error("cannot start", reason=f"admin HTTP {cfg.http}: {exc}")
        await broker.stop()
        return 2
    await broker.stopped.wait()
    await broker.stop()
    if runner is not None:
        await runner.cleanup()
    log.info("broker stopped", exit_code=broker.exit_code)
    return broker.exit_code
