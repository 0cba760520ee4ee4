"""The evidence of a restarted control plane: what its containers said before they exited.

A container's previous log lives only as long as its pod, and a failed start deletes the
namespace. So before anything is deleted, the logs of every control-plane container that
restarted (its previous run) or exited are read, bounded in size and time, redacted, and
attached to the error (:func:`attach`): its message ends with their last lines and the
diagnostics bundle keeps them whole. A start that became ready after a tolerated crash
records the same evidence in the records file.

:func:`is_transient` tells a crash caused by the host's API being briefly out of reach
(``connection refused``, a timeout) from a deterministic one (a bad flag, a missing file):
only the former is worth starting again. This module does not import pytest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes import client

from pytest_vcluster.core.errors import StartFailedError, VClusterError
from pytest_vcluster.core.pods import container_statuses
from pytest_vcluster.core.redaction import redact

__all__ = [
    "ANSI_COLOUR",
    "ContainerLog",
    "attach",
    "attached",
    "is_transient",
    "read_restarted_logs",
]

log = logging.getLogger(__name__)

#: Bytes and lines read of one container's log; seconds one read may take.
LOG_BYTES = 64_000
LOG_LINES = 200
READ_TIMEOUT = 10.0
#: Containers whose logs are read at most (the control plane has two or three).
MAX_CONTAINERS = 4
#: Lines of each log shown at the end of the error message.
MESSAGE_LINES = 12
#: What a container says when it could not reach the host's API for a moment, or lost a race
#: a new start does not meet again.
_TRANSIENT = re.compile(
    r"connection refused|i/o timeout|TLS handshake timeout|context deadline exceeded"
    r"|connection reset by peer|no route to host|the server is currently unable to handle"
    r"|etcdserver: request timed out|Client\.Timeout exceeded|http2: client connection lost"
    # vcluster's syncer replaces the virtual default/kubernetes Service (delete, then create
    # with the host's IP) while the API server's reconciler makes a missing one every 10 s: when
    # it does so in between, the syncer exits on "already exists". A new start does not meet it.
    r"|sync kubernetes service: .*already exists",
    re.IGNORECASE,
)
_ATTRIBUTE = "container_logs"
#: Terminal colours the syncer's logger writes; they would garble a report.
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ContainerLog:
    """The log of one container's previous (or current, exited) run."""

    pod: str
    container: str
    restarts: int
    previous: bool
    text: str

    @property
    def title(self) -> str:
        """``pod vc-0 container syncer, previous run (restarted 2 times)``."""
        which = "previous run" if self.previous else "last run"
        return f"pod {self.pod} container {self.container}, {which} (restarted {self.restarts}x)"

    def tail(self, lines: int = MESSAGE_LINES) -> str:
        """The last ``lines`` lines."""
        return "\n".join(self.text.rstrip("\n").splitlines()[-lines:])

    def to_dict(self) -> dict[str, object]:
        """For the records file."""
        return {
            "pod": self.pod,
            "container": self.container,
            "restarts": self.restarts,
            "previous": self.previous,
            "tail": self.tail(),
        }


def _needs_reading(cs: client.V1ContainerStatus) -> tuple[bool, bool]:
    """Whether this container's log is evidence, and whether it is the previous run's.

    A container that has just exited holds the newest crash in its current log; the kubelet
    keeps one dead container, so the run before it is gone by then. A container running (or
    waiting to restart) after a crash has that crash in its previous log.
    """
    terminated = cs.state.terminated if cs.state else None
    if terminated is not None:
        return terminated.exit_code not in (0, None), False
    return (cs.restart_count or 0) > 0, True


def read_restarted_logs(
    core: client.CoreV1Api, namespace: str, selector: str
) -> list[ContainerLog]:
    """The logs of the control-plane containers that restarted or exited (never raises)."""
    try:
        pods = core.list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=READ_TIMEOUT
        ).items
    except Exception as exc:  # noqa: BLE001 - evidence is best effort: the error is the point
        log.info("cannot list the pods of %s for their logs: %s", namespace, exc)
        return []
    found: list[ContainerLog] = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata and pod.metadata.name else "?"
        for cs in container_statuses(pod):
            wanted, previous = _needs_reading(cs)
            if not wanted or len(found) >= MAX_CONTAINERS:
                continue
            try:
                text = core.read_namespaced_pod_log(
                    name,
                    namespace,
                    container=cs.name,
                    previous=previous or None,
                    tail_lines=LOG_LINES,
                    limit_bytes=LOG_BYTES,
                    _request_timeout=READ_TIMEOUT,
                )
            except Exception as exc:  # noqa: BLE001 - say that it could not be read instead
                text = f"(log could not be read: {type(exc).__name__}: {exc})"
            found.append(
                ContainerLog(
                    name,
                    str(cs.name),
                    cs.restart_count or 0,
                    previous,
                    redact(ANSI_COLOUR.sub("", str(text))),
                )
            )
    return found


def attach(error: VClusterError, logs: Sequence[ContainerLog]) -> None:
    """Keep ``logs`` on ``error`` and end its message with their last lines."""
    if not logs:
        return
    setattr(error, _ATTRIBUTE, list(logs))
    parts = [str(error.args[0]) if error.args else str(error)]
    for entry in logs:
        parts.append(f"--- {entry.title}, last lines ---\n{entry.tail()}")
    error.args = ("\n".join(parts), *error.args[1:])


def attached(error: BaseException | None) -> list[ContainerLog]:
    """The logs :func:`attach` kept on ``error`` (or on what it was raised from)."""
    while error is not None:
        logs = getattr(error, _ATTRIBUTE, None)
        if logs:
            return list(logs)
        error = error.__cause__
    return []


def is_transient(error: VClusterError, logs: Sequence[ContainerLog]) -> bool:
    """True for a crash caused by the host's API being out of reach for a moment, or by
    vcluster's own race over the ``kubernetes`` Service (see ``_TRANSIENT``).

    Only crashes count (image pulls, unschedulable pods and timeouts do not), and only when
    the crashed container's own words say it could not reach an API.
    """
    if not isinstance(error, StartFailedError):
        return False
    message = str(error.args[0]) if error.args else ""
    crashed = " exited: " in message or "CrashLoopBackOff" in message
    return crashed and any(_TRANSIENT.search(entry.text) for entry in logs)
