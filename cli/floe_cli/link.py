"""``floe link``: mirror topics of a running Apache Kafka into Floe at the same offsets, then promote them.

``create`` defines a link (the source's address and security settings, the
topics and groups to mirror), ``status`` shows each partition's lag,
``promote`` makes topics writable once they caught up (refused while they
lag, unless ``--force``; ``--wait`` retries until they are), ``delete``
forgets a link. Every failure is one line on stderr and a non-zero exit
code. A SASL password is never given here: ``--sasl-password-file`` names a
file every broker can read (a mounted Secret).
"""

from __future__ import annotations

import argparse
import sys
import time

from floe_api.links import PROMOTED, LinkDefinition, LinkSource, LinkStatus
from floe_cli.admin import DEFAULT_HTTP
from floe_cli.admin_client import AdminClient, AdminError

LAGGING = 409  # the admin API's answer to a promotion while the link lags


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--http", default=DEFAULT_HTTP, help=f"any broker's admin HOST:PORT (default {DEFAULT_HTTP})")
    link = sub.add_parser("link", help="mirror topics of a Kafka cluster at the same offsets (migration)",
                          description="Cluster links. Sends $FLOE_ADMIN_TOKEN as a bearer token if set.")
    lsub = link.add_subparsers(dest="link_command", required=True)

    create = lsub.add_parser("create", parents=[where], help="define a link and start mirroring")
    create.add_argument("name")
    create.add_argument("--bootstrap", required=True, help="the source cluster's bootstrap servers")
    create.add_argument("--topic", action="append", default=[], help="a topic to mirror (repeatable)")
    create.add_argument("--topic-regex", help="mirror every topic this regular expression fully matches")
    create.add_argument("--group", action="append", default=[], help="a consumer group whose offsets follow")
    create.add_argument("--group-regex", help="copy the offsets of every group this expression fully matches")
    create.add_argument("--security-protocol", default="PLAINTEXT",
                        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    create.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    create.add_argument("--sasl-username")
    create.add_argument("--sasl-password-file", help="path, on every broker, of the file holding the password")
    create.add_argument("--ssl-cafile", help="path, on every broker, of the CA bundle for the source's TLS")
    create.set_defaults(func=run, action=_create)

    status = lsub.add_parser("status", parents=[where], help="each linked partition's lag")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run, action=_status)

    promote = lsub.add_parser("promote", parents=[where], help="make linked topics writable once caught up")
    promote.add_argument("name")
    promote.add_argument("--topic", action="append", help="promote only this topic (repeatable; default all)")
    promote.add_argument("--wait", type=float, default=0.0,
                         help="seconds to wait for lag 0 and then the promotion (0: do not wait)")
    promote.add_argument("--force", action="store_true",
                         help="promote now, at Floe's end, even while lagging: what is not mirrored yet stays behind")
    promote.set_defaults(func=run, action=_promote)

    delete = lsub.add_parser("delete", parents=[where], help="forget a link (its topics stay, writable)")
    delete.add_argument("name")
    delete.set_defaults(func=run, action=_delete)


def run(ns: argparse.Namespace) -> int:
    try:
        return int(ns.action(ns))
    except AdminError as exc:
        print(f"floe link {ns.link_command}: {exc}", file=sys.stderr)
        return 1


def _create(ns: argparse.Namespace) -> int:
    if not ns.topic and not ns.topic_regex:
        print("floe link create: name topics with --topic or --topic-regex", file=sys.stderr)
        return 2
    source = LinkSource(bootstrap_servers=ns.bootstrap, security_protocol=ns.security_protocol,
                        sasl_mechanism=ns.sasl_mechanism, sasl_username=ns.sasl_username,
                        sasl_password_file=ns.sasl_password_file, ssl_cafile=ns.ssl_cafile)
    definition = LinkDefinition(name=ns.name, source=source, topics=ns.topic, topic_regex=ns.topic_regex,
                                groups=ns.group, group_regex=ns.group_regex)
    AdminClient(ns.http).create_link(definition)
    print(f"link {ns.name} created: mirroring from {ns.bootstrap}")
    return 0


def _print(status: LinkStatus) -> None:
    print(f"link {status.name} from {status.bootstrap_servers}: lag {status.lag_records} records")
    if status.error:
        print(f"  cannot follow the source: {status.error}")
    for topic in status.topics:
        print(f"  {topic.topic} ({topic.state})")
        for p in topic.partitions:
            error = f" error: {p.error}" if p.error else ""
            print(f"    {p.partition}: floe {p.floe_end} source {p.source_end} lag {p.lag_records} "
                  f"({p.lag_seconds}s) {p.bytes_mirrored} bytes node {p.node} {p.state}{error}")


def _status(ns: argparse.Namespace) -> int:
    client = AdminClient(ns.http)
    found = [client.link(ns.name)] if ns.name else client.links().links
    for status in found:
        print(status.model_dump_json(indent=2)) if ns.json else _print(status)
    return 0


def _promote(ns: argparse.Namespace) -> int:
    client = AdminClient(ns.http)
    deadline = time.monotonic() + ns.wait
    while True:
        try:
            client.promote_link(ns.name, ns.topic, force=ns.force)
            break
        except AdminError as exc:
            if exc.status != LAGGING or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)  # still lagging the source: ask again until --wait runs out
    while True:
        status = client.link(ns.name)
        pending = [t.topic for t in status.topics if (not ns.topic or t.topic in ns.topic) and t.state != PROMOTED]
        if not pending:
            print(f"promoted: {', '.join(t.topic for t in status.topics if not ns.topic or t.topic in ns.topic)}")
            return 0
        if time.monotonic() >= deadline:
            print(f"promoting (waiting for lag 0): {', '.join(pending)}")
            return 0 if ns.wait == 0 else 1
        time.sleep(0.5)


def _delete(ns: argparse.Namespace) -> int:
    AdminClient(ns.http).delete_link(ns.name)
    print(f"link {ns.name} deleted")
    return 0
