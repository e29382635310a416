"""The TLS server context, from PEM files laid out as a Kubernetes TLS Secret, reloaded when they change.

``--ssl-dir`` holds ``tls.crt`` (the certificate chain), ``tls.key`` and,
for client certificates, ``ca.crt``: what cert-manager writes into a Secret
and Kubernetes mounts as files. cert-manager renews certificates by
rewriting those files, so :class:`TlsContexts` polls their modification
times and builds a fresh ``ssl.SSLContext``; each new connection takes the
current one, connections already open keep theirs. A rewrite that is half
done (or a bad file) keeps the previous context and logs why.

Client certificates (``--ssl-client-auth``): ``required`` refuses a client
without a certificate signed by ``ca.crt``, ``requested`` asks for one and
accepts clients without, ``none`` never asks.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CERT, KEY, CA = "tls.crt", "tls.key", "ca.crt"
CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsConfigError(ValueError):
    """The TLS files are missing or unusable at start-up."""


def build_context(directory: Path, client_auth: str) -> ssl.SSLContext:
    """A server context from the directory's PEM files (TLS 1.2 or later)."""
    if client_auth not in CLIENT_AUTH:
        raise TlsConfigError(f"ssl-client-auth must be one of {sorted(CLIENT_AUTH)}, got {client_auth!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(directory / CERT, directory / KEY)
        mode = CLIENT_AUTH[client_auth]
        if mode != ssl.CERT_NONE:
            ctx.load_verify_locations(cafile=directory / CA)
        ctx.verify_mode = mode
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load TLS files from {directory}: {exc}") from exc
    return ctx


class TlsContexts:
    """The current server context; :meth:`watch` replaces it when the files change."""

    def __init__(self, directory: str, client_auth: str, *, interval_s: float) -> None:
        self.directory = Path(directory)
        self.client_auth = client_auth
        self.interval_s = interval_s
        self._stamp = self._mtimes()
        self.context = build_context(self.directory, client_auth)
        self.generation = 1

    def _mtimes(self) -> tuple[int, ...]:
        names = (CERT, KEY, CA)
        out: list[int] = []
        for name in names:
            try:
                st = os.stat(self.directory / name)
                out.extend((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.extend((0, 0, 0))
        return tuple(out)

    async def check(self) -> bool:
        """Reload if any file changed; True if the context was replaced."""
        stamp = await asyncio.to_thread(self._mtimes)
        if stamp == self._stamp:
            return False
        try:
            ctx = await asyncio.to_thread(build_context, self.directory, self.client_auth)
        except TlsConfigError as exc:
            log.warning("TLS files changed but cannot be loaded; keeping the previous certificate", error=str(exc))
            return False
        self._stamp, self.context = stamp, ctx
        self.generation += 1
        log.info("TLS certificate reloaded", directory=str(self.directory), generation=self.generation)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()
