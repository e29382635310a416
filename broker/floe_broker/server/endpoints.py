"""The broker's Kafka listeners from its configuration: specs, TLS contexts, SASL mechanisms, principal rules.

Per listener, as Kafka's ``listener.name.<name>.*`` settings, the environment
may override the certificate directory, the client-certificate rule and the
SASL mechanisms: ``FLOE_SSL_DIR_<NAME>``, ``FLOE_SSL_CLIENT_AUTH_<NAME>``,
``FLOE_SASL_ENABLED_MECHANISMS_<NAME>`` (the operator sets these for a
StreamCluster with several listeners).

Kept apart from ``app`` so the composition root stays a list of parts: this
module turns ``--listeners``, ``--ssl-*`` and ``--sasl-*`` into started
:class:`~.listener.KafkaListener` objects, and refuses contradictory settings
at start-up with a reason (a SASL_SSL listener without ``--ssl-dir``, an
unknown mechanism, a rule that does not parse).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    tls: list[TlsContexts] = field(default_factory=list)  # one per certificate directory, each watched

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


def listener_override(env: Mapping[str, str], setting: str, listener: str) -> str | None:
    """``FLOE_<SETTING>_<LISTENER>`` from the environment, if set (a per-listener override)."""
    return env.get(f"FLOE_{setting}_{listener.upper()}") or None


def build_endpoints(cfg: BrokerConfig, dispatch: Dispatch, specs: list[ListenerSpec],
                    env: Mapping[str, str] | None = None) -> Endpoints:
    env = os.environ if env is None else env
    try:
        rules = parse_rules(cfg.ssl_principal_mapping_rules)
    except MappingError as exc:
        raise StartupError(str(exc)) from exc
    contexts: dict[tuple[str, str], TlsContexts] = {}
    listeners = []
    for s in specs:
        try:
            mechanisms = parse_mechanisms(listener_override(env, "SASL_ENABLED_MECHANISMS", s.name)
                                          or cfg.sasl_enabled_mechanisms)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        if s.sasl and not mechanisms:
            raise StartupError(f"SASL listener {s.name} needs at least one of --sasl-enabled-mechanisms")
        tls = None
        if s.tls:
            directory = listener_override(env, "SSL_DIR", s.name) or cfg.ssl_dir
            client_auth = listener_override(env, "SSL_CLIENT_AUTH", s.name) or cfg.ssl_client_auth
            if not directory:
                raise StartupError(f"listener {s.name} uses TLS: give --ssl-dir (tls.crt, tls.key, ca.crt) "
                                   f"or FLOE_SSL_DIR_{s.name.upper()}")
            tls = contexts.get((directory, client_auth))
            if tls is None:
                try:
                    tls = TlsContexts(directory, client_auth, interval_s=cfg.ssl_reload_interval_ms / 1000)
                except TlsConfigError as exc:
                    raise StartupError(str(exc)) from exc
                contexts[(directory, client_auth)] = tls
        listeners.append(
            KafkaListener(dispatch, host=s.host, port=s.port, max_request_bytes=cfg.socket_request_max_bytes,
                          max_inflight=cfg.max_inflight_requests, idle_timeout=cfg.idle_timeout_s, spec=s,
                          tls=tls, mechanisms=mechanisms, principal_rules=rules,
                          handshake_timeout_s=cfg.ssl_handshake_timeout_ms / 1000))
    return Endpoints(listeners, list(contexts.values()))
