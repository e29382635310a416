"""Contradictory security settings stop the broker at start-up, with the reason, before it joins the cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.broker import BrokerProcess, free_port


@pytest.mark.parametrize(("flags", "reason"), [
    (["--listeners", "SASL_SSL://127.0.0.1:{port}"], "uses TLS: give --ssl-dir"),
    (["--listeners", "CLIENT://127.0.0.1:{port}"], "CLIENT has no security protocol"),
    (["--listeners", "SASL_PLAINTEXT://127.0.0.1:{port}", "--sasl-enabled-mechanisms", "GSSAPI"],
     "unsupported SASL mechanisms"),
    (["--listeners", "SSL://127.0.0.1:{port}", "--ssl-dir", "/nonexistent"], "cannot load TLS files"),
    (["--sasl-bootstrap-users-file", "/nonexistent"], "cannot read /nonexistent"),
])
def test_bad_security_settings_exit_2_with_the_reason(tmp_path: Path, flags: list[str], reason: str) -> None:
    port = free_port()
    proc = BrokerProcess(storage=f"file://{tmp_path / 'bucket'}", cluster="bad", log_path=tmp_path / "broker.log",
                         env={}, extra=[f.format(port=port) for f in flags])
    proc.start(wait=False)
    try:
        assert proc.proc is not None
        assert proc.proc.wait(60) == 2
        log = proc.log_text()
        assert reason in log
        if "--listeners" in flags:
            assert "broker registered" not in log, "refused before joining the cluster"
    finally:
        proc.stop()
