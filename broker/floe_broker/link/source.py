"""The source cluster of a link, through aiokafka's client: metadata, configs, raw fetches, group offsets.

aiokafka is used at its low level: a Fetch answers with the partition's
record batches as bytes, which is exactly what a mirror appends, so no record
is decoded on the way. Its admin client reads topic configs and committed
group offsets. Connections carry the link's TLS and SASL settings; the SASL
password is read from the file the link names, never stored or logged.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.offset import OffsetRequest
from aiokafka.structs import TopicPartition

from floe_api.links import LinkDefinition, LinkSource

log = structlog.get_logger(__name__)

READ_UNCOMMITTED = 0  # a mirror copies every batch, aborted ones and markers included
# Configs a source topic reports as set on it (DescribeConfigs config_source), not broker defaults.
_TOPIC_SOURCES = {1}  # DYNAMIC_TOPIC_CONFIG


class SourceError(Exception):
    """The source cluster could not answer (unreachable, refused, or an error code)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One partition's answer to a Fetch from the source."""

    error_code: int
    high_watermark: int
    log_start: int
    records: bytes


def connection_settings(source: LinkSource) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``source`` (the password read from its file here)."""
    kw: dict[str, Any] = {"bootstrap_servers": source.bootstrap_servers,
                          "security_protocol": source.security_protocol, "client_id": "floe-link"}
    if source.security_protocol in ("SSL", "SASL_SSL"):
        try:
            context: ssl.SSLContext = create_ssl_context(cafile=source.ssl_cafile)
        except OSError as exc:  # ssl.SSLError is one too
            raise SourceError(f"cannot load the source's CA file {source.ssl_cafile} on this broker ({exc}): "
                              "mount the Secret there, or fix ssl_cafile") from None
        kw["ssl_context"] = context
    if source.security_protocol.startswith("SASL"):
        password = _password(source.sasl_password_file) if source.sasl_password_file else None
        kw.update(sasl_mechanism=source.sasl_mechanism or "PLAIN", sasl_plain_username=source.sasl_username,
                  sasl_plain_password=password)
    return kw


def source_topic_gone(topic: str, partition: int) -> str:
    """What a mirror whose source partition no longer exists says (Floe keeps the topic: docs/architecture.md)."""
    return (f"{topic}-{partition} does not exist at the source (deleted there?); Floe keeps what it mirrored: "
            "promote with force to write here, or delete the link")


def _password(path: str) -> str:
    """The password in ``path``; a missing or unreadable file is a SourceError that names it (never its content)."""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SourceError(f"cannot read the source's SASL password file {path} on this broker ({exc.strerror}): "
                          "mount the Secret there, or fix sasl_password_file") from None


def chosen(names: list[str], regex: str | None, candidates: list[str]) -> list[str]:
    """The candidates a link's list or regular expression (full match) picks, internal topics never."""
    pattern = re.compile(regex) if regex else None
    return sorted(c for c in candidates if not c.startswith("__")
                  and (c in names or (pattern is not None and pattern.fullmatch(c) is not None)))


class SourceCluster:
    """One link's connections to its source cluster."""

    def __init__(self, definition: LinkDefinition) -> None:
        self.definition = definition
        self._client: AIOKafkaClient | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def _connected(self) -> AIOKafkaClient:
        if self._client is None:
            client = AIOKafkaClient(**connection_settings(self.definition.source), request_timeout_ms=15000)
            await self._open(client.bootstrap, client.close)
            self._client = client
        return self._client

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**connection_settings(self.definition.source), request_timeout_ms=15000)
            await self._open(admin.start, admin.close)
            self._admin = admin
        return self._admin

    async def _open(self, start: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[object]]) -> None:
        """Start a new connection; on failure close it and say which source could not be reached."""
        try:
            await start()
        except Exception as exc:
            await close()
            raise SourceError(f"cannot reach {self.definition.source.bootstrap_servers}: {exc!r}") from exc

    async def close(self) -> None:
        client, admin, self._client, self._admin = self._client, self._admin, None, None
        for c in (client, admin):
            if c is not None:
                try:
                    await c.close()
                except Exception as exc:  # closing a broken connection must not hide why it broke
                    log.debug("closing a source connection failed", error=repr(exc))

    async def topics(self) -> dict[str, int]:
        """Every topic the link picks on the source, with its partition count."""
        client = await self._connected()
        try:
            cluster = await client.fetch_all_metadata()
        except Exception as exc:
            raise SourceError(f"metadata from the source: {exc!r}") from exc
        names = chosen(self.definition.topics, self.definition.topic_regex, list(cluster.topics()))
        return {t: len(cluster.partitions_for_topic(t) or ()) for t in names}

    async def topic_configs(self, topics: list[str]) -> dict[str, dict[str, str]]:
        """The configs set on each topic at the source (what differs from its broker defaults)."""
        if not topics:
            return {}
        admin = await self._admin_client()
        try:
            replies = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        except Exception as exc:
            raise SourceError(f"topic configs from the source: {exc!r}") from exc
        out: dict[str, dict[str, str]] = {}
        for reply in replies:
            for resource in reply.resources:
                error_code, _msg, _rtype, name, entries = resource[:5]
                if error_code:
                    continue
                # v0 entries: name, value, read_only, is_default, is_sensitive; v1+: ..., config_source, ...
                out[name] = {e[0]: e[1] for e in entries if e[1] is not None and not e[4]
                             and (e[3] in _TOPIC_SOURCES if reply.API_VERSION >= 1 else not e[3])}
        return out

    async def fetch(self, topic: str, partition: int, offset: int, *, max_bytes: int,
                    max_wait_ms: int) -> Fetched:
        """The partition's batches from ``offset`` (bytes as stored at the source), from its leader."""
        client = await self._connected()
        tp = TopicPartition(topic, partition)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            client.force_metadata_update()
            if topic not in client.cluster.topics():
                raise SourceError(source_topic_gone(topic, partition))
            raise SourceError(f"no leader known for {topic}-{partition} at the source")
        request = FetchRequest(max_wait_time=max_wait_ms, min_bytes=1, max_bytes=max_bytes,
                               isolation_level=READ_UNCOMMITTED, topics=[(topic, [(partition, offset, max_bytes)])])
        try:
            response = await client.send(leader, request)
        except Exception as exc:
            client.force_metadata_update()
            raise SourceError(f"fetch {topic}-{partition} from the source: {exc!r}") from exc
        for _topic, partitions in response.topics:
            for _index, error_code, high_watermark, *rest in partitions:
                log_start = rest[1] if response.API_VERSION >= 5 else -1
                if error_code in (6, 74, 75):  # NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH
                    client.force_metadata_update()
                return Fetched(error_code, high_watermark, log_start, bytes(rest[-1] or b""))
        raise SourceError(f"the source answered no data for {topic}-{partition}")

    async def log_start(self, topic: str, partition: int) -> int:
        """The partition's earliest offset at the source (ListOffsets -2)."""
        client = await self._connected()
        tp = TopicPartition(topic, partition)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            client.force_metadata_update()
            raise SourceError(f"no leader known for {topic}-{partition} at the source")
        try:
            response = await client.send(leader, OffsetRequest(-1, 0, [(topic, [(partition, -2)])]))
        except Exception as exc:
            raise SourceError(f"list offsets of {topic}-{partition}: {exc!r}") from exc
        for _topic, partitions in response.topics:
            for row in partitions:
                if row[1]:
                    raise SourceError(f"list offsets of {topic}-{partition}: error {row[1]}")
                return int(row[3])  # partition, error, timestamp, offset(, leader epoch)
        raise SourceError(f"the source answered no offset for {topic}-{partition}")

    async def groups(self) -> list[str]:
        """Every consumer group the link picks on the source."""
        d = self.definition
        if not d.groups and not d.group_regex:
            return []
        admin = await self._admin_client()
        try:
            listed = await admin.list_consumer_groups()
        except Exception as exc:
            raise SourceError(f"consumer groups of the source: {exc!r}") from exc
        return chosen(d.groups, d.group_regex, [str(g[0]) for g in listed])

    async def group_offsets(self, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        """The group's committed offsets at the source: (topic, partition) -> (offset, metadata)."""
        admin = await self._admin_client()
        try:
            found = await admin.list_consumer_group_offsets(group)
        except Exception as exc:
            raise SourceError(f"offsets of group {group} at the source: {exc!r}") from exc
        return {(tp.topic, tp.partition): (om.offset, om.metadata or "") for tp, om in found.items() if om.offset >= 0}
