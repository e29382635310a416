"""The admin server's bodies: a body that is not the model is a 400 ErrorReply, never a 500."""

from __future__ import annotations

import aiohttp
import pytest

from floe_api.public import ErrorReply

from .conftest import Cluster


async def post(http: str, path: str, body: object) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.post(f"http://{http}{path}", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize(("path", "body"), [
    ("/internal/v1/register", {"session": "s"}),
    ("/internal/v1/op", {"change": {"op": "no_such_op", "name": "t"}}),
    ("/internal/v1/heartbeat", ["not", "an", "object"]),
    ("/internal/v1/release", {"topic": "t"}),
    ("/v1/reassignments", {"moves": [{"topic": "t"}]}),
])
async def test_a_bad_body_is_a_400_error_reply(cluster: Cluster, path: str, body: object) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    status, reply = await post(ctl.http, path, body)
    assert status == 400
    assert ErrorReply.model_validate(reply).error.startswith("bad request")


async def test_controller_only_calls_elsewhere_are_503_not_the_controller(cluster: Cluster) -> None:
    member = await cluster.node("member")
    status, reply = await post(member.http, "/internal/v1/producer-ids", {"count": 1})
    assert status == 503 and ErrorReply.model_validate(reply).error == "not the controller"
