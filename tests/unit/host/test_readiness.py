"""Host readiness: a component that is not ready is waited for, one the host lacks is not."""

from __future__ import annotations

from typing import cast

import pytest
from kubernetes import client

from pytest_vcluster.core.errors import HostError
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host.readiness import HostCheck, _pods_ready, wait_host_ready


def test_waits_for_each_component_and_skips_absent_ones() -> None:
    answers = iter([(False, "coredns-1 Running not ready"), (True, "coredns-1 Running ready")])
    checks = [
        HostCheck("kube-proxy Ready", lambda: (None, "none on this host")),
        HostCheck("CoreDNS Ready", lambda: next(answers)),
    ]
    seen = wait_host_ready(checks, Deadline(10), where="kind 't'", sleep=lambda s: None)
    assert seen == [
        "kube-proxy Ready: none on this host",
        "CoreDNS Ready: coredns-1 Running ready",
    ]


def test_a_host_that_stays_unready_is_a_host_error_saying_what_was_seen() -> None:
    checks = [HostCheck("CoreDNS Ready", lambda: (False, "coredns-1 Pending"))]
    with pytest.raises(HostError) as raised:
        wait_host_ready(checks, Deadline(0.2), where="kind cluster 't'")
    message = str(raised.value)
    assert "the host kind cluster 't' is not ready to run vclusters" in message
    assert "coredns-1 Pending" in message
    assert "--vcluster-host-timeout" in message


def _pod(name: str, ready: bool) -> client.V1Pod:
    condition = client.V1PodCondition(type="Ready", status="True" if ready else "False")
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        status=client.V1PodStatus(phase="Running", conditions=[condition]),
    )


class FakeCore:
    def __init__(self, pods: list[client.V1Pod]) -> None:
        self.pods = pods

    def list_namespaced_pod(self, namespace: str, **kwargs: object) -> client.V1PodList:
        return client.V1PodList(items=self.pods)


def test_one_ready_coredns_pod_proves_the_path_but_every_kube_proxy_must_be_ready() -> None:
    core = cast(client.CoreV1Api, FakeCore([_pod("a", True), _pod("b", False)]))
    assert _pods_ready(core, "kube-system", "k8s-app=kube-dns", every=False)[0] is True
    assert _pods_ready(core, "kube-system", "k8s-app=kube-proxy")[0] is False
    assert _pods_ready(cast(client.CoreV1Api, FakeCore([])), "ns", "x") == (
        None,
        "none on this host",
    )
