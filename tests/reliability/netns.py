"""Real network faults for broker processes: network namespaces, veth links and ``tc netem``.

A broker started in its own network namespace reaches the rest of the world
only through the veth links the test gives that namespace, so the test can
cut one path (to peers and clients, or to the object store) and keep the
others, the way a switch port or a security group fails in production.

* :class:`Netns` is a namespace; :meth:`Netns.link` adds a veth pair to the
  host, each end with its own address on a fresh /24, so one namespace can
  have one link for peers and clients and another for the bucket.
* :meth:`Link.cut` takes the namespace's end down (the host end stays up, so
  an address on it, such as an S3 server's, stays reachable from the host);
  :meth:`Link.heal` brings it back.
* :func:`netem` adds latency and loss on one end of a link (``tc qdisc netem``),
  one direction only: egress of that interface. :func:`netem_unavailable` says
  why it cannot be used here (no ``tc``, or a kernel without ``sch_netem``).
* :class:`PlacedBroker` is a broker process on a given address, optionally
  inside a namespace.

The fixtures built on this (``netns``, in ``conftest.py``) skip unless the
tests run as root with iproute2; every namespace and link is removed at
teardown, also when a test fails.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.broker import BrokerProcess, free_port


def ip(*args: str) -> None:
    """Run ``ip ARGS``; raise with its stderr when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, timeout=10)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "needs iproute2 (ip) for network namespaces"
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.251.0.0/16 that no interface on the host uses yet (parallel tests pick at random)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=10).stdout
    for _ in range(100):
        net = ipaddress.ip_network(f"10.251.{random.randrange(1, 255)}.0/24")
        if f" {net.network_address + 1}/" not in used and f" {net.network_address + 2}/" not in used:
            return net  # type: ignore[return-value]
    raise RuntimeError("no free /24 under 10.251.0.0/16")


@dataclass
class Link:
    """A veth pair between the host (``host_if``, ``host_ip``) and a namespace (``ns_if``, ``ns_ip``)."""

    netns: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def cut(self) -> None:
        """Take the namespace's end down: nothing passes either way; the host's address stays up."""
        ip("-n", self.netns, "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        ip("-n", self.netns, "link", "set", self.ns_if, "up")


@dataclass
class Netns:
    """A network namespace with veth links to the host; :meth:`delete` removes it and them."""

    name: str
    links: list[Link] = field(default_factory=list)

    @classmethod
    def create(cls) -> Netns:
        ns = cls(f"floe-{uuid.uuid4().hex[:8]}")
        ip("netns", "add", ns.name)
        try:
            ip("-n", ns.name, "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            ns.delete()
            raise
        return ns

    def link(self) -> Link:
        """Add a veth pair to the host on a fresh /24 (host .1, namespace .2), both ends up."""
        tag = uuid.uuid4().hex[:6]
        net = _free_subnet()
        ln = Link(self.name, f"fl{tag}h", f"fl{tag}n", str(net.network_address + 1), str(net.network_address + 2))
        ip("link", "add", ln.host_if, "type", "veth", "peer", "name", ln.ns_if)
        self.links.append(ln)
        ip("link", "set", ln.ns_if, "netns", self.name)
        ip("addr", "add", f"{ln.host_ip}/24", "dev", ln.host_if)
        ip("link", "set", ln.host_if, "up")
        ip("-n", self.name, "addr", "add", f"{ln.ns_ip}/24", "dev", ln.ns_if)
        ip("-n", self.name, "link", "set", ln.ns_if, "up")
        return ln

    def delete(self) -> None:
        for ln in self.links:
            subprocess.run(["ip", "link", "del", ln.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def netem_unavailable() -> str | None:
    """Why ``tc netem`` cannot be used here (checked on a scratch namespace's loopback), or None."""
    why = namespaces_unavailable()
    if why:
        return why
    if shutil.which("tc") is None:
        return "needs tc (iproute2) for netem"
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "sch_netem"], capture_output=True, timeout=30)
    ns = Netns.create()
    try:
        done = subprocess.run(["tc", "-n", ns.name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            return f"the kernel cannot load the netem qdisc (sch_netem): {done.stderr.strip()}"
        return None
    finally:
        ns.delete()


def _tc(link: Link, on_host_side: bool, *args: str) -> subprocess.CompletedProcess[bytes]:
    where = ["dev", link.host_if] if on_host_side else ["dev", link.ns_if]
    netns = [] if on_host_side else ["-n", link.netns]
    return subprocess.run(["tc", *netns, "qdisc", args[0], *where, *args[1:]], capture_output=True, timeout=10)


def netem(link: Link, *, on_host_side: bool, spec: str) -> None:
    """Replace the egress qdisc of one end of ``link`` with ``netem SPEC`` ("delay 200ms 50ms", "loss 30%").

    Egress only: on the namespace's end it shapes what the namespace sends, on the
    host's end what it receives, so a fault can be made to go one way.
    """
    done = _tc(link, on_host_side, "replace", "root", "netem", *spec.split())
    if done.returncode != 0:
        raise RuntimeError(f"tc netem {spec}: {done.stderr.decode(errors='replace').strip()}")


def netem_clear(link: Link, *, on_host_side: bool) -> None:
    _tc(link, on_host_side, "del", "root")


@dataclass
class PlacedBroker(BrokerProcess):
    """A broker on a given address, optionally inside a network namespace."""

    host: str = "127.0.0.1"
    netns: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def http(self) -> str:
        return f"{self.host}:{self.http_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def restarted(self) -> PlacedBroker:
        """A new process on the same address and log, as a process supervisor would start after exit 3."""
        return PlacedBroker(storage=self.storage, cluster=self.cluster, log_path=self.log_path, env=self.env,
                            extra=self.extra, kafka_port=self.kafka_port, http_port=self.http_port,
                            host=self.host, netns=self.netns)


def placed_broker(tmp_path: Path, name: str, storage: str, host: str, netns: str | None = None,
                  *, env: dict[str, str] | None = None, extra: list[str] | None = None) -> PlacedBroker:
    """A broker (not started) on ``host`` with fresh ports, logging to ``tmp_path/name.log``."""
    return PlacedBroker(storage=storage, cluster="netns", log_path=tmp_path / f"{name}.log", env=env or {},
                        extra=extra if extra is not None else ["--fsync", "false"],
                        kafka_port=free_port(), http_port=free_port(), host=host, netns=netns)
