"""Which of a local cluster's ports are taken, and what to run instead.

Checked before any broker starts: a broker that cannot bind exits during
start-up with the reason in its log, where a new user does not look.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class PortUse:
    port: int
    role: str  # "Kafka" or "admin HTTP"
    broker: int


def port_free(host: str, port: int) -> bool:
    """True if a listener could bind ``host:port`` now (as the broker does, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def planned(brokers: int, kafka_port: int, http_port: int) -> list[PortUse]:
    """Broker ``i`` listens on ``kafka_port + i`` and serves admin HTTP on ``http_port + i``."""
    uses = [PortUse(kafka_port + i, "Kafka", i) for i in range(brokers)]
    return uses + [PortUse(http_port + i, "admin HTTP", i) for i in range(brokers)]


def taken(host: str, brokers: int, kafka_port: int, http_port: int) -> list[PortUse]:
    return [u for u in planned(brokers, kafka_port, http_port) if not port_free(host, u.port)]


def suggest(host: str, brokers: int, kafka_port: int, http_port: int) -> tuple[int, int] | None:
    """Free first ports that keep the asked-for endings (9092, 9644 -> 29092, 29644).

    Looked for between 20000 and Linux's ephemeral range (from 32768), where
    outgoing connections do not take them from under the brokers.
    """
    for base in (*range(29000, 32000, 1000), *range(20000, 29000, 1000)):
        k, h = base + kafka_port % 1000, base + http_port % 1000
        if abs(k - h) >= brokers and max(k, h) + brokers < 32768 and not taken(host, brokers, k, h):
            return k, h
    return None


def conflict_message(host: str, brokers: int, kafka_port: int, http_port: int, conflicts: list[PortUse]) -> str:
    lines = [f"ports already in use on {host}:"]
    lines += [f"  {u.port} ({u.role} of broker {u.broker})" for u in conflicts]
    alt = suggest(host, brokers, kafka_port, http_port)
    k, h = alt if alt is not None else (29092, 29644)
    lines += [
        "choose other first ports (broker i uses PORT+i), for example:",
        f"  floe local up --brokers {brokers} --kafka-port {k} --http-port {h}",
        f"  make run BROKERS={brokers} KAFKA_PORT={k} HTTP_PORT={h}",
    ]
    return "\n".join(lines)
