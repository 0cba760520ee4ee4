"""Premade certificates: what vcluster's syncer reads from secret NAME-certs."""

from __future__ import annotations

import base64
import datetime
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pytest_vcluster.cluster.drivers import ApiDriver
from pytest_vcluster.cluster.host_objects import CreatedObject
from pytest_vcluster.cluster.pki import (
    KEY_NAMES,
    SECRET_KEYS,
    KeySet,
    KeyStock,
    certs_secret,
    make_certs,
    premade_certs_apply,
)
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.settings.request import VClusterSpec

NOW = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="module")
def certs(keys: KeySet) -> dict[str, bytes]:
    return make_certs("vc-one", keys, now=NOW)


def cert(certs: dict[str, bytes], stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certs[f"{stem}.crt"])


def subject(c: x509.Certificate) -> tuple[str, list[str]]:
    cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


def test_the_secret_holds_every_entry_of_vclusters_certificate_map(certs: dict[str, bytes]) -> None:
    assert sorted(certs) == sorted(SECRET_KEYS)
    assert all(certs.values())


def test_every_leaf_is_signed_by_its_authority_and_valid_for_a_year(
    certs: dict[str, bytes],
) -> None:
    authority_of = {
        "apiserver": "ca",
        "apiserver-kubelet-client": "ca",
        "front-proxy-client": "front-proxy-ca",
        "apiserver-etcd-client": "etcd-ca",
        "etcd-server": "etcd-ca",
        "etcd-peer": "etcd-ca",
        "etcd-healthcheck-client": "etcd-ca",
    }
    for leaf, authority in authority_of.items():
        issued, ca = cert(certs, leaf), cert(certs, authority)
        issued.verify_directly_issued_by(ca)
        assert issued.not_valid_after_utc - NOW == datetime.timedelta(days=365), leaf
        assert issued.not_valid_before_utc < NOW, leaf
        assert not issued.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for authority in ("ca", "front-proxy-ca", "etcd-ca"):
        ca = cert(certs, authority)
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ca.verify_directly_issued_by(ca)
    # One CA on both sides, as vcluster splits its own.
    assert certs["server-ca.crt"] == certs["client-ca.crt"] == certs["ca.crt"]
    assert certs["server-ca.key"] == certs["client-ca.key"] == certs["ca.key"]


def test_subjects_and_usages_are_kubeadms(certs: dict[str, bytes]) -> None:
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    expected = {
        "apiserver": (("kube-apiserver", []), [server]),
        "apiserver-kubelet-client": (
            ("kube-apiserver-kubelet-client", ["system:masters"]),
            [client],
        ),
        "front-proxy-client": (("front-proxy-client", []), [client]),
        "apiserver-etcd-client": (("kube-apiserver-etcd-client", []), [client]),
        "etcd-healthcheck-client": (("kube-etcd-healthcheck-client", []), [client]),
        "etcd-server": (("vc-one", []), [server, client]),
    }
    for stem, (names, usages) in expected.items():
        c = cert(certs, stem)
        assert subject(c) == names, stem
        assert list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    sans = cert(certs, "apiserver").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "kubernetes.default.svc" in sans.value.get_values_for_type(x509.DNSName)
    assert "vc-one" in sans.value.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_kubeconfigs_name_their_user_and_trust_the_cluster_ca(certs: dict[str, bytes]) -> None:
    users = {
        "admin.conf": ("kubernetes-super-admin", ["system:masters"]),
        "controller-manager.conf": ("system:kube-controller-manager", []),
        "scheduler.conf": ("system:kube-scheduler", []),
    }
    for name, names in users.items():
        config = yaml.safe_load(certs[name])
        [cluster] = config["clusters"]
        assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
        ca_data = base64.b64decode(cluster["cluster"]["certificate-authority-data"])
        assert ca_data == certs["ca.crt"]
        [user] = config["users"]
        client_cert = x509.load_pem_x509_certificate(
            base64.b64decode(user["user"]["client-certificate-data"])
        )
        client_cert.verify_directly_issued_by(cert(certs, "ca"))
        assert subject(client_cert) == names, name
        key = serialization.load_pem_private_key(
            base64.b64decode(user["user"]["client-key-data"]), None
        )
        assert key.public_key() == client_cert.public_key()
        assert config["current-context"] == f"{names[0]}@kubernetes"


def test_keys_are_pkcs1_rsa_and_the_service_account_pair_matches(certs: dict[str, bytes]) -> None:
    for stem in ("ca", "apiserver", "sa", "etcd-peer"):
        assert certs[f"{stem}.key"].startswith(b"-----BEGIN RSA PRIVATE KEY-----"), stem
    sa = serialization.load_pem_private_key(certs["sa.key"], None)
    assert isinstance(sa, rsa.RSAPrivateKey)
    assert sa.key_size == 2048
    assert serialization.load_pem_public_key(certs["sa.pub"]) == sa.public_key()


def test_each_certificate_has_a_key_of_its_own(keys: KeySet, certs: dict[str, bytes]) -> None:
    assert sorted(keys.keys) == sorted(KEY_NAMES)
    moduli = {k.public_key().public_numbers().n for k in keys.keys.values()}
    assert len(moduli) == len(KEY_NAMES)
    del certs


def test_the_secret_is_named_and_labelled_like_vclusters_own(keys: KeySet) -> None:
    secret = certs_secret("vc-two", keys)
    assert secret["metadata"] == {
        "name": "vc-two-certs",
        "labels": {"app": "vcluster", "vcluster-name": "vc-two"},
    }
    assert sorted(secret["data"]) == sorted(SECRET_KEYS)
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    assert subject(ca) == ("kubernetes", [])


def test_keys_from_the_low_priority_child_are_fresh_rsa_keys() -> None:
    first, second = KeySet.generate_in_child(), KeySet.generate_in_child()
    moduli = {
        key.public_key().public_numbers().n
        for made in (first, second)
        for key in made.keys.values()
    }
    assert sorted(first.keys) == sorted(KEY_NAMES)
    assert len(moduli) == 2 * len(KEY_NAMES)  # no key twice, in one set or across two
    assert all(key.key_size == 2048 for key in first.keys.values())


def test_a_stock_hands_each_key_set_out_once_and_refills() -> None:
    made: list[KeySet] = []
    made_lock = threading.Lock()

    def generate() -> KeySet:
        one = KeySet({})
        with made_lock:
            made.append(one)
        return one

    stock = KeyStock(size=2, generate=generate)
    assert stock.take() is None  # not started: nothing waits, the syncer makes its own
    stock.start()
    taken = []
    for _ in range(5):
        for _ in range(200):
            one = stock.take()
            if one is not None:
                taken.append(one)
                break
            threading.Event().wait(0.01)
    stock.stop()
    assert len(taken) == 5
    assert len({id(one) for one in taken}) == 5  # never the same set twice


def test_a_failing_generation_leaves_the_stock_empty_not_broken() -> None:
    def generate() -> KeySet:
        raise RuntimeError("no entropy")

    stock = KeyStock(generate=generate)
    stock.start()
    threading.Event().wait(0.05)
    assert stock.take() is None
    stock.stop()


@pytest.mark.parametrize(
    ("values", "applies"),
    [
        ({}, True),
        ({"controlPlane": {"distro": {"k8s": {"enabled": True}}}}, True),
        ({"controlPlane": {"distro": {"k3s": {"enabled": True}}}}, False),
        ({"controlPlane": {"backingStore": {"etcd": {"deploy": {"enabled": True}}}}}, False),
        ({"controlPlane": {"backingStore": {"etcd": {"embedded": {"enabled": True}}}}}, False),
        ({"privateNodes": {"enabled": True}}, False),
        ({"controlPlane": {"standalone": {"enabled": True}}}, False),
    ],
)
def test_premade_certificates_only_for_the_layout_they_match(
    values: dict[str, object], applies: bool
) -> None:
    assert premade_certs_apply(values) is applies


class _Renderer:
    def render(self, name: str, namespace: str, values: object, directory: object) -> list[dict]:
        return [{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}}]


class _Applier:
    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []

    def create(self, obj: dict, namespace: str, labels: dict) -> CreatedObject:
        self.created.append((obj["kind"], obj["metadata"]["name"]))
        return CreatedObject(
            obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace, "x"
        )


class _Stock:
    def __init__(self, ready: KeySet | None) -> None:
        self.ready = ready

    def take(self) -> KeySet | None:
        taken, self.ready = self.ready, None
        return taken


def _create(
    keys: _Stock | None, values: dict[str, object], tmp_path: Path
) -> list[tuple[str, str]]:
    driver = ApiDriver(_Renderer(), object(), keys=keys)  # type: ignore[arg-type]
    applier = _Applier()
    driver.applier = applier  # type: ignore[assignment]
    spec = VClusterSpec(values=values, spec_hash="h", slot="s", test="t", label="l")
    driver.create_objects(
        "vc-a", "vc-a", spec, labels={}, directory=tmp_path, deadline=Deadline(5.0)
    )
    return applier.created


def test_the_driver_creates_the_secret_before_the_control_plane(
    keys: KeySet, tmp_path: Path
) -> None:
    assert _create(_Stock(keys), {}, tmp_path) == [
        ("Secret", "vc-a-certs"),
        ("StatefulSet", "vc-a"),
    ]


def test_without_a_ready_key_set_or_for_another_layout_vcluster_makes_its_own(
    keys: KeySet, tmp_path: Path
) -> None:
    assert _create(_Stock(None), {}, tmp_path) == [("StatefulSet", "vc-a")]
    assert _create(None, {}, tmp_path) == [("StatefulSet", "vc-a")]
    k3s = {"controlPlane": {"distro": {"k3s": {"enabled": True}}}}
    assert _create(_Stock(keys), k3s, tmp_path) == [("StatefulSet", "vc-a")]
