"""Kafka request/response framing on top of ``kio`` (no I/O here).

A frame is ``int32 size`` followed by a request header and a body. The header
version (v1 or v2) follows from the API key and version, which are always the
first four bytes, so we peek them before choosing the schema. Schemas come
from ``kio``, generated from Kafka's own JSON message specs, and cover both
flexible (compact, tagged fields) and non-flexible versions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32

from ..errors import FrameError, UnsupportedVersion

_API_VERSION = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_SIZE = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any


def peek_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) without decoding the rest."""
    if len(frame) < _API_VERSION.size:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than a request header")
    return _API_VERSION.unpack_from(frame, 0)


@cache
def _request_reader(api_key: int, api_version: int) -> tuple[Any, Any]:
    schema = load_request_schema(api_key, api_version)
    return entity_reader(schema.__header_schema__), entity_reader(schema)


@cache
def _response_writer(api_key: int, api_version: int) -> tuple[Any, Any, Any]:
    schema = load_response_schema(api_key, api_version)
    header = schema.__header_schema__
    return header, entity_writer(header), entity_writer(schema)


def decode_request(frame: bytes | memoryview, supported: dict[int, tuple[int, int]]) -> Request:
    """Decode one request frame (without its size prefix).

    Raises UnsupportedVersion for a known key outside ``supported`` and
    FrameError for anything malformed (including unknown keys).
    """
    api_key, api_version, correlation_id = peek_header(frame)
    bounds = supported.get(api_key)
    if bounds is None:
        raise FrameError(f"unknown or unsupported api_key {api_key}")
    if not bounds[0] <= api_version <= bounds[1]:
        raise UnsupportedVersion(api_key, api_version, correlation_id)
    read_header, read_body = _request_reader(api_key, api_version)
    try:
        header, offset = read_header(frame, 0)
        body, size = read_body(frame, offset)
    except Exception as exc:  # kio raises several types for malformed input
        raise FrameError(
            f"malformed request api_key={api_key} v{api_version}: {type(exc).__name__}: {exc}"
        ) from exc
    # Trailing bytes are ignored, as Kafka's own parser does (librdkafka's
    # Metadata v12 carries 3 of them, for example).
    return Request(api_key, api_version, correlation_id, header.client_id, body)


# An encoded frame (size prefix included) as parts for ``transport.writelines``:
# record bytes are spliced in by reference, never joined.
Frame = list[bytes | bytearray | memoryview]


class RecordsViews:
    """Record batches as a list of memoryviews, written without being joined.

    Handed to kio as a ``records`` value: kio only asks for ``len()`` and
    passes the object to ``buffer.write``, where :class:`FrameWriter` splices
    the views in by reference. Fetch responses therefore never copy record
    bytes in Python; the transport writes them with ``writelines``.
    """

    __slots__ = ("views", "size")

    def __init__(self, views: list[memoryview]) -> None:
        self.views = views
        self.size = sum(len(v) for v in views)

    def __len__(self) -> int:
        return self.size


class FrameWriter:
    """A write-only buffer collecting a frame as parts (small writes coalesced)."""

    __slots__ = ("parts", "_small", "size")

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []
        self._small = bytearray(b"\0\0\0\0")  # size prefix, patched in finish()
        self.size = 0

    def write(self, data: Any) -> int:
        if isinstance(data, RecordsViews):
            self.parts.append(self._small)
            self.parts.extend(data.views)
            self._small = bytearray()
            self.size += data.size
            return data.size
        self._small += data
        self.size += len(data)
        return len(data)

    def splice(self, parts: list[bytes | bytearray | memoryview]) -> None:
        """Append already-encoded parts by reference (the first ones coalesced with what came before)."""
        self.parts.append(self._small)
        self.parts.extend(parts)
        self._small = bytearray()
        self.size += sum(len(p) for p in parts)

    def finish(self) -> Frame:
        self.parts.append(self._small)
        first = self.parts[0]
        assert isinstance(first, bytearray)
        _SIZE.pack_into(first, 0, self.size)
        return [p for p in self.parts if len(p)]


class EncodedBody:
    """A response body its handler encoded itself, spliced in by reference.

    For responses whose bulk does not change between requests: the Metadata
    handler keeps each topic's encoded entry and re-encodes only changed topics.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts


class SelfEncoding:
    """A response body that writes its own bytes for the version asked (``protocol.fetch_response``).

    A base class rather than a Protocol: ``encode_response`` checks every
    response against it, and a plain ``isinstance`` costs next to nothing.
    """

    __slots__ = ()

    def encode_body(self, version: int) -> list[bytes | bytearray | memoryview]:
        raise NotImplementedError


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> Frame:
    """Size-prefixed response frame, as parts for ``transport.writelines``."""
    header_type, write_header, write_body = _response_writer(api_key, api_version)
    out = FrameWriter()
    write_header(out, header_type(correlation_id=i32(correlation_id)))
    if isinstance(body, EncodedBody):
        out.write(RecordsViews([memoryview(p) for p in body.parts]))
    elif isinstance(body, SelfEncoding):
        out.splice(body.encode_body(api_version))
    else:
        write_body(out, body)
    return out.finish()
