"""What a pod's status says: ready or not, in one line, and stuck in a state it will not leave.

The host's readiness, a vcluster's start, port-forwards, crash evidence and waits inside a
cluster all read pods the same way, so they share these rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubernetes import client

from pytest_vcluster.core.errors import StartFailedError, VClusterError

__all__ = [
    "CRASHES_TOLERATED",
    "FAST_CRASH_SECONDS",
    "SLOW_CRASHES_TOLERATED",
    "TERMINAL_REASONS",
    "UNSCHEDULABLE_GRACE",
    "container_statuses",
    "describe_pods",
    "pod_condition",
    "pod_ready",
    "raise_if_stuck",
    "unschedulable_reason",
]

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


def raise_if_stuck(
    pods: Sequence[client.V1Pod],
    what: str,
    error: type[VClusterError] = StartFailedError,
) -> None:
    """Raise ``error`` (:class:`StartFailedError`) when a pod is in a state it will not leave alone.

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
            raise error(text)


def unschedulable_reason(pods: Sequence[client.V1Pod]) -> str | None:
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
