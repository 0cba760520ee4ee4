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

from pytest_vcluster.errors import StartFailedError
from pytest_vcluster.waits import Deadline, wait_until

__all__ = [
    "COREDNS_SELECTOR",
    "TERMINAL_REASONS",
    "PhaseTimer",
    "Probe",
    "container_statuses",
    "coredns_ready",
    "describe_pods",
    "kubeconfig_secret",
    "pod_condition",
    "pod_initialized",
    "pod_ready",
    "pod_scheduled",
    "raise_if_stuck",
    "readyz",
    "service_account",
    "wait_for",
]

_API_TIMEOUT = 15.0
# vcluster labels its CoreDNS "vcluster-kube-dns"; plain clusters use "kube-dns".
COREDNS_SELECTOR = "k8s-app in (vcluster-kube-dns,kube-dns)"
#: Waiting reasons a pod does not leave without someone changing it. CrashLoopBackOff counts at
#: its first sighting: healthy starts on the offline stack (control plane, its init container,
#: CoreDNS) showed no restart at all, and waiting for more restarts costs about a minute of
#: kubelet back-off for a start that fails anyway.
TERMINAL_REASONS = frozenset(
    {
        "ErrImageNeverPull",
        "InvalidImageName",
        "ImagePullBackOff",
        "CreateContainerConfigError",
    }
)
#: A container that crashed this often is crashing, not starting slowly. Healthy starts on an
#: idle host never restart (0 restarts over 3 measured starts), but a syncer on a host busy
#: with other starts was seen to exit once and then come up; the second crash, about 10 s
#: (kubelet's first back-off) after the first, is the one that fails the start.
CRASHES_TOLERATED = 1
#: A container that crashed after running this long got going and then gave up (a timeout on
#: a starved host); only crashes shorter than this, like a bad flag or a missing file, are
#: taken as deterministic. Slower crash loops fail after :data:`SLOW_CRASHES_TOLERATED`.
FAST_CRASH_SECONDS = 10.0
SLOW_CRASHES_TOLERATED = 4
#: Seconds a pod may stay unschedulable: a teardown running in the background may free room
#: within a few seconds, but not later than the 15 s in which a failed start should be told.
UNSCHEDULABLE_GRACE = 15.0


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


def pod_condition(pod: client.V1Pod, kind: str) -> bool:
    """True when the pod's condition ``kind`` (``Ready``, ``PodScheduled``, ...) is True."""
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == kind and c.status == "True" for c in conditions or [])


def pod_ready(pod: client.V1Pod) -> bool:
    """True when the pod is Ready."""
    return pod_condition(pod, "Ready")


def describe_pods(pods: Sequence[client.V1Pod]) -> str:
    """A one-line summary of pods: phase, readiness, waiting/terminated reasons."""
    if not pods:
        return "no pod yet"
    parts = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        status = pod.status
        phase = status.phase if status else "?"
        reasons = []
        statuses = (
            (status.container_statuses or []) + (status.init_container_statuses or [])
            if status
            else []
        )
        for cs in statuses:
            state = cs.state
            if state and state.waiting and state.waiting.reason:
                reasons.append(f"{cs.name}:{state.waiting.reason}")
            elif state and state.terminated and state.terminated.reason not in (None, "Completed"):
                reasons.append(f"{cs.name}:{state.terminated.reason}")
        ready = "ready" if pod_ready(pod) else "not ready"
        extra = f" ({', '.join(reasons)})" if reasons else ""
        parts.append(f"{name} {phase} {ready}{extra}")
    return "; ".join(parts)


def _termination(
    cs: client.V1ContainerStatus,
) -> tuple[client.V1ContainerStateTerminated | None, bool]:
    """The container's current termination, else its last one; and whether it is the last one."""
    current = cs.state.terminated if cs.state else None
    if current is not None:
        return current, False
    last = cs.last_state.terminated if cs.last_state else None
    return last, last is not None


def _describe_exit(terminated: client.V1ContainerStateTerminated) -> str:
    """``Error, exit code 1: message`` from a terminated state."""
    text = f"{terminated.reason or 'terminated'}, exit code {terminated.exit_code}"
    message = (terminated.message or "").strip()
    return f"{text}: {message[:300]}" if message else text


def _stuck_container(cs: client.V1ContainerStatus, *, deleting: bool) -> str | None:
    """What makes this container fail the start (``is REASON ...``, ``exited: ...``), if any."""
    waiting = cs.state.waiting if cs.state else None
    terminated, _ = _termination(cs)
    crashing = waiting is not None and waiting.reason == "CrashLoopBackOff"
    if waiting is not None and (waiting.reason in TERMINAL_REASONS or crashing):
        if crashing and _crashes(cs) <= _tolerated(terminated):
            return None
        text = f"is {waiting.reason}"
        if terminated is not None:
            text += f" (last exit: {_describe_exit(terminated)})"
        message = (waiting.message or "").strip()
        return text + (f": {message[:300]}" if message else "")
    # A pod being deleted has its containers killed on purpose: those exits are no crash. A
    # container that exited 0 (an init container's "Completed") is fine or, restarting over
    # and over, shows up as CrashLoopBackOff above.
    if terminated is not None and terminated.exit_code != 0 and not deleting:
        if _crashes(cs) <= _tolerated(terminated):
            return None
        return f"exited: {_describe_exit(terminated)} ({_crashes(cs)} times)"
    return None


def _tolerated(terminated: client.V1ContainerStateTerminated | None) -> int:
    """How many crashes to wait out, by how long the last run lasted (unknown: short)."""
    started = terminated.started_at if terminated else None
    finished = terminated.finished_at if terminated else None
    if started is None or finished is None:
        return CRASHES_TOLERATED
    ran = (finished - started).total_seconds()
    return CRASHES_TOLERATED if ran < FAST_CRASH_SECONDS else SLOW_CRASHES_TOLERATED


def _crashes(cs: client.V1ContainerStatus) -> int:
    """How often the container has ended so far: its restarts, and the exit it is in now."""
    current = cs.state.terminated if cs.state else None
    exited_now = current is not None and current.exit_code != 0
    return (cs.restart_count or 0) + (1 if exited_now else 0)


def container_statuses(pod: client.V1Pod) -> list[client.V1ContainerStatus]:
    """The statuses of the pod's init containers, then of its containers."""
    status = pod.status
    if status is None:
        return []
    return list(status.init_container_statuses or []) + list(status.container_statuses or [])


def raise_if_stuck(pods: Sequence[client.V1Pod], what: str) -> None:
    """Raise :class:`StartFailedError` when a pod is in a state it will not leave alone.

    Those are the :data:`TERMINAL_REASONS` and a container that crashed (exited non-zero, or
    in ``CrashLoopBackOff``) more than :data:`CRASHES_TOLERATED` times, or more than
    :data:`SLOW_CRASHES_TOLERATED` times when its last run lasted :data:`FAST_CRASH_SECONDS`
    or longer.
    The message names the pod, the container, the reason and exit code, and where a container
    ran, the command that shows its output.
    """
    for pod in pods:
        metadata = pod.metadata
        deleting = bool(metadata and metadata.deletion_timestamp)
        for cs in container_statuses(pod):
            problem = _stuck_container(cs, deleting=deleting)
            if problem is None:
                continue
            name = metadata.name if metadata and metadata.name else "?"
            text = f"{what}: pod {name} container {cs.name} {problem}"
            terminated, previous = _termination(cs)
            if terminated is not None:
                namespace = f"-n {metadata.namespace} " if metadata and metadata.namespace else ""
                logs = f"kubectl logs {namespace}{name} -c {cs.name}"
                text += f"; its output: `{logs}{' --previous' if previous else ''}`"
            raise StartFailedError(text)


def _live_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=_API_TIMEOUT
    ).items
    return [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]


def _unschedulable(pods: Sequence[client.V1Pod]) -> str | None:
    """The scheduler's message when every pod is unschedulable, else ``None``."""
    messages = []
    for pod in pods:
        conditions = pod.status.conditions if pod.status else None
        found = [
            c
            for c in conditions or []
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        ]
        if not found:
            return None
        messages.append(found[0].message or "Unschedulable")
    return "; ".join(messages) if messages else None


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
        reason = _unschedulable(pods)
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
                f"vc-{name}", namespace, _request_timeout=_API_TIMEOUT
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
            timeout=urllib3.Timeout(total=_API_TIMEOUT),
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
            core.read_namespaced_service_account(
                "default", "default", _request_timeout=_API_TIMEOUT
            )
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
            "kube-system", label_selector=COREDNS_SELECTOR, _request_timeout=_API_TIMEOUT
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
