"""Kafka listeners as Kafka configures them: ``listeners``, ``advertised.listeners`` and the protocol map.

A listener has a name (``EXTERNAL``), a bind address, an advertised address
and one security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). Clients
are told the addresses of the listener they connected to, so one broker can
serve in-cluster clients in plaintext and outside clients over TLS. Without
``--listeners`` the broker has one PLAINTEXT listener on ``--listen`` /
``--advertise``, as before.

Pure parsing: no sockets here (``server/listener.py`` binds them).
"""

from __future__ import annotations

from dataclasses import dataclass

PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)


class ListenerConfigError(ValueError):
    """The listener settings contradict each other or cannot be parsed."""


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str
    protocol: str
    host: str
    port: int
    advertised_host: str
    advertised_port: int

    @property
    def tls(self) -> bool:
        return self.protocol in (SSL, SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self.protocol in (SASL_PLAINTEXT, SASL_SSL)


def _endpoints(text: str, what: str) -> dict[str, tuple[str, int]]:
    """``NAME://HOST:PORT,...`` -> {NAME: (HOST, PORT)}; an empty host means every interface."""
    out: dict[str, tuple[str, int]] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, address = item.partition("://")
        host, colon, port = address.rpartition(":")
        if not sep or not name or not colon or not port.isdigit():
            raise ListenerConfigError(f"{what}: expected NAME://HOST:PORT, got {item!r}")
        name = name.upper()
        if name in out:
            raise ListenerConfigError(f"{what}: listener {name} given twice")
        out[name] = (host.strip("[]"), int(port))
    return out


def _protocol_map(text: str | None) -> dict[str, str]:
    mapping = {p: p for p in PROTOCOLS}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, proto = item.partition(":")
        proto = proto.strip().upper()
        if not sep or proto not in PROTOCOLS:
            raise ListenerConfigError(
                f"listener-security-protocol-map: expected NAME:{'|'.join(PROTOCOLS)}, got {item!r}")
        mapping[name.strip().upper()] = proto
    return mapping


def _advertisable(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "", "::"} else host


def parse_listeners(
    listeners: str | None,
    advertised: str | None,
    protocol_map: str | None,
    *,
    listen: tuple[str, int],
    advertise: tuple[str, int] | None,
) -> list[ListenerSpec]:
    """Every listener, the first one being the broker's primary address (the one registered as host:port)."""
    if not listeners:
        if advertised:
            raise ListenerConfigError("advertised-listeners needs listeners")
        host, port = listen
        ahost, aport = advertise or (_advertisable(host), port)
        return [ListenerSpec(PLAINTEXT, PLAINTEXT, host, port, ahost, aport)]
    binds = _endpoints(listeners, "listeners")
    if not binds:
        raise ListenerConfigError("listeners is empty")
    adverts = _endpoints(advertised or "", "advertised-listeners")
    unknown = set(adverts) - set(binds)
    if unknown:
        raise ListenerConfigError(f"advertised-listeners names listeners that do not exist: {sorted(unknown)}")
    protocols = _protocol_map(protocol_map)
    ports = [port for _, port in binds.values() if port != 0]
    if len(ports) != len(set(ports)):
        raise ListenerConfigError("two listeners bind the same port")
    out = []
    for name, (host, port) in binds.items():
        if name not in protocols:
            raise ListenerConfigError(
                f"listener {name} has no security protocol: add {name}:PROTOCOL to listener-security-protocol-map")
        ahost, aport = adverts.get(name, (_advertisable(host), port))
        out.append(ListenerSpec(name, protocols[name], host or "0.0.0.0", port, ahost, aport))
    return out
