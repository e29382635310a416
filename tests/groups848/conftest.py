"""Brokers for the KIP-848 tier: short consumer-group heartbeats and sessions, so rebalances are quick."""

from __future__ import annotations

FAST_848 = ("--group-consumer-heartbeat-interval-ms", "300", "--group-consumer-session-timeout-ms", "6000")
