"""Bodies of the public admin API (``/v1/...``, ``/readyz``).

``floe admin``, the operator's rebalance loop and the local autoscaler read
and write exactly these models, so a change here is a change of the API.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

CLUSTER_PATH = "/v1/cluster"
REASSIGN_PATH = "/v1/reassignments"
DRAIN_PATH = "/v1/drain"
READY_PATH = "/readyz"


class BrokerView(BaseModel):
    node_id: int
    host: str
    port: int
    http: str
    draining: bool
    partitions: int


class PartitionView(BaseModel):
    topic: str
    partition: int
    leader: int
    epoch: int


class ClusterView(BaseModel):
    """``GET /v1/cluster``: the metadata every broker holds, as last pushed by the controller."""

    controller: int
    version: int
    brokers: list[BrokerView]
    partitions: list[PartitionView]


class Move(BaseModel):
    topic: str
    partition: int
    to: int


class ReassignRequest(BaseModel):
    """``POST /v1/reassignments``: leader moves, forwarded to the controller by whichever broker gets it."""

    moves: list[Move]


class MoveResult(BaseModel):
    """The outcome of one move: ``error`` is None when it committed (``epoch`` is then the new one)."""

    topic: str
    partition: int
    to: int
    error: str | None = None
    from_node: int = -1
    epoch: int = -1


class ReassignReply(BaseModel):
    seconds: float = 0.0
    results: list[MoveResult] = Field(default_factory=list)

    @property
    def failed(self) -> list[MoveResult]:
        return [r for r in self.results if r.error]


class DrainReply(BaseModel):
    """``POST /v1/drain`` (202): the broker moves its partitions away and exits 0."""

    status: str
    node: int


class Readiness(BaseModel):
    """``GET /readyz``: 200 with ``ready`` once serving; 503 with ``starting``, ``draining`` or
    ``store-unavailable`` (every object-store request has been failing: nothing can be
    acknowledged). ``store`` is the object store's state: ``ok``, ``degraded`` or ``unavailable``."""

    status: str
    node: int | None = None
    store: str | None = None


class ErrorReply(BaseModel):
    """Any 4xx/5xx answer of the admin API."""

    error: str
