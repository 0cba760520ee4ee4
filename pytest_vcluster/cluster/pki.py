"""A vcluster's certificates, made by the plugin before its control plane starts.

vcluster's syncer looks for secret ``NAME-certs`` in its namespace at start. When it exists, the
syncer writes its files to disk and goes on; otherwise it first generates fourteen RSA-2048 keys
and the certificates kubeadm would make (about 1 s of a create on an idle two-core host, more
under load). :class:`KeyStock` generates key sets in a background thread while tests run, and
:func:`certs_secret` signs a cluster's certificates with one of them in milliseconds, so the
control plane starts without that work. The files are the ones vcluster's ``pkg/certs`` makes,
with kubeadm's names, subjects, usages and lifetimes (CAs 10 years, leaves 1 year); every key
set is used for one cluster only, never two.

Only clusters of the ``k8s`` distro with the embedded store and no private nodes get premade
certificates (:func:`premade_certs_apply`); for any other layout vcluster makes its own.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KEY_NAMES",
    "SECRET_KEYS",
    "KeySet",
    "KeyStock",
    "certs_secret",
    "make_certs",
    "premade_certs_apply",
]

log = logging.getLogger(__name__)

#: The keys of one cluster, one per certificate (and the ServiceAccount signing key).
KEY_NAMES: tuple[str, ...] = (
    "ca",
    "apiserver",
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-ca",
    "front-proxy-client",
    "sa",
    "etcd-ca",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
    "admin",
    "controller-manager",
    "scheduler",
)

#: The entries of secret ``NAME-certs``, as vcluster's certificate map names them.
SECRET_KEYS: tuple[str, ...] = (
    "admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "apiserver.crt",
    "apiserver.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
    "ca.crt",
    "ca.key",
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    "sa.key",
    "sa.pub",
    "etcd-ca.crt",
    "etcd-ca.key",
    "etcd-healthcheck-client.crt",
    "etcd-healthcheck-client.key",
    "etcd-peer.crt",
    "etcd-peer.key",
    "etcd-server.crt",
    "etcd-server.key",
)

CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=365)
#: Certificates are valid from a little before now: a host whose clock runs behind ours must
#: not see them as not yet valid.
BACKDATE = datetime.timedelta(minutes=5)
#: Where vcluster's control-plane components reach kube-apiserver inside the pod.
APISERVER_URL = "https://127.0.0.1:6443"


@dataclass(frozen=True)
class KeySet:
    """Fresh private keys for one cluster's certificates, by :data:`KEY_NAMES`."""

    keys: Mapping[str, rsa.RSAPrivateKey]

    @classmethod
    def generate(cls) -> KeySet:
        return cls({name: rsa.generate_private_key(65537, 2048) for name in KEY_NAMES})


class KeyStock:
    """Key sets generated ahead in a background thread, each handed out once.

    :meth:`take` never waits: when the stock is empty it returns ``None`` and the cluster's
    syncer makes its own certificates, which is no slower than generating them here.
    """

    def __init__(self, size: int = 2, generate: Callable[[], KeySet] = KeySet.generate) -> None:
        self.size = size
        self._generate = generate
        self._ready: list[KeySet] = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start filling the stock (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._fill, name="pytest-vcluster-keys", daemon=True
            )
        self._wanted.set()
        self._thread.start()

    def take(self) -> KeySet | None:
        """A key set nobody else gets, or ``None`` when none is ready yet."""
        with self._lock:
            taken = self._ready.pop(0) if self._ready else None
        self._wanted.set()
        return taken

    def stop(self) -> None:
        self._stopped.set()
        self._wanted.set()

    @property
    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def _fill(self) -> None:
        while not self._stopped.is_set():
            self._wanted.wait()
            self._wanted.clear()
            while not self._stopped.is_set() and self.ready < self.size:
                try:
                    made = self._generate()
                except Exception:  # a failed generation only means vcluster makes its own
                    log.exception("generating certificate keys failed; stopping the stock")
                    return
                with self._lock:
                    self._ready.append(made)


def premade_certs_apply(values: Mapping[str, Any]) -> bool:
    """True when vcluster would make kubeadm's certificates for these chart values: the ``k8s``
    distro, the embedded store, no private nodes and no standalone control plane."""

    def enabled(*path: str) -> bool:
        node: Any = values
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node is True

    return not any(
        (
            enabled("controlPlane", "distro", "k3s", "enabled"),
            enabled("controlPlane", "distro", "k0s", "enabled"),
            enabled("controlPlane", "backingStore", "etcd", "deploy", "enabled"),
            enabled("controlPlane", "backingStore", "etcd", "embedded", "enabled"),
            enabled("controlPlane", "backingStore", "database", "external", "enabled"),
            enabled("controlPlane", "standalone", "enabled"),
            enabled("privateNodes", "enabled"),
        )
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    # kubeadm writes RSA keys as PKCS#1 ("RSA PRIVATE KEY").
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _authority(common_name: str, key: rsa.RSAPrivateKey, now: datetime.datetime) -> _Issued:
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _leaf(
    issuer: _Issued,
    key: rsa.RSAPrivateKey,
    now: datetime.datetime,
    *,
    common_name: str,
    organization: str | None = None,
    usages: tuple[x509.ObjectIdentifier, ...],
    dns_names: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> _Issued:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if dns_names or ips:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _kubeconfig(ca: _Issued, user: str, client_cert: _Issued) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context = f"{user}@kubernetes"
    text = "\n".join(
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- cluster:",
            f"    certificate-authority-data: {b64(ca.cert_pem)}",
            f"    server: {APISERVER_URL}",
            "  name: kubernetes",
            "contexts:",
            "- context:",
            "    cluster: kubernetes",
            f"    user: {user}",
            f"  name: {context}",
            f"current-context: {context}",
            "preferences: {}",
            "users:",
            f"- name: {user}",
            "  user:",
            f"    client-certificate-data: {b64(client_cert.cert_pem)}",
            f"    client-key-data: {b64(client_cert.key_pem)}",
            "",
        ]
    )
    return text.encode()


def make_certs(
    name: str, keys: KeySet, *, now: datetime.datetime | None = None
) -> dict[str, bytes]:
    """The contents of secret ``NAME-certs`` for cluster ``name``, signed with ``keys``."""
    now = now or datetime.datetime.now(datetime.UTC)
    k = keys.keys
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    ca = _authority("kubernetes", k["ca"], now)
    front_ca = _authority("front-proxy-ca", k["front-proxy-ca"], now)
    etcd_ca = _authority("etcd-ca", k["etcd-ca"], now)
    local = ("localhost",)
    loopback = ("127.0.0.1", "::1")
    issued = {
        "apiserver": _leaf(
            ca,
            k["apiserver"],
            now,
            common_name="kube-apiserver",
            usages=(server,),
            dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                name,
            ),
            ips=("127.0.0.1",),
        ),
        "apiserver-kubelet-client": _leaf(
            ca,
            k["apiserver-kubelet-client"],
            now,
            common_name="kube-apiserver-kubelet-client",
            organization="system:masters",
            usages=(client,),
        ),
        "front-proxy-client": _leaf(
            front_ca,
            k["front-proxy-client"],
            now,
            common_name="front-proxy-client",
            usages=(client,),
        ),
        "apiserver-etcd-client": _leaf(
            etcd_ca,
            k["apiserver-etcd-client"],
            now,
            common_name="kube-apiserver-etcd-client",
            usages=(client,),
        ),
        "etcd-server": _leaf(
            etcd_ca,
            k["etcd-server"],
            now,
            common_name=name,
            usages=(server, client),
            dns_names=(name, *local),
            ips=loopback,
        ),
        "etcd-peer": _leaf(
            etcd_ca,
            k["etcd-peer"],
            now,
            common_name=name,
            usages=(server, client),
            dns_names=(name, *local),
            ips=loopback,
        ),
        "etcd-healthcheck-client": _leaf(
            etcd_ca,
            k["etcd-healthcheck-client"],
            now,
            common_name="kube-etcd-healthcheck-client",
            usages=(client,),
        ),
    }
    admin = _leaf(
        ca,
        k["admin"],
        now,
        common_name="kubernetes-super-admin",
        organization="system:masters",
        usages=(client,),
    )
    controller_manager = _leaf(
        ca,
        k["controller-manager"],
        now,
        common_name="system:kube-controller-manager",
        usages=(client,),
    )
    scheduler = _leaf(
        ca, k["scheduler"], now, common_name="system:kube-scheduler", usages=(client,)
    )
    sa_key = k["sa"]
    data: dict[str, bytes] = {
        "admin.conf": _kubeconfig(ca, "kubernetes-super-admin", admin),
        "controller-manager.conf": _kubeconfig(
            ca, "system:kube-controller-manager", controller_manager
        ),
        "scheduler.conf": _kubeconfig(ca, "system:kube-scheduler", scheduler),
        "sa.key": _key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    # One CA signs both sides, as vcluster's own split of ca.crt does.
    for prefix, authority in (
        ("ca", ca),
        ("server-ca", ca),
        ("client-ca", ca),
        ("front-proxy-ca", front_ca),
        ("etcd-ca", etcd_ca),
    ):
        data[f"{prefix}.crt"] = authority.cert_pem
        data[f"{prefix}.key"] = authority.key_pem
    for stem, made in issued.items():
        data[f"{stem}.crt"] = made.cert_pem
        data[f"{stem}.key"] = made.key_pem
    return data


def certs_secret(name: str, keys: KeySet) -> dict[str, Any]:
    """Secret ``NAME-certs`` as vcluster labels its own, ready to create in the namespace."""
    data = make_certs(name, keys)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-certs",
            "labels": {"app": "vcluster", "vcluster-name": name},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
