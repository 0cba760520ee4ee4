"""Fixtures of the speed suite: the cluster a test works in, and the timing log.

``cluster`` is the one fixture the work tests use. The suite settings' ``backend`` decides what
gives it, so the pytest-vcluster run and the baseline run execute identical test bodies:

* ``vcluster``: the plugin's ``vcluster`` fixture (a fresh vcluster in the shared kind host);
* ``kind``: ``kind_cluster`` below, a kind cluster of its own per test, the way pytest-kind users
  work (create, yield a client, delete).

The choice is made when this module is imported, not by ``request.getfixturevalue``: the plugin
sees which tests need a vcluster from their fixture closure (version matrix, lookahead), and a
fixture looked up at run time would be invisible to it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from speed_suite import CONFIG, Recorder, TimingLog

from pytest_vcluster import VCluster

RECORDER = Recorder(CONFIG.timings_dir)
# Setup of these fixtures is what a test waits for before its body runs.
TIMED_FIXTURES = frozenset({"vcluster", "kind_cluster"})
KIND_CREATE_TIMEOUT = 420.0  # kind's own --wait is 5m; this bounds the whole command
KIND_DELETE_TIMEOUT = 180.0


@pytest.fixture
def speed_log(request: pytest.FixtureRequest) -> TimingLog:
    """Where a test writes what it measured (JSON lines read by benchmarks.speed)."""
    return TimingLog(RECORDER, request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Time the cluster fixtures' own setup, a cross-check of the plugin's records."""
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
            nodeid=request.node.nodeid,
            fixture=fixturedef.argname,
            seconds=time.monotonic() - started,
            ok=ok,
        )


def _kind(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONFIG.kind_binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def kind_cluster(tmp_path: Path) -> Iterator[client.ApiClient]:
    """A kind cluster for this test only: created, handed out as an API client, deleted."""
    # The prefix lets benchmarks.speed find and remove what a crashed run left behind.
    name = f"{CONFIG.kind_prefix}-{uuid.uuid4().hex[:8]}"
    # A private kubeconfig keeps ~/.kube/config untouched and the clusters independent.
    kubeconfig = tmp_path / "kubeconfig"
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


def _cluster_from_vcluster(vcluster: VCluster) -> client.ApiClient:
    """The API client of this test's fresh vcluster."""
    return vcluster.api_client


def _cluster_from_kind(kind_cluster: client.ApiClient) -> client.ApiClient:
    """The API client of this test's own kind cluster."""
    return kind_cluster


cluster = pytest.fixture(name="cluster")(
    _cluster_from_kind if CONFIG.backend == "kind" else _cluster_from_vcluster
)
