"""Fixtures of the speed suite: the cluster a test works in, and the timing log.

``cluster`` is the one fixture the work tests use. The suite settings' ``backend`` decides what
gives it, so the pytest-vcluster runs and the baseline runs execute identical test bodies:

* ``vcluster``: the plugin's ``vcluster`` fixture (a fresh or recycled vcluster in the shared
  kind host); the test makes its objects through the handle's ``apply``;
* ``kind``: ``kind_cluster`` below, a kind cluster of its own per test, the way pytest-kind users
  work (create, yield a client, delete);
* ``namespace``: ``kind_namespace`` below, a fresh namespace per test in one kind cluster per
  xdist worker (``kind_worker_cluster``), the usual way to share a cluster between tests; the
  namespace and what the test made outside it are deleted after the test, without waiting.

The baselines make the test's objects through the typed kubernetes client
(:class:`speed_suite.TypedCreator`). The choice is made when this module is imported, not by
``request.getfixturevalue``: the plugin sees which tests need a vcluster from their fixture
closure (version matrix, lookahead), and a fixture looked up at run time would be invisible to it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from speed_suite import (
    CONFIG,
    Recorder,
    TimingLog,
    TypedCreator,
    WorkCluster,
    namespace_manifest,
)

from pytest_vcluster import VCluster

RECORDER = Recorder(CONFIG.timings_dir)

if not CONFIG.premade_certs:
    # Measurement L switches this one lever off: the plugin's key stock never has a set ready,
    # so each syncer generates its certificates as it would without the plugin.
    from pytest_vcluster.cluster import pki

    pki.KeyStock.take = lambda self: None  # type: ignore[method-assign]
# Setup of these fixtures is what a test waits for before its body runs.
TIMED_FIXTURES = frozenset({"vcluster", "kind_cluster", "kind_worker_cluster", "kind_namespace"})
KIND_CREATE_TIMEOUT = 420.0  # kind's own --wait is 5m; this bounds the whole command
KIND_DELETE_TIMEOUT = 180.0


@pytest.fixture
def speed_log(request: pytest.FixtureRequest) -> TimingLog:
    """Where a test writes what it measured (JSON lines read by benchmarks.speed)."""
    return TimingLog(RECORDER, request.node.nodeid)


def _waiting_test(request: pytest.FixtureRequest) -> str:
    """The test whose setup runs the fixture: a session fixture's own node is the session."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")  # "<nodeid> (setup)"
    return current.rsplit(" (", 1)[0] if current else request.node.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Time the cluster fixtures' own setup, a cross-check of the plugin's records.

    pytest sets session fixtures up before function ones, so a worker's kind cluster is timed
    on its own, never inside its first test's ``kind_namespace``.
    """
    if fixturedef.argname not in TIMED_FIXTURES:
        return (yield)
    started = time.monotonic()
    ok = False
    try:
        result = yield
        ok = True
        return result
    finally:
        RECORDER.write(
            "fixture_setup",
            nodeid=_waiting_test(request),
            fixture=fixturedef.argname,
            seconds=time.monotonic() - started,
            ok=ok,
        )


def _kind(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONFIG.kind_binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def _own_kind_cluster(name: str, kubeconfig: Path) -> Iterator[client.ApiClient]:
    """``kind create cluster`` to a Ready node, an API client for it, and the delete after."""
    # A private kubeconfig keeps ~/.kube/config untouched and the clusters independent.
    image = ["--image", CONFIG.node_image] if CONFIG.node_image else []
    try:
        proc = _kind(
            "create", "cluster", "--name", name, *image, "--wait", "5m",
            "--kubeconfig", str(kubeconfig),
            timeout=KIND_CREATE_TIMEOUT,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(
                f"kind create cluster {name} exited {proc.returncode}: {proc.stderr[-2000:]}"
            )
        api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        try:
            yield api
        finally:
            api.close()
    finally:
        _kind(
            "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig),
            timeout=KIND_DELETE_TIMEOUT,
        )  # fmt: skip


@pytest.fixture
def kind_cluster(tmp_path: Path) -> Iterator[client.ApiClient]:
    """A kind cluster for this test only: created, handed out as an API client, deleted."""
    # The prefix lets benchmarks.speed find and remove what a crashed run left behind.
    name = f"{CONFIG.kind_prefix}-{uuid.uuid4().hex[:8]}"
    with _own_kind_cluster(name, tmp_path / "kubeconfig") as api:
        yield api


@pytest.fixture(scope="session")
def kind_worker_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    """This process's one kind cluster, made at its first test and deleted at its end."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    with _own_kind_cluster(f"{CONFIG.kind_prefix}-{worker}", kubeconfig) as api:
        yield api


@pytest.fixture
def kind_namespace(kind_worker_cluster: client.ApiClient) -> Iterator[WorkCluster]:
    """A fresh namespace for this test in the worker's kind cluster, deleted after it.

    The delete does not wait: a namespace-per-test suite lets the namespace controller empty it
    in the background. The test's cluster-scoped objects go too, since the cluster is shared.
    """
    creator = TypedCreator(kind_worker_cluster)
    work = WorkCluster.fresh(kind_worker_cluster, creator.create, namespace_made=True)
    creator.create([namespace_manifest(work.namespace)])
    try:
        yield work
    finally:
        creator.delete_cluster_scoped()


def _cluster_from_vcluster(vcluster: VCluster) -> WorkCluster:
    """This test's vcluster; its objects are made through the handle's ``apply``."""
    return WorkCluster.fresh(vcluster.api_client, vcluster.apply)


def _cluster_from_kind(kind_cluster: client.ApiClient) -> WorkCluster:
    """This test's own kind cluster; deleting it removes whatever the test made."""
    return WorkCluster.fresh(kind_cluster, TypedCreator(kind_cluster).create)


def _cluster_from_namespace(kind_namespace: WorkCluster) -> WorkCluster:
    """This test's namespace in its worker's kind cluster."""
    return kind_namespace


CLUSTER_BY_BACKEND: dict[str, Callable[..., WorkCluster]] = {
    "vcluster": _cluster_from_vcluster,
    "kind": _cluster_from_kind,
    "namespace": _cluster_from_namespace,
}
cluster = pytest.fixture(name="cluster")(CLUSTER_BY_BACKEND[CONFIG.backend])
