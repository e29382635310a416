"""Every real client library over SASL_SSL with SCRAM-SHA-512, SASL_PLAINTEXT with PLAIN, and mutual TLS.

Each does what a user does first: an admin call, produce, consume in a
consumer group, commit. The broker runs all four listeners at once, and a
client is told the brokers' addresses on the listener it connected to.
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from tests.security.clients import MODES, ROUND_TRIPS, confluent_conf
from tests.security.conftest import SecureBroker


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("client", sorted(ROUND_TRIPS))
def test_round_trip(secure_broker: SecureBroker, client: str, mode: str) -> None:
    ROUND_TRIPS[client](secure_broker, mode)


@pytest.mark.parametrize("listener", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_metadata_advertises_the_listener_the_client_used(secure_broker: SecureBroker, listener: str) -> None:
    conf = {"bootstrap.servers": secure_broker.bootstrap(listener), "security.protocol": listener}
    if "SASL" in listener:
        conf |= {"sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "bob", "sasl.password": "bob-pw"}
    if "SSL" in listener:
        conf["ssl.ca.location"] = secure_broker.ca_file
    brokers = AdminClient(conf).list_topics(timeout=20).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("127.0.0.1", secure_broker.ports[listener])]


def test_plaintext_listener_still_serves_without_credentials(secure_broker: SecureBroker) -> None:
    md = AdminClient(confluent_conf(secure_broker, "mtls") | {
        "bootstrap.servers": secure_broker.bootstrap("PLAINTEXT"), "security.protocol": "PLAINTEXT"}
    ).list_topics(timeout=20)
    assert md.brokers
