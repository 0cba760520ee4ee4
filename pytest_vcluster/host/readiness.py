"""When the host is ready to run vclusters: pods reach its API through the Service.

``kind create cluster --wait`` returns once the node is Ready. That is not when a pod can talk
to the API: its address is the ``kubernetes`` Service's ClusterIP, which works only once
kube-proxy has written its rules, and until then a connection is refused. A vcluster syncer
started in that window exits (``dial tcp 10.96.0.1:443: connect: connection refused``), and
so does the host's own storage provisioner. Measured on a new kind host of the offline stack
(seconds from the start of ``kind create cluster``): ``--wait`` returned at 10.6, a pod there was
refused by ``10.96.0.1:443`` from 16.3 until 19.3, kube-proxy read Ready at 18.5, the first
CoreDNS pod at 23.7, and the provisioner, after crashing twice on the refused connection, was
available at 32.6. So the host counts as ready when:

* every kube-proxy pod is Ready (the DaemonSet of kind and kubeadm clusters, when present). Not
  enough alone: kube-proxy reads Ready as soon as it runs, and its rules come a moment later;
* a CoreDNS pod of the host is Ready: its readiness needs its first list of Services and
  Endpoints *through the kubernetes Service*, which is exactly the path a syncer takes (and
  vclusters forward their DNS to it);
* the storage provisioner of kind's default StorageClass (``local-path-provisioner``) is
  available, when the host has one: persistent vclusters claim a volume from it.

Components a host does not have are skipped (an existing cluster may run other DNS or
storage); one that exists and is not ready is waited for until the deadline. This module does
not import pytest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import HostError, WaitTimeoutError
from pytest_vcluster.core.pods import describe_pods, pod_ready
from pytest_vcluster.core.waits import Deadline, wait_until

__all__ = ["HostCheck", "host_checks", "wait_host_ready"]


@dataclass(frozen=True)
class HostCheck:
    """One component of host readiness: ``check`` returns (ready, what it saw); ``None`` for
    ready means the host does not have the component."""

    awaited: str
    check: Callable[[], tuple[bool | None, str]]


def _pods_ready(
    core: client.CoreV1Api, namespace: str, selector: str, *, every: bool = True
) -> tuple[bool | None, str]:
    """Whether every pod (or, with ``every=False``, one) matching ``selector`` is Ready."""
    pods = core.list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=API_TIMEOUT
    ).items
    live = [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]
    if not live:
        return None, "none on this host"
    ready = [pod_ready(p) for p in live]
    return (all(ready) if every else any(ready)), describe_pods(live)


def _deployment_available(
    apps: client.AppsV1Api, namespace: str, name: str
) -> tuple[bool | None, str]:
    try:
        deployment = apps.read_namespaced_deployment(name, namespace, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return None, "none on this host"
        raise
    status = deployment.status
    ready = (status.available_replicas or 0) if status else 0
    wanted = deployment.spec.replicas if deployment.spec and deployment.spec.replicas else 1
    return ready >= wanted, f"{ready}/{wanted} available"


def host_checks(api: client.ApiClient) -> list[HostCheck]:
    """The components a vcluster needs on the host, in the order they come up."""
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    return [
        HostCheck(
            "kube-proxy (kube-system, k8s-app=kube-proxy) Ready: Service addresses work",
            lambda: _pods_ready(core, "kube-system", "k8s-app=kube-proxy"),
        ),
        HostCheck(
            "a CoreDNS pod of the host (kube-system, k8s-app=kube-dns) Ready: pods reach the "
            "API through the kubernetes Service",
            # One Ready pod proves the path and serves DNS; the second adds nothing here.
            lambda: _pods_ready(core, "kube-system", "k8s-app=kube-dns", every=False),
        ),
        HostCheck(
            "the storage provisioner (local-path-storage/local-path-provisioner) available",
            lambda: _deployment_available(apps, "local-path-storage", "local-path-provisioner"),
        ),
    ]


def wait_host_ready(
    checks: list[HostCheck],
    deadline: Deadline,
    *,
    where: str,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Wait for every check; return what each saw. Raise :class:`HostError` at the deadline."""
    seen: list[str] = []
    for host_check in checks:

        def probe(host_check: HostCheck = host_check) -> tuple[bool, str]:
            ready, text = host_check.check()
            # A component the host does not have is nothing to wait for.
            return ready is None or ready, text

        try:
            seen.append(
                f"{host_check.awaited}: "
                + wait_until(host_check.awaited, probe, deadline, interval=0.5, sleep=sleep)
            )
        except WaitTimeoutError as exc:
            raise HostError(
                f"the host {where} is not ready to run vclusters: {exc}. Pods there cannot "
                "rely on the host's API, DNS or storage yet; look at `kubectl get pods -n "
                "kube-system` and `kubectl get pods -n local-path-storage` on the host, or "
                "raise --vcluster-host-timeout"
            ) from exc
    return seen
