"""The object store's state when reads are answered but writes are not (a full disk under ``file://``)."""

from __future__ import annotations

from floe_broker.storage.health import UNAVAILABLE_AFTER_S, StoreHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_writes_failing_while_reads_succeed_is_unavailable_until_a_write_succeeds() -> None:
    clock = Clock()
    health = StoreHealth(clock)
    health.failed(write=True)
    health.succeeded()  # a read: the store answers, but nothing can be made durable
    assert health.state() == "degraded"
    clock.now += UNAVAILABLE_AFTER_S
    health.failed(write=True)
    health.succeeded()
    assert health.state() == "unavailable"
    health.succeeded(write=True)
    assert health.state() == "degraded"  # failures were recent; writes go through again
