"""The tests ``python -m benchmarks.speed`` runs, one group per measurement (selected by node id).

* ``test_create``: one fresh vcluster per test through ``vcluster_factory``, timed around the call
  (measurement C; the plugin's records give the phases).
* ``test_resume``: pause and resume one (persistent) vcluster several times, timing each resume
  (R).
* ``test_work``: a namespace, a Deployment with a Service, a CRD with an object and a
  ClusterRoleBinding, then about ``work_seconds`` of real work in ``cluster`` (S and S0 with
  vclusters, Sk with a kind cluster per test, Sn with a namespace per test; see conftest.py).
* ``test_density``: idle vclusters one after another until creation fails, slows down past the
  limit, or the cap is reached, with the host node's memory before and after (D).

Nothing here asserts on time: the figures are written to the timing log and judged by the
benchmark (``benchmarks.speed``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from speed_suite import (
    CONFIG,
    TimingLog,
    WorkCluster,
    Workload,
    crd_and_binding,
    docker_memory,
    wait_until,
)
from urllib3.exceptions import HTTPError

from pytest_vcluster import HostInfo, VCluster, VClusterError

VClusterFactory = Callable[..., VCluster]
PAUSE_TIMEOUT = 180.0


@pytest.mark.parametrize("index", range(CONFIG.repeat))
def test_create(vcluster_factory: VClusterFactory, speed_log: TimingLog, index: int) -> None:
    started = time.monotonic()
    vc = vcluster_factory()
    seconds = time.monotonic() - started
    speed_log.write("create", index=index, seconds=seconds, name=vc.name, version=vc.version)
    assert vc.core_v1().list_namespace().items, f"{vc.name} lists no namespaces"


def _control_plane_gone(host: client.CoreV1Api, vc: VCluster) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        pods = host.list_namespaced_pod(
            vc.namespace, label_selector=f"app=vcluster,release={vc.name}"
        ).items
        names = [f"{p.metadata.name if p.metadata else '?'}" for p in pods]
        return not pods, f"pods {names}"

    return check


def _persistent(factory: VClusterFactory) -> dict[str, bool]:
    """``persistent=True`` when the plugin has it: an emptyDir store may not be paused."""
    return {"persistent": True} if "persistent" in inspect.signature(factory).parameters else {}


def test_resume(
    vcluster_factory: VClusterFactory, vcluster_host: HostInfo, speed_log: TimingLog
) -> None:
    vcluster = vcluster_factory(**_persistent(vcluster_factory))
    host_api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(vcluster_host.kubeconfig), context=vcluster_host.context
    )
    try:
        host = client.CoreV1Api(host_api)
        for index in range(CONFIG.resumes):
            vcluster.pause()
            # A resume is measured from a fully paused cluster: its control plane pod is gone.
            wait_until(
                f"the control plane of {vcluster.name} to stop",
                _control_plane_gone(host, vcluster),
                PAUSE_TIMEOUT,
            )
            started = time.monotonic()
            vcluster.resume()
            seconds = time.monotonic() - started
            speed_log.write("resume", index=index, seconds=seconds, name=vcluster.name)
            assert vcluster.core_v1().list_namespace().items, f"{vcluster.name} after resume"
    finally:
        host_api.close()


@pytest.mark.parametrize("index", range(CONFIG.tests))
def test_work(cluster: WorkCluster, speed_log: TimingLog, index: int) -> None:
    started = time.monotonic()
    web = Workload(cluster.api, cluster.namespace, CONFIG.workload_image, CONFIG.workload_port)
    # What the benchmark's reset figure is about: namespace, Deployment and Service, a CRD with
    # an object, and a ClusterRoleBinding, all left for the teardown to undo.
    cluster.apply(
        [
            *web.manifests(with_namespace=not cluster.namespace_made),
            *crd_and_binding(cluster.namespace, cluster.suffix),
        ]
    )
    web.wait_ready()
    page = web.get("")
    assert "workload" in page, f"unexpected page from {CONFIG.workload_image}: {page[:200]!r}"
    ready = time.monotonic() - started
    # The rest of the time goes to small real round trips, as a test's assertions would.
    rounds = 0
    while rounds == 0 or time.monotonic() - started < CONFIG.work_seconds:
        web.touch_config(rounds)
        web.get("")
        rounds += 1
        time.sleep(max(0.0, min(0.5, CONFIG.work_seconds - (time.monotonic() - started))))
    speed_log.write(
        "work",
        index=index,
        backend=CONFIG.backend,
        seconds=time.monotonic() - started,
        workload_ready_seconds=ready,
        rounds=rounds,
    )


def _readyz(vc: VCluster) -> bool:
    """The virtual API server answers ``/readyz`` with ``ok`` (what "Ready" means for D)."""
    cfg = vc.api_client.configuration
    # Client certificates are in the connection pool already; header credentials are added.
    headers = {
        str(auth["key"]): str(auth["value"])
        for auth in cfg.auth_settings().values()
        if auth.get("in") == "header" and auth.get("value")
    }
    try:
        response = vc.api_client.call_api(
            "GET", f"{cfg.host}/readyz", header_params=headers, _request_timeout=10
        )
    except (ApiException, HTTPError, OSError):  # no answer means "not ready", nothing more
        return False
    body = response.read()  # type: ignore[no-untyped-call]
    return response.status == 200 and isinstance(body, bytes) and body.strip() == b"ok"


def test_density(
    vcluster_factory: VClusterFactory, vcluster_host: HostInfo, speed_log: TimingLog
) -> None:
    container = f"{vcluster_host.name}-control-plane"
    before = docker_memory(CONFIG.docker_binary, container)
    handles: list[VCluster] = []
    limit = CONFIG.density_limit  # 0: twice the first create, taken as this run's C
    stop = f"cap of {CONFIG.density_max} reached"
    for index in range(CONFIG.density_max):
        started = time.monotonic()
        try:
            vc = vcluster_factory()
        except VClusterError as exc:
            stop = f"create {index + 1} failed: {str(exc)[:500]}"
            speed_log.write("density_create", index=index, ok=False, error=str(exc)[:2000])
            break
        seconds = time.monotonic() - started
        handles.append(vc)
        speed_log.write(
            "density_create",
            index=index,
            ok=True,
            seconds=seconds,
            memory=docker_memory(CONFIG.docker_binary, container),
        )
        limit = limit or 2 * seconds
        if seconds > limit:
            stop = f"create {index + 1} took {seconds:.1f}s > limit {limit:.1f}s"
            break
    # Idle clusters keep starting controllers for a while; memory is read once they settle.
    time.sleep(CONFIG.settle_seconds)
    ready = sum(_readyz(vc) for vc in handles)
    speed_log.write(
        "density",
        created=len(handles),
        ready=ready,
        memory_before=before,
        memory_after=docker_memory(CONFIG.docker_binary, container),
        settle_seconds=CONFIG.settle_seconds,
        limit_seconds=limit,
        stop=stop,
    )
