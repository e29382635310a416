"""The operator's client of ``/v1/links`` against a real broker: what a StreamLink's status is made of.

No source Kafka is needed: the link points at a port nothing listens on, so
the status must say the source cannot be reached, and a SASL link whose
password file is missing must name the file (never a password). ``put`` is
declarative (create, then unchanged), and ``delete`` forgets the link.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from floe_api.links import LinkDefinition, LinkSource
from floe_operator.link_admin import LinkAdmin
from tests.infra.broker import free_port


async def _until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.2)


async def test_link_admin_puts_shows_source_errors_and_deletes(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    nowhere = f"127.0.0.1:{free_port()}"
    admin = LinkAdmin(f"http://{b.http}")
    try:
        plain = LinkDefinition(name="mig", source=LinkSource(bootstrap_servers=nowhere), topics=["orders"])
        created = await admin.put(plain)
        assert created.name == "mig" and created.bootstrap_servers == nowhere
        assert (await admin.put(plain)).name == "mig"  # unchanged: nothing to do

        async def unreachable() -> str | None:
            status = await admin.status("mig")
            return status.error if status is not None and status.error else None

        error = await _until(unreachable, 60, "the link's error")
        assert f"cannot reach {nowhere}" in error

        sasl = LinkDefinition(name="mig", topics=["orders"], source=LinkSource(
            bootstrap_servers=nowhere, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
            sasl_username="floe", sasl_password_file="/etc/floe/link-secrets/mig.password"))
        await admin.put(sasl)

        async def missing_file() -> str | None:
            status = await admin.status("mig")
            found = status.error if status is not None else None
            return found if found and "password file" in found else None

        error = await _until(missing_file, 60, "the missing password file in the status")
        assert "/etc/floe/link-secrets/mig.password" in error and "mount the Secret" in error
        assert await admin.delete("mig")
        assert await admin.status("mig") is None and not await admin.delete("mig")
    finally:
        await admin.close()
