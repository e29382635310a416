"""The broker's Kafka listeners from its configuration: specs, TLS contexts, SASL mechanisms, principal rules.

Kept apart from ``app`` so the composition root stays a list of parts: this
module turns ``--listeners``, ``--ssl-*`` and ``--sasl-*`` into started
:class:`~.listener.KafkaListener` objects, and refuses contradictory settings
at start-up with a reason (a SASL_SSL listener without ``--ssl-dir``, an
unknown mechanism, a rule that does not parse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import BrokerConfig
from ..errors import StartupError
from ..security.listeners import ListenerConfigError, ListenerSpec, parse_listeners
from ..security.sasl import parse_mechanisms
from ..security.ssl_principal import MappingError, parse_rules
from ..security.tls import TlsConfigError, TlsContexts
from .conn import Dispatch
from .listener import KafkaListener


def listener_specs(cfg: BrokerConfig) -> list[ListenerSpec]:
    try:
        return parse_listeners(cfg.listeners, cfg.advertised_listeners, cfg.listener_security_protocol_map,
                               listen=cfg.listen, advertise=cfg.advertise)
    except ListenerConfigError as exc:
        raise StartupError(str(exc)) from exc


@dataclass
class Endpoints:
    listeners: list[KafkaListener] = field(default_factory=list)
    tls: TlsContexts | None = None

    async def start(self) -> None:
        for listener in self.listeners:
            try:
                await listener.start()
            except OSError as exc:
                raise StartupError(f"cannot listen on {listener.host}:{listener.port} ({listener.name}): "
                                   f"{exc}") from exc

    async def stop(self) -> None:
        for listener in self.listeners:
            await listener.stop()


def build_endpoints(cfg: BrokerConfig, dispatch: Dispatch, specs: list[ListenerSpec]) -> Endpoints:
    try:
        mechanisms = parse_mechanisms(cfg.sasl_enabled_mechanisms)
        rules = parse_rules(cfg.ssl_principal_mapping_rules)
    except (ValueError, MappingError) as exc:
        raise StartupError(str(exc)) from exc
    tls = None
    if any(s.tls for s in specs):
        if not cfg.ssl_dir:
            names = [s.name for s in specs if s.tls]
            raise StartupError(f"listeners {names} use TLS: give --ssl-dir (tls.crt, tls.key, ca.crt)")
        try:
            tls = TlsContexts(cfg.ssl_dir, cfg.ssl_client_auth, interval_s=cfg.ssl_reload_interval_ms / 1000)
        except TlsConfigError as exc:
            raise StartupError(str(exc)) from exc
    if any(s.sasl for s in specs) and not mechanisms:
        raise StartupError("a SASL listener needs at least one of --sasl-enabled-mechanisms")
    listeners = [
        KafkaListener(dispatch, host=s.host, port=s.port, max_request_bytes=cfg.socket_request_max_bytes,
                      max_inflight=cfg.max_inflight_requests, idle_timeout=cfg.idle_timeout_s, spec=s,
                      tls=tls, mechanisms=mechanisms, principal_rules=rules,
                      handshake_timeout_s=cfg.ssl_handshake_timeout_ms / 1000)
        for s in specs
    ]
    return Endpoints(listeners, tls)
