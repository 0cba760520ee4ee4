"""The xdist controller's side of an interrupt: let the workers finish their teardown.

On Ctrl-C every process of an xdist run gets the signal (they share the terminal's process
group). Each worker tears its vclusters down; the controller leaves its loop at once and, left
to itself, pytest-xdist would then shut the workers down: execnet sends a worker that is still
busy after 5 s a SIGINT of its own (which the worker would take for the user's second Ctrl-C)
and ends the process 10 s later, cutting any teardown longer than that. So before pytest-xdist
does that, the controller asks every worker to stop and waits until each has finished its
session, teardown included, or until its deadline passes or a second signal says stop waiting.

The worker objects are pytest-xdist's ``WorkerController``; only their public ``shutdown()``,
``gateway.id`` and the ``workeroutput`` a finished worker sends back (or a closed channel, for
one that died) are used, each behind a guard. This module does not import pytest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.settings.config import Settings

__all__ = ["finished", "leftover_hint", "stop_and_wait", "worker_id"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the workers.
POLL_SECONDS = 0.25


def worker_id(node: object) -> str:
    """``gw0``, ``gw1``...: the worker's gateway id."""
    gateway = getattr(node, "gateway", None)
    return str(getattr(gateway, "id", "?"))


def finished(node: object) -> bool:
    """True once the worker has ended its session (it sent its output) or its channel closed."""
    if getattr(node, "workeroutput", None) is not None:
        return True
    channel = getattr(node, "channel", None)
    isclosed = getattr(channel, "isclosed", None)
    if callable(isclosed):
        try:
            return bool(isclosed())
        except Exception:  # noqa: BLE001 - a channel that cannot tell is treated as open
            return False
    # Nothing to look at: never wait on a worker we cannot observe.
    return True


def stop_and_wait(nodes: Sequence[object], deadline: Deadline) -> list[str]:
    """Ask each running worker to stop after its current test, and wait until all are done.

    Returns the ids of the workers still running when the deadline passed or was stopped.
    """
    running = [node for node in nodes if not finished(node)]
    for node in running:
        shutdown = getattr(node, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception as exc:  # noqa: BLE001 - a dead worker is as good as a stopped one
                log.info("cannot ask xdist worker %s to stop: %s", worker_id(node), exc)
    while running and not deadline.expired and not deadline.stopped:
        if deadline.stop is not None:
            deadline.stop.wait(min(POLL_SECONDS, deadline.remaining))
        else:
            time.sleep(min(POLL_SECONDS, deadline.remaining))
        running = [node for node in running if not finished(node)]
    return [worker_id(node) for node in running]


def leftover_hint(settings: Settings, workers: Sequence[str]) -> list[str]:
    """What the controller says when a second signal stops its wait for ``workers``."""
    if settings.host_kubeconfig is not None:
        flags = f"--host-kubeconfig {settings.host_kubeconfig}"
        if settings.host_context:
            flags += f" --host-context {settings.host_context}"
    else:
        flags = f"--host-name {settings.host_name}"
    lines = []
    if workers:
        running = ", ".join(workers)
        lines.append(f"xdist worker(s) {running} were still tearing down their vclusters")
    lines.append(f"see what is left with: pytest-vcluster ls {flags}")
    lines.append(f"remove it with: pytest-vcluster reap {flags}")
    return lines
