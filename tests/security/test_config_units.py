"""The pure parts: listener settings, principal mapping rules, SCRAM keys, the metadata change."""

from __future__ import annotations

import hashlib

import pytest

from floe_api.internal import AlterScramCredentials, ScramDeletion, ScramKeys, ScramUpsertion
from floe_broker.cluster.metadata import ClusterState, apply_op
from floe_broker.security.listeners import ListenerConfigError, parse_listeners
from floe_broker.security.scram_store import ScramUsers, from_password, from_salted_password, verify_password
from floe_broker.security.ssl_principal import MappingError, map_subject, parse_rules, subject_name


def test_without_listeners_the_broker_has_one_plaintext_listener_on_listen() -> None:
    (spec,) = parse_listeners(None, None, None, listen=("0.0.0.0", 9092), advertise=None)
    assert (spec.name, spec.protocol, spec.host, spec.port) == ("PLAINTEXT", "PLAINTEXT", "0.0.0.0", 9092)
    assert (spec.advertised_host, spec.advertised_port) == ("127.0.0.1", 9092)
    (spec,) = parse_listeners(None, None, None, listen=("0.0.0.0", 9092), advertise=("pod-1", 19092))
    assert (spec.advertised_host, spec.advertised_port) == ("pod-1", 19092)


def test_listeners_advertised_listeners_and_the_protocol_map() -> None:
    specs = parse_listeners("INTERNAL://0.0.0.0:9092,EXTERNAL://:9093,SASL_SSL://10.0.0.1:9094",
                            "EXTERNAL://kafka.example.com:443", "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
                            listen=("0.0.0.0", 1), advertise=None)
    assert [(s.name, s.protocol, s.host, s.port, s.advertised_host, s.advertised_port) for s in specs] == [
        ("INTERNAL", "PLAINTEXT", "0.0.0.0", 9092, "127.0.0.1", 9092),
        ("EXTERNAL", "SASL_SSL", "0.0.0.0", 9093, "kafka.example.com", 443),
        ("SASL_SSL", "SASL_SSL", "10.0.0.1", 9094, "10.0.0.1", 9094),
    ]
    assert specs[1].tls and specs[1].sasl and not specs[0].tls


@pytest.mark.parametrize(("listeners", "advertised", "mapping"), [
    ("CLIENT://:9092", None, None),  # no protocol for CLIENT
    ("PLAINTEXT://:9092,PLAINTEXT://:9093", None, None),
    ("PLAINTEXT://:9092,SSL://:9092", None, None),
    ("PLAINTEXT:9092", None, None),
    ("PLAINTEXT://:9092", "SSL://x:1", None),
    ("A://:9092", None, "A:KERBEROS"),
])
def test_contradictions_are_refused(listeners: str, advertised: str | None, mapping: str | None) -> None:
    with pytest.raises(ListenerConfigError):
        parse_listeners(listeners, advertised, mapping, listen=("0.0.0.0", 1), advertise=None)


SUBJECT = ((("countryName", "US"),), (("organizationName", "Acme, Inc."),), (("organizationalUnitName", "eng"),),
           (("commonName", "Alice"),))


def test_subjects_are_written_as_rfc_2253() -> None:
    assert subject_name(SUBJECT) == r"CN=Alice,OU=eng,O=Acme\, Inc.,C=US"


@pytest.mark.parametrize(("rules", "expected"), [
    ("DEFAULT", r"CN=Alice,OU=eng,O=Acme\, Inc.,C=US"),
    ("RULE:^CN=(.*?),OU=(.*?),.*$/$1@$2/L", "alice@eng"),
    ("RULE:^CN=(.*?),.*$/$1/U,DEFAULT", "ALICE"),
    ("RULE:^CN=bob,.*$/bob/,RULE:^CN=(.*?),.*$/user-$1/", "user-Alice"),
    (r"RULE:^CN=(.*?),OU=eng\/x.*$/$1/,DEFAULT", r"CN=Alice,OU=eng,O=Acme\, Inc.,C=US"),
])
def test_mapping_rules_behave_as_kafkas(rules: str, expected: str) -> None:
    assert map_subject(parse_rules(rules), subject_name(SUBJECT)) == expected


def test_a_subject_no_rule_matches_is_refused() -> None:
    with pytest.raises(MappingError):
        map_subject(parse_rules("RULE:^CN=bob,.*$/bob/"), subject_name(SUBJECT))
    with pytest.raises(MappingError):
        parse_rules("RULE:broken")


def test_scram_keys_from_a_salted_password_match_keys_from_the_password() -> None:
    # "-" and "!" are outside the base64 alphabet, so the password cannot turn
    # up by chance inside the encoded salt or keys.
    password = "not-in-b64!"
    c = from_password("SCRAM-SHA-256", password, 4096)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), c.salt, 4096)
    assert from_salted_password("SCRAM-SHA-256", c.salt, salted, 4096) == c
    assert verify_password(c, password) and not verify_password(c, "Not-in-b64!")
    assert password not in str(c.to_json())


def test_the_metadata_change_upserts_deletes_and_seeds_only_the_absent() -> None:
    s = ClusterState()
    keys = ScramKeys(**from_password("SCRAM-SHA-512", "one", 4096).to_json())
    other = ScramKeys(**from_password("SCRAM-SHA-512", "two", 4096).to_json())
    apply_op(s, AlterScramCredentials(upsertions=[ScramUpsertion(user="u", mechanism="SCRAM-SHA-512", keys=keys)]))
    seed = AlterScramCredentials(upsertions=[
        ScramUpsertion(user="u", mechanism="SCRAM-SHA-512", keys=other, if_absent=True),
        ScramUpsertion(user="new", mechanism="SCRAM-SHA-512", keys=other, if_absent=True),
        ScramUpsertion(user="new", mechanism="SCRAM-SHA-256", keys=other, if_absent=True)])
    apply_op(s, seed)
    apply_op(s, seed)  # a retried forward does no harm
    users = ScramUsers(ClusterState.from_bytes(s.to_bytes()).scram)
    cred = users.get("u", "SCRAM-SHA-512")
    assert cred is not None and verify_password(cred, "one"), "seeding keeps an existing user's password"
    assert users.mechanisms("new") == {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 4096}
    apply_op(s, AlterScramCredentials(deletions=[ScramDeletion(user="u", mechanism="SCRAM-SHA-512")]))
    assert ScramUsers(s.scram).users() == ["new"]


def test_every_security_setting_is_also_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from floe_broker import config

    monkeypatch.setenv("FLOE_LISTENERS", "SASL_SSL://:9093")
    monkeypatch.setenv("FLOE_SSL_CLIENT_AUTH", "required")
    monkeypatch.setenv("FLOE_CONNECTIONS_MAX_REAUTH_MS", "60000")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    cfg = config.from_namespace(parser.parse_args(["--storage", "file:///x", "--ssl-client-auth", "requested"]))
    assert cfg.listeners == "SASL_SSL://:9093"
    assert cfg.ssl_client_auth == "requested", "a flag wins over the variable"
    assert cfg.connections_max_reauth_ms == 60000
