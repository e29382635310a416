"""The cluster secret and admin token of a local cluster, generated once in ``DIR/secrets/``.

``floe local up`` is secure by default at no cost: the first run writes two
random values (mode 0600, in a 0700 directory) and every broker it starts
reads them from those files, so they never appear in a process list or a log.
Later runs on the same state directory reuse them, so an exported
``FLOE_ADMIN_TOKEN`` stays valid across restarts.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

CLUSTER_SECRET = "cluster-secret"
ADMIN_TOKEN = "admin-token"


@dataclass(frozen=True)
class LocalSecrets:
    directory: Path

    @property
    def cluster_secret_file(self) -> Path:
        return self.directory / CLUSTER_SECRET

    @property
    def admin_token_file(self) -> Path:
        return self.directory / ADMIN_TOKEN

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def broker_flags(self) -> list[str]:
        """What every local broker is started with: the files, never the values."""
        return ["--cluster-secret-file", str(self.cluster_secret_file),
                "--admin-token-file", str(self.admin_token_file)]

    def export_hint(self) -> str:
        return f"export FLOE_ADMIN_TOKEN=$(cat {self.admin_token_file})"


def _write_once(path: Path) -> None:
    if path.exists() and path.read_text().strip():
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")


def ensure(state: Path) -> LocalSecrets:
    """The state directory's secrets, created on first use."""
    directory = state / "secrets"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    found = LocalSecrets(directory)
    _write_once(found.cluster_secret_file)
    _write_once(found.admin_token_file)
    return found
