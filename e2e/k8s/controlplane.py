"""A real Kubernetes control plane on loopback, without Docker: etcd, kube-apiserver, kube-controller-manager.

The binaries come from ``build.sh`` (built once from the Kubernetes sources
through the Go module proxy, cached under ``~/.cache/floe/k8s-bin/``). At start
this module generates what a cluster bootstrapper (kubeadm) would: a cluster
CA, the API server's serving certificate, an admin client certificate
(``system:masters``), a front-proxy CA and client certificate for the
aggregation layer, and the service-account signing key. It then starts the
three processes on free loopback ports, waits for ``/readyz``, and writes an
admin kubeconfig. :meth:`ControlPlane.stop` stops them by PID, newest first.

There is no kubelet, scheduler, kube-proxy or DNS: ``kubelet.py`` stands in
for the first two; Services get cluster IPs and Endpoints but nothing routes
them, so clients use pod IPs.

Run by hand: ``python e2e/k8s/controlplane.py [DIR]`` starts one, prints the
``KUBECONFIG`` to export, and stops it on Ctrl-C.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = pathlib.Path(__file__).resolve().parent
K8S_VERSION = os.environ.get("K8S_VERSION", "1.34.4")
SERVICE_CIDR = "10.96.0.0/24"


def binaries() -> pathlib.Path:
    """The directory holding kube-apiserver, kube-controller-manager and etcd (built on first use)."""
    out = subprocess.run(
        [str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "K8S_VERSION": K8S_VERSION},
    )
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- certificates -------------------------------------------------------------


@dataclass
class KeyPair:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def write(self, directory: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
        crt, key = directory / f"{name}.crt", directory / f"{name}.key"
        crt.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        key.chmod(0o600)
        return crt, key


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _issue(
    subject: x509.Name,
    issuer: KeyPair | None,
    *,
    ca: bool = False,
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
    client: bool = False,
) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return KeyPair(cert, key)


# --- the control plane --------------------------------------------------------


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager under ``workdir``."""

    workdir: pathlib.Path
    bin_dir: pathlib.Path = field(default_factory=binaries)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_port: int = 0
    kubeconfig: pathlib.Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = self.workdir / "pki"
        self.pki.mkdir(exist_ok=True)
        self.kubeconfig = self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, *, timeout: float = 180.0) -> ControlPlane:
        self.api_port = free_port()  # the kubeconfigs name it
        try:
            self._certificates()
            self._etcd()
            self._apiserver()
            self._wait_ready(timeout)
            self._controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _certificates(self) -> None:
        ca = _issue(_name("floe-e2e-ca"), None, ca=True)
        self.ca_crt, _ = ca.write(self.pki, "ca")
        serving = _issue(
            _name("kube-apiserver"),
            ca,
            server_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          "kubernetes.default.svc.cluster.local"],
            server_ips=["127.0.0.1", str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))],
        )
        self.serving_crt, self.serving_key = serving.write(self.pki, "apiserver")
        admin = _issue(_name("floe-e2e-admin", "system:masters"), ca, client=True)
        self.admin_crt, self.admin_key = admin.write(self.pki, "admin")
        front_ca = _issue(_name("floe-e2e-front-proxy-ca"), None, ca=True)
        self.front_ca_crt, _ = front_ca.write(self.pki, "front-proxy-ca")
        front = _issue(_name("front-proxy-client"), front_ca, client=True)
        self.front_crt, self.front_key = front.write(self.pki, "front-proxy-client")
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self.pki / "sa.key"
        self.sa_key.write_bytes(
            sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
        )
        self.sa_pub = self.pki / "sa.pub"
        self.sa_pub.write_bytes(
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.write_kubeconfig(self.kubeconfig, user={
            "client-certificate-data": _b64(self.admin_crt.read_bytes()),
            "client-key-data": _b64(self.admin_key.read_bytes()),
        })  # fmt: skip

    def write_kubeconfig(self, path: pathlib.Path, *, user: dict[str, str], namespace: str | None = None) -> None:
        """A kubeconfig for this API server with ``user``'s credentials (the admin's, or a token)."""
        context: dict[str, str] = {"cluster": "floe-e2e", "user": "user"}
        if namespace:
            context["namespace"] = namespace
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "floe-e2e", "cluster": {
                "server": self.server, "certificate-authority-data": _b64(self.ca_crt.read_bytes())}}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "floe-e2e", "context": context}],
            "current-context": "floe-e2e",
        }))  # fmt: skip
        path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        log.close()
        self.processes.append(proc)

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"),
            "--name", "floe-e2e",
            "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"floe-e2e=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync",  # a throwaway cluster: no need to wait on the disk
            "--log-level", "warn",
        ])  # fmt: skip

    def _apiserver(self) -> None:
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.api_port),
            "--cert-dir", str(self.pki),
            "--tls-cert-file", str(self.serving_crt),
            "--tls-private-key-file", str(self.serving_key),
            "--client-ca-file", str(self.ca_crt),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.sa_pub),
            "--service-account-signing-key-file", str(self.sa_key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--endpoint-reconciler-type", "none",  # nothing can reach 127.0.0.1 from a pod anyway
            "--allow-privileged",
            # The aggregation layer (metrics APIs such as prometheus-adapter's register through it).
            "--requestheader-client-ca-file", str(self.front_ca_crt),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User",
            "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(self.front_crt),
            "--proxy-client-key-file", str(self.front_key),
            # No --enable-aggregator-routing: it routes to EndpointSlices, which refuse the
            # pods' loopback addresses; an APIService's ExternalName Service is dialled as named.
        ])  # fmt: skip

    def _controller_manager(self) -> None:
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            "--kubeconfig", str(self.kubeconfig),
            "--authentication-kubeconfig", str(self.kubeconfig),
            "--authorization-kubeconfig", str(self.kubeconfig),
            "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()),
            "--leader-elect=false",
            "--root-ca-file", str(self.ca_crt),
            "--service-account-private-key-file", str(self.sa_key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--cluster-signing-cert-file", str(self.ca_crt),
            "--cluster-signing-key-file", str(self.pki / "ca.key"),
        ])  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_crt))
        context.load_cert_chain(str(self.admin_crt), str(self.admin_key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    name = pathlib.Path(str(list(proc.args)[0])).name  # type: ignore[arg-type]
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.workdir}/*.log")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s ({last}); see {self.workdir}/kube-apiserver.log")

    def stop(self) -> None:
        """SIGTERM each process (newest first), SIGKILL what is left after 10 s."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


if __name__ == "__main__":
    where = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".floe/k8s").resolve()
    with ControlPlane(where) as plane:
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
