"""The admin API of cluster links: ``/v1/links`` and each broker's mirror lag (``/internal/v1/link-lag``).

Creating, promoting and deleting a link are metadata ops (any broker forwards
them to the controller); a link's status gathers the lag of every broker's
mirrors, since each partition is mirrored by its own leader.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import BaseModel

from floe_api import links as schema

from ..cluster.metadata import ClusterState
from ..cluster.rpc import Rpc
from ..errors import RpcError
from ..link.service import LinkService

log = structlog.get_logger(__name__)


class LinkBroker(Protocol):
    links: LinkService
    rpc: Rpc

    @property
    def node_id(self) -> int: ...

    def state(self) -> ClusterState: ...


async def _all_lags(broker: LinkBroker) -> schema.LinkLagReply:
    """Every broker's mirrors, and the first error each link's following met on any broker."""
    state = broker.state()
    others = [b.http for n, b in state.brokers.items() if n != broker.node_id]

    async def one(http: str) -> schema.LinkLagReply:
        try:
            return schema.LinkLagReply.model_validate(await broker.rpc.call(http, schema.LINK_LAG_PATH, {}))
        except RpcError as exc:
            log.info("no link lag from a broker", broker=http, error=str(exc))
            return schema.LinkLagReply(partitions=[])

    replies = [broker.links.local_lag(), *await asyncio.gather(*(one(h) for h in others))]
    errors: dict[str, str] = {}
    for r in replies:
        for name, message in r.errors.items():
            errors.setdefault(name, message)
    return schema.LinkLagReply(partitions=[p for r in replies for p in r.partitions], errors=errors)


def lagging_partitions(status: schema.LinkStatus, topics: list[str] | None) -> list[str]:
    """The chosen partitions not known to be caught up: lag above 0, or not measured yet (-1)."""
    return [f"{t.topic}-{p.partition} ({'not measured yet' if p.lag_records < 0 else f'{p.lag_records} records'})"
            for t in status.topics if topics is None or t.topic in topics
            for p in t.partitions if p.state != schema.PROMOTED and p.lag_records != 0]


def reply(body: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(body.model_dump(mode="json"), status=status)


def error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def parse(request: web.Request, model: type[schema.LinkDefinition] | type[schema.PromoteRequest]) -> Any:
    """The body as ``model``; anything else is a 400 that says what is wrong."""
    try:
        return model.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or not this model (pydantic's ValidationError is a ValueError)
        raise web.HTTPBadRequest(text=json.dumps({"error": f"bad request: {exc}"}),
                                 content_type="application/json") from None


def add_routes(app: web.Application, broker: LinkBroker) -> None:
    async def statuses(names: list[str]) -> list[schema.LinkStatus]:
        state, lags = broker.state(), await _all_lags(broker)
        return [LinkService.status(n, state.links[n], state, lags.partitions, lags.errors.get(n))
                for n in names if n in state.links]

    async def list_links(_: web.Request) -> web.Response:
        return reply(schema.LinksView(links=await statuses(sorted(broker.state().links))))

    async def create(request: web.Request) -> web.Response:
        body = await parse(request, schema.LinkDefinition)
        if body.name in broker.state().links:
            return error(f"link {body.name} exists", 409)
        if not body.topics and not body.topic_regex:
            return error("a link needs topics or a topic_regex", 400)
        await broker.links.create(body)
        return reply(schema.LinksView(links=await statuses([body.name])), 201)

    async def put(request: web.Request) -> web.Response:
        """Create or change a link (what a declarative caller, the operator, sends every time).

        A change keeps the link's topics and their promotion; an unchanged
        definition changes nothing, so repeating it costs no metadata commit.
        """
        name = request.match_info["name"]
        body = await parse(request, schema.LinkDefinition)
        if body.name != name:
            return error(f"the body names link {body.name}, the path {name}", 400)
        if not body.topics and not body.topic_regex:
            return error("a link needs topics or a topic_regex", 400)
        existing = broker.state().links.get(name)
        if existing is None or existing.definition != body:
            await broker.links.create(body)
        return reply(schema.LinksView(links=await statuses([name])), 201 if existing is None else 200)

    async def get(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await statuses([name])
        return reply(found[0]) if found else error(f"no link {name}", 404)

    async def delete(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in broker.state().links:
            return error(f"no link {name}", 404)
        await broker.links.delete(name)
        return web.json_response({"deleted": name})

    async def promote(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await parse(request, schema.PromoteRequest)
        link = broker.state().links.get(name)
        if link is None:
            return error(f"no link {name}", 404)
        unknown = sorted(set(body.topics or ()) - link.topics.keys())
        if unknown:
            return error(f"not topics of link {name}: {', '.join(unknown)}", 400)
        if not body.force:
            lagging = lagging_partitions((await statuses([name]))[0], body.topics)
            if lagging:
                return error(f"link {name} still lags the source at {', '.join(lagging)}: stop the producers on "
                             "the source and wait for lag 0 (floe link status), or force the promotion (records "
                             "not mirrored yet are then left behind)", 409)
        await broker.links.promote(name, body.topics, force=body.force)
        return reply(schema.LinksView(links=await statuses([name])), 202)

    async def link_lag(_: web.Request) -> web.Response:
        return reply(broker.links.local_lag())

    app.router.add_get(schema.LINKS_PATH, list_links)
    app.router.add_post(schema.LINKS_PATH, create)
    app.router.add_get(schema.LINKS_PATH + "/{name}", get)
    app.router.add_put(schema.LINKS_PATH + "/{name}", put)
    app.router.add_delete(schema.LINKS_PATH + "/{name}", delete)
    app.router.add_post(schema.LINKS_PATH + "/{name}/promote", promote)
    app.router.add_post(schema.LINK_LAG_PATH, link_lag)
