"""Readiness of a vcluster as a chain of probes, each a named phase with its own timing.

A :class:`Probe` is one observable step (the control-plane pod scheduled, its init container
done, the kubeconfig secret written, the virtual API's ``/readyz``, the ``default``
ServiceAccount, CoreDNS Ready). :func:`wait_for` runs a chain against one deadline and
records when each phase completed in a :class:`PhaseTimer`. The probes look at the things
themselves, polled every quarter second, rather than at probe-gated pod conditions.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import StartFailedError
from pytest_vcluster.core.pods import (
    UNSCHEDULABLE_GRACE,
    describe_pods,
    pod_condition,
    pod_ready,
    raise_if_stuck,
    unschedulable_reason,
)
from pytest_vcluster.core.waits import Deadline, wait_until

__all__ = [
    "COREDNS_SELECTOR",
    "PhaseTimer",
    "Probe",
    "coredns_ready",
    "kubeconfig_secret",
    "pod_initialized",
    "pod_scheduled",
    "readyz",
    "service_account",
    "wait_for",
]

# vcluster labels its CoreDNS "vcluster-kube-dns"; plain clusters use "kube-dns".
COREDNS_SELECTOR = "k8s-app in (vcluster-kube-dns,kube-dns)"


@dataclass
class PhaseTimer:
    """Seconds from the start of an operation at which each phase completed."""

    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def mark(self, phase: str) -> float:
        """Record that ``phase`` completed now; return the seconds since the start."""
        elapsed = round(self.clock() - self.started, 3)
        self.phases.append((phase, elapsed))
        return elapsed

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.clock() - self.started


@dataclass(frozen=True)
class Probe:
    """One step of readiness: ``check`` says whether it holds and what it saw."""

    phase: str
    awaited: str
    check: Callable[[], tuple[bool, str]]
    interval: float = 0.25


def wait_for(
    probes: Sequence[Probe],
    deadline: Deadline,
    timer: PhaseTimer,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait for each probe in turn; raise on the first that misses the deadline."""
    for probe in probes:
        wait_until(probe.awaited, probe.check, deadline, interval=probe.interval, sleep=sleep)
        timer.mark(probe.phase)


def _live_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=API_TIMEOUT
    ).items
    return [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]


def pod_scheduled(
    core: client.CoreV1Api,
    namespace: str,
    selector: str,
    *,
    grace: float = UNSCHEDULABLE_GRACE,
    clock: Callable[[], float] = time.monotonic,
) -> Probe:
    """The control-plane pod exists and is bound to a node; fails when it stays unschedulable."""
    since: list[float] = []

    def check() -> tuple[bool, str]:
        pods = _live_pods(core, namespace, selector)
        raise_if_stuck(pods, f"control plane in namespace {namespace}")
        if any(pod_condition(p, "PodScheduled") for p in pods):
            return True, describe_pods(pods)
        reason = unschedulable_reason(pods)
        if reason is None:
            since.clear()
        elif not since:
            since.append(clock())
        elif clock() - since[0] > grace:
            raise StartFailedError(
                f"the control plane in namespace {namespace} cannot be scheduled on the host "
                f"for {grace:g}s: {reason}. Free room on the host (fewer clusters at once: "
                "--vcluster-lookahead, -n) or lower the chart's resource requests."
            )
        return False, describe_pods(pods) + (f" (unschedulable: {reason})" if reason else "")

    return Probe("scheduled", f"control-plane pod ({selector}) scheduled in {namespace}", check)


def pod_initialized(core: client.CoreV1Api, namespace: str, selector: str) -> Probe:
    """The control-plane pod's init containers (the binaries copy) have finished."""

    def check() -> tuple[bool, str]:
        pods = _live_pods(core, namespace, selector)
        raise_if_stuck(pods, f"control plane in namespace {namespace}")
        return any(pod_condition(p, "Initialized") for p in pods), describe_pods(pods)

    return Probe("initialized", f"control-plane pod ({selector}) initialized in {namespace}", check)


def kubeconfig_secret(
    core: client.CoreV1Api, namespace: str, name: str, found: dict[str, str], selector: str
) -> Probe:
    """Secret ``vc-NAME`` holds the kubeconfig (the syncer writes it after its certificates)."""

    def check() -> tuple[bool, str]:
        try:
            secret = core.read_namespaced_secret(
                f"vc-{name}", namespace, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                return False, f"secret vc-{name}: {exc.status} {exc.reason}"
            pods = _live_pods(core, namespace, selector)
            raise_if_stuck(pods, f"control plane in namespace {namespace}")
            return False, f"secret vc-{name} not written yet; pods: {describe_pods(pods)}"
        data = secret.data or {}
        if "config" not in data:
            return False, f"secret vc-{name} has no key 'config' (keys: {sorted(data)})"
        found["config"] = base64.b64decode(data["config"]).decode()
        return True, "found"

    return Probe("kubeconfig", f"kubeconfig secret vc-{name} in namespace {namespace}", check)


def readyz(api: client.ApiClient) -> Probe:
    """The virtual API server answers ``/readyz`` with ``ok``."""

    def check() -> tuple[bool, str]:
        cfg = api.configuration
        # Client certificates are in the pool already; add header credentials if any.
        headers = {
            str(auth["key"]): str(auth["value"])
            for auth in cfg.auth_settings().values()
            if auth.get("in") == "header" and auth.get("value")
        }
        response = api.rest_client.pool_manager.request(
            "GET",
            f"{cfg.host}/readyz",
            headers=headers,
            timeout=urllib3.Timeout(total=API_TIMEOUT),
            retries=False,
        )
        body = response.data.decode(errors="replace").strip()
        return response.status == 200 and body == "ok", f"HTTP {response.status} {body[:200]}"

    return Probe("readyz", "virtual API /readyz to answer ok", check)


def service_account(api: client.ApiClient) -> Probe:
    """ServiceAccount ``default/default`` exists (pods can be created)."""
    core = client.CoreV1Api(api)

    def check() -> tuple[bool, str]:
        try:
            core.read_namespaced_service_account("default", "default", _request_timeout=API_TIMEOUT)
        except ApiException as exc:
            return False, f"{exc.status} {exc.reason}"
        return True, "present"

    return Probe("service-account", "ServiceAccount default/default in the virtual cluster", check)


def coredns_ready(
    api: client.ApiClient, host: client.CoreV1Api, namespace: str, name: str
) -> Probe:
    """CoreDNS is Ready both in the virtual cluster and as the pod synced to the host.

    The host pod is the one that serves: after a resume the virtual pod still reads Ready from
    before the pause while its host pod is only being recreated.
    """
    core = client.CoreV1Api(api)
    host_selector = (
        f"vcluster.loft.sh/managed-by={name},vcluster.loft.sh/namespace=kube-system,"
        f"{COREDNS_SELECTOR}"
    )

    def check() -> tuple[bool, str]:
        pods = core.list_namespaced_pod(
            "kube-system", label_selector=COREDNS_SELECTOR, _request_timeout=API_TIMEOUT
        ).items
        raise_if_stuck(pods, "CoreDNS in the virtual cluster")
        if not any(pod_ready(p) for p in pods):
            return False, "virtual: " + describe_pods(list(pods))
        synced = _live_pods(host, namespace, host_selector)
        raise_if_stuck(synced, f"CoreDNS synced to namespace {namespace}")
        return any(pod_ready(p) for p in synced), "on the host: " + describe_pods(synced)

    return Probe(
        "coredns", f"CoreDNS (kube-system, {COREDNS_SELECTOR}) Ready in the virtual cluster", check
    )
