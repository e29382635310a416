"""A controller that stops acting as one during a store outage still serves the metadata it had.

While the bucket is unreachable the controller cannot renew its lease, so once
the lease may have run out it stops acting as controller. It must go on
answering Metadata and ``GET /v1/cluster`` from the last metadata it held, as
any member serves its last view: an empty answer tells clients every topic has
no partitions (librdkafka logs "partition count changed from 3 to 0" and
fails produce to them), which the soak saw after every outage.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka.admin import AdminClient

from tests.conftest import s3_spec
from tests.infra.broker import wait_until
from tests.test_clients import create_topic
from tests.test_store_faults import readiness


def test_metadata_survives_the_controller_losing_its_lease_in_an_outage(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        broker = brokers(s3_spec(moto_s3, f"view-{uuid.uuid4().hex[:6]}", endpoint=proxy.endpoint))
        topic = f"view-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic, 3)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})

        proxy.fail(status=503)
        wait_until(lambda: readiness(broker)[1].get("store") == "unavailable", 15,
                   message="/readyz says the store is unavailable")
        # Past the lease's half-life (the fixture's session timeout is 3 s) the controller
        # stops acting as one; every answer through the rest of the outage is checked.
        until = time.monotonic() + 6
        while time.monotonic() < until:
            status, view = broker.get("/v1/cluster")
            assert status == 200
            assert sum(1 for p in view["partitions"] if p["topic"] == topic) == 3, view
            md = admin.list_topics(timeout=10)
            assert len(md.topics[topic].partitions) == 3, "Metadata lost the topic's partitions"
            time.sleep(0.2)  # between checks, not a synchronisation
        proxy.heal()
        wait_until(lambda: readiness(broker)[0] == 200, 60, message="ready again after the outage")
