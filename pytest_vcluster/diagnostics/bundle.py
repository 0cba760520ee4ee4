"""What a failed test's report says about its vclusters: a short section and a full bundle.

When a test that used a vcluster fails, :class:`Diagnostics` looks at the cluster while it still
exists: the control-plane pods and their restarts, the last events of its host namespace, the
pods and events inside the virtual cluster, and the tail of the syncer's log. The section is
short enough to read in a terminal; the full material (every container log of the namespace,
the YAML of failing pods, every event) goes to a bundle directory the section names.

Secrets are never read, and every text shown or written passes :func:`redact` first: pod logs
and pod specs can hold kubeconfigs, tokens and keys. Collecting never raises and never takes
long: each API call has its own timeout, all the calls for one test share one budget, and what
failed or was skipped is said inline, so diagnostics cannot hide or delay the test's own
failure for long. This module does not import pytest.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from kubernetes import client

from pytest_vcluster.cluster.evidence import ANSI_COLOUR, ContainerLog, attached
from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.core.errors import ConfigError, RunInterruptedError, VClusterError
from pytest_vcluster.core.labels import (
    ANNOTATION_TEST,
    LABEL_NAME,
    LABEL_STATE,
    is_control_plane,
    run_selector,
)
from pytest_vcluster.core.pods import container_statuses
from pytest_vcluster.core.redaction import redact
from pytest_vcluster.core.waits import Deadline

__all__ = [
    "BUDGET_SECONDS",
    "Diagnostics",
    "DiagnosticsCollector",
    "Section",
    "junit_properties",
    "redact",
]

#: Seconds all diagnostics of one failed test may take together.
BUDGET_SECONDS = 20.0
#: Seconds one API call may take (less when the budget has less left).
CALL_TIMEOUT = 10.0
#: Lines of each part in the section; the bundle has everything.
EVENT_LINES = 8
POD_LINES = 10
LOG_LINES = 10
#: Characters of one message in the section.
MESSAGE_CHARS = 160
#: Bytes of one container log in the bundle, and how many logs at most.
LOG_BYTES = 2_000_000
MAX_LOGS = 40
SYNCER_CONTAINER = "syncer"

#: A report section: ``(title, text)`` as ``TestReport.sections`` holds them.
Section = tuple[str, str]

T = TypeVar("T")


def junit_properties(handle: VCluster, index: int) -> list[tuple[str, object]]:
    """JUnit XML properties of a test's ``index``-th cluster (``vcluster_``, ``vcluster_1_``...)."""
    prefix = "vcluster_" if index == 0 else f"vcluster_{index}_"
    return [
        (f"{prefix}name", handle.name),
        (f"{prefix}namespace", handle.namespace),
        (f"{prefix}version", handle.version),
        (f"{prefix}ready_seconds", handle.ready_seconds),
        (f"{prefix}reused", handle.reused),
    ]


def _short(text: object, limit: int = MESSAGE_CHARS) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if isinstance(status, int):
        return f"{status} {reason or ''}".strip()
    return _short(f"{type(exc).__name__}: {exc}", 200)


def _when(event: client.CoreV1Event) -> dt.datetime | None:
    meta = event.metadata
    for stamp in (
        event.last_timestamp,
        event.event_time,
        event.first_timestamp,
        meta.creation_timestamp if meta else None,
    ):
        if isinstance(stamp, dt.datetime):
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    return None


def _sorted_events(events: Sequence[client.CoreV1Event]) -> list[client.CoreV1Event]:
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(events, key=lambda event: _when(event) or oldest)


def pick_events(
    events: Sequence[client.CoreV1Event], limit: int = EVENT_LINES
) -> list[client.CoreV1Event]:
    """At most ``limit`` of the (sorted) ``events``: the last warnings, filled up with the
    latest others, in their order. Normal events (pulled, started) outnumber the few that
    tell what went wrong."""
    warnings = [event for event in events if event.type == "Warning"][-limit:]
    keep = {id(event) for event in warnings}
    for event in reversed(events):
        if len(keep) >= limit:
            break
        keep.add(id(event))
    return [event for event in events if id(event) in keep]


def event_line(
    event: client.CoreV1Event, *, with_namespace: bool = False, limit: int = MESSAGE_CHARS
) -> str:
    """``12:01:02 Warning BackOff pod/name: message (x3)``."""
    when = _when(event)
    stamp = when.strftime("%H:%M:%S") if when else "--:--:--"
    obj = event.involved_object
    where = ""
    if obj is not None:
        namespace = f"{obj.namespace}/" if with_namespace and obj.namespace else ""
        where = f" {str(obj.kind or '?').lower()}/{namespace}{obj.name}"
    count = f" (x{event.count})" if event.count and event.count > 1 else ""
    message = _short(event.message, limit)
    return f"{stamp} {event.type or '?'} {event.reason or '?'}{where}: {message}{count}"


def _container_problem(cs: client.V1ContainerStatus) -> str | None:
    """``app: CrashLoopBackOff (...), last exit 1 Error`` for a container that is not fine."""
    parts: list[str] = []
    state = cs.state
    if state and state.waiting and state.waiting.reason:
        message = f" ({_short(state.waiting.message, 100)})" if state.waiting.message else ""
        parts.append(f"{state.waiting.reason}{message}")
    elif state and state.terminated and state.terminated.exit_code != 0:
        ended = state.terminated
        parts.append(f"exited {ended.exit_code} {ended.reason or ''}".rstrip())
    last = cs.last_state.terminated if cs.last_state else None
    if last is not None and last.exit_code != 0:
        parts.append(f"last exit {last.exit_code} {last.reason or ''}".rstrip())
    if not parts and not cs.ready and not (state and state.terminated):
        parts.append("not ready")
    return f"{cs.name}: {', '.join(parts)}" if parts else None


def pod_failing(pod: client.V1Pod) -> bool:
    """True unless the pod is Succeeded, or Running with every container ready."""
    status = pod.status
    phase = status.phase if status else None
    if phase == "Succeeded":
        return False
    containers = list(status.container_statuses or []) if status else []
    return phase != "Running" or not containers or not all(cs.ready for cs in containers)


def pod_line(pod: client.V1Pod, *, with_namespace: bool = False) -> str:
    """``ns/name Running 1/2 ready, restarts 3: app: CrashLoopBackOff, last exit 1 Error``."""
    meta = pod.metadata
    name = meta.name if meta else "?"
    if with_namespace and meta and meta.namespace:
        name = f"{meta.namespace}/{name}"
    status = pod.status
    phase = (status.phase if status else None) or "?"
    containers = list(status.container_statuses or []) if status else []
    ready = sum(1 for cs in containers if cs.ready)
    restarts = sum(cs.restart_count or 0 for cs in container_statuses(pod))
    deleting = ", deleting" if meta and meta.deletion_timestamp else ""
    line = f"{name} {phase} {ready}/{len(containers)} ready, restarts {restarts}{deleting}"
    problems = [p for p in (_container_problem(cs) for cs in container_statuses(pod)) if p]
    if not problems and status and status.reason:
        problems.append(f"{status.reason}: {_short(status.message, 100)}")
    if not problems and phase == "Pending":
        conditions = status.conditions if status else None
        waiting = [c for c in conditions or [] if c.status == "False" and c.reason]
        problems += [f"{c.type} {c.reason}: {_short(c.message, 100)}" for c in waiting[:1]]
    return line + (": " + "; ".join(problems) if problems else "")


def attempt(
    deadline: Deadline, what: str, lines: list[str], call: Callable[[float], T]
) -> T | None:
    """``call(timeout)``; on failure, or when the budget is spent, a line saying so."""
    remaining = deadline.remaining
    if remaining < 0.5:
        lines.append(f"  ({what}: skipped, the {deadline.seconds:g}s budget is spent)")
        return None
    try:
        return call(min(CALL_TIMEOUT, remaining))
    except Exception as exc:  # noqa: BLE001 - diagnostics report their failures, never raise
        lines.append(f"  ({what} failed: {_error(exc)})")
        return None


def _slug(text: str, limit: int = 100) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:limit] or "test"


@dataclass
class Diagnostics:
    """Looks at one vcluster: a section of at most about 60 lines, and a bundle on disk.

    ``host`` and ``virtual`` are API clients of the host and of the virtual cluster (``None``
    when there is none, e.g. the cluster never became ready). ``bundle`` is the directory the
    full material goes to (``None``: none written). ``deadline`` bounds every call it makes.
    """

    host: client.ApiClient | None
    name: str
    namespace: str
    virtual: client.ApiClient | None = None
    bundle: Path | None = None
    deadline: Deadline = field(default_factory=lambda: Deadline(BUDGET_SECONDS))
    headline: str = ""
    _files: list[str] = field(default_factory=list)

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, what: str, lines: list[str], call: Callable[[float], T]) -> T | None:
        return attempt(self.deadline, what, lines, call)

    def _write(self, relative: str, text: str) -> None:
        if self.bundle is None:
            return
        try:
            path = self.bundle / relative
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(redact(text))
            self._files.append(relative)
        except OSError:
            pass  # the section says how many files were written; a full disk is no test failure

    @staticmethod
    def _pods_yaml(pods: Sequence[client.V1Pod]) -> str:
        """Pods as ``kubectl get -o yaml`` shows them, without the managed fields."""
        documents = []
        for pod in pods:
            data = pod.model_dump(by_alias=True, exclude_none=True, mode="json")
            data.get("metadata", {}).pop("managedFields", None)
            documents.append(data)
        return yaml.safe_dump_all(documents, sort_keys=False, width=120)

    # -- parts ----------------------------------------------------------------------------

    def _host_part(self, lines: list[str]) -> list[client.V1Pod]:
        if self.host is None:
            lines.append("host: no API client")
            return []
        core = client.CoreV1Api(self.host)
        pod_list = self._call(
            f"listing pods in host namespace {self.namespace}",
            lines,
            lambda timeout: core.list_namespaced_pod(self.namespace, _request_timeout=timeout),
        )
        pods = list(pod_list.items) if pod_list is not None else []
        control = [
            pod
            for pod in pods
            if is_control_plane((pod.metadata.labels if pod.metadata else None) or {}, self.name)
        ]
        if pod_list is not None:
            lines.append(f"control plane ({len(control)} pod(s) in {self.namespace}):")
            lines += [f"  {pod_line(pod)}" for pod in control] or ["  none (deleted or not made)"]
            others = [pod for pod in pods if pod not in control]
            failing = [pod for pod in others if pod_failing(pod)]
            if others:
                lines.append(f"  synced pods on the host: {len(others)}, {len(failing)} failing")
            self._write("host-pods.yaml", self._pods_yaml(control + failing))
        event_list = self._call(
            f"listing events in host namespace {self.namespace}",
            lines,
            lambda timeout: core.list_namespaced_event(self.namespace, _request_timeout=timeout),
        )
        if event_list is not None:
            self._events_part(lines, "host", event_list.items, with_namespace=False)
        return pods

    def _events_part(
        self,
        lines: list[str],
        side: str,
        listed: Sequence[client.CoreV1Event],
        *,
        with_namespace: bool,
    ) -> None:
        """A few events in the section (warnings first), all of them in the bundle."""
        events = _sorted_events(listed)
        shown = pick_events(events)
        lines.append(f"{side} events ({len(shown)} of {len(events)}, warnings first):")
        lines += [f"  {event_line(e, with_namespace=with_namespace)}" for e in shown] or ["  none"]
        full = (event_line(e, with_namespace=with_namespace, limit=10_000) for e in events)
        self._write(f"{side}-events.txt", "\n".join(full))

    def _virtual_part(self, lines: list[str]) -> None:
        if self.virtual is None:
            lines.append("virtual cluster: not reachable (no client: it never became ready)")
            return
        core = client.CoreV1Api(self.virtual)
        pod_list = self._call(
            "listing pods in the virtual cluster",
            lines,
            lambda timeout: core.list_pod_for_all_namespaces(_request_timeout=timeout),
        )
        if pod_list is not None:
            pods = list(pod_list.items)
            failing = [pod for pod in pods if pod_failing(pod)]
            lines.append(f"virtual pods: {len(pods)}, {len(failing)} failing:")
            lines += [f"  {pod_line(pod, with_namespace=True)}" for pod in failing[:POD_LINES]]
            if len(failing) > POD_LINES:
                lines.append(f"  ... and {len(failing) - POD_LINES} more (see the bundle)")
            self._write("virtual-pods.yaml", self._pods_yaml(failing))
            listing = "\n".join(pod_line(pod, with_namespace=True) for pod in pods)
            self._write("virtual-pods.txt", listing)
        event_list = self._call(
            "listing events in the virtual cluster",
            lines,
            lambda timeout: core.list_event_for_all_namespaces(_request_timeout=timeout),
        )
        if event_list is not None:
            self._events_part(lines, "virtual", event_list.items, with_namespace=True)

    def _log(self, lines: list[str], pod: str, container: str, *, previous: bool) -> str | None:
        core = client.CoreV1Api(self.host)
        which = " (previous)" if previous else ""
        return self._call(
            f"log of {pod}/{container}{which}",
            lines,
            lambda timeout: core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=container,
                previous=previous or None,
                limit_bytes=LOG_BYTES,
                _request_timeout=timeout,
            ),
        )

    def _logs_part(self, lines: list[str], pods: Sequence[client.V1Pod]) -> None:
        """Every container log of the namespace (the synced pods' too) into the bundle; the
        syncer's tail into the section."""
        if self.host is None:
            return
        syncer_tail: list[str] | None = None
        quiet: list[str] = []  # failures of logs that only go to the bundle
        written = 0
        control = [
            pod
            for pod in pods
            if is_control_plane((pod.metadata.labels if pod.metadata else None) or {}, self.name)
        ]
        for pod in control + [pod for pod in pods if pod not in control]:
            pod_name = pod.metadata.name if pod.metadata else None
            if not pod_name:
                continue
            for cs in container_statuses(pod):
                if written >= MAX_LOGS or self.deadline.remaining < 0.5:
                    break
                started = cs.state is not None and not cs.state.waiting
                for previous in (False, True) if cs.restart_count else (False,):
                    if not previous and not started and not cs.restart_count:
                        continue  # never ran: nothing to read
                    text = self._log(quiet, pod_name, cs.name, previous=previous)
                    if text is None:
                        continue
                    written += 1
                    suffix = ".previous.log" if previous else ".log"
                    self._write(f"logs/{pod_name}.{cs.name}{suffix}", text)
                    if pod in control and cs.name == SYNCER_CONTAINER and not previous:
                        syncer_tail = text.splitlines()[-LOG_LINES:]
        if syncer_tail is not None:
            lines.append(f"syncer log ({len(syncer_tail)} last lines):")
            tail = [_short(redact(ANSI_COLOUR.sub("", line)), 200) for line in syncer_tail]
            lines += [f"  {line}" for line in tail] or ["  (empty)"]
        elif control:
            lines.append("syncer log: none (the container has not run)")
        if quiet:
            lines.append(f"  ({len(quiet)} log(s) not read; first: {quiet[0].strip()[1:-1]})")

    # -- public ---------------------------------------------------------------------------

    def collect(self) -> str:
        """The section's text; writes the bundle (``summary.txt`` is the same text)."""
        started = time.monotonic()
        lines: list[str] = [self.headline] if self.headline else []
        if self.bundle is not None:
            try:
                self.bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                lines.append(f"(cannot make the bundle directory {self.bundle}: {exc})")
                self.bundle = None
        pods = self._host_part(lines)
        self._virtual_part(lines)
        self._logs_part(lines, pods)
        took = time.monotonic() - started
        if self.bundle is not None:
            files = len(self._files) + 1
            lines.append(f"bundle: {self.bundle} ({files} files; logs, pod YAML, all events)")
        lines.append(f"(diagnostics collected in {took:.1f}s; credentials redacted)")
        text = redact("\n".join(lines))
        self._write("summary.txt", text)
        return text


_NAMESPACE_IN_ERROR = re.compile(r"\bnamespace (pv-[a-z0-9-]*[a-z0-9])\b")


@dataclass
class DiagnosticsCollector:
    """Sections for the report of a failed test, one per vcluster it used.

    ``host_api`` gives the host's API client (asked only when a test failed); bundles go to
    ``root/<test>/<cluster>``. ``run_id`` and ``worker`` find the namespace a failed start
    left behind (its labels), when its teardown mode kept it.
    """

    host_api: Callable[[], client.ApiClient]
    root: Path
    run_id: str
    worker: str
    budget: float = BUDGET_SECONDS

    def _host(self, notes: list[str]) -> client.ApiClient | None:
        try:
            return self.host_api()
        except Exception as exc:  # noqa: BLE001 - said in the section instead
            notes.append(f"(no host API client: {_error(exc)})")
            return None

    def sections(
        self,
        nodeid: str,
        handles: Sequence[VCluster],
        error: BaseException | None = None,
    ) -> list[Section]:
        """One section per cluster in ``handles``, plus one per cluster whose start ``error``
        (a :class:`VClusterError`) reports; never raises."""
        deadline = Deadline(self.budget)
        notes: list[str] = []
        host = self._host(notes)
        found: list[Section] = []
        directory = self.root / _slug(nodeid)
        for handle in handles:
            source = "resumed" if handle.reused else "created"
            headline = (
                f"vcluster {handle.name} in host namespace {handle.namespace}: server "
                f"{handle.version}, {source}, ready in {handle.ready_seconds:.1f}s"
            )
            diagnostics = Diagnostics(
                host,
                handle.name,
                handle.namespace,
                virtual=handle.api_client,
                bundle=directory / handle.name,
                deadline=deadline,
                headline="\n".join([headline, *notes]),
            )
            found.append((f"vcluster {handle.name}", self._safely(diagnostics)))
        if _is_start_failure(error):
            known = {handle.name for handle in handles}
            found += self._failed_start(
                host,
                nodeid=nodeid,
                known=known,
                error=error,
                directory=directory,
                deadline=deadline,
                notes=notes,
            )
        return found

    @staticmethod
    def _safely(diagnostics: Diagnostics) -> str:
        try:
            return diagnostics.collect()
        except Exception as exc:  # noqa: BLE001 - a bug here must not replace the test's error
            return f"{diagnostics.headline}\n(diagnostics failed: {_error(exc)})"

    def _failed_start(
        self,
        host: client.ApiClient | None,
        *,
        nodeid: str,
        known: Collection[str],
        error: BaseException | None,
        directory: Path,
        deadline: Deadline,
        notes: list[str],
    ) -> list[Section]:
        lines: list[str] = list(notes)
        kept: list[tuple[str, str, str]] = []
        checked = False
        if host is not None:
            selector = run_selector(self.run_id, self.worker)
            core = client.CoreV1Api(host)
            listed = attempt(
                deadline,
                "listing this run's namespaces",
                lines,
                lambda timeout: core.list_namespace(
                    label_selector=selector, _request_timeout=timeout
                ),
            )
            checked = listed is not None
            for ns in listed.items if listed is not None else []:
                meta = ns.metadata
                labels = (meta.labels if meta else None) or {}
                annotations = (meta.annotations if meta else None) or {}
                name = labels.get(LABEL_NAME)
                if not meta or not meta.name or not name or name in known:
                    continue
                if annotations.get(ANNOTATION_TEST) != nodeid or meta.deletion_timestamp:
                    continue
                kept.append((name, meta.name, labels.get(LABEL_STATE, "?")))
        sections: list[Section] = []
        for name, left_in, state in kept:
            diagnostics = Diagnostics(
                host,
                name,
                left_in,
                bundle=directory / name,
                deadline=deadline,
                headline=f"vcluster {name} failed to start; left in host namespace "
                f"{left_in} (state {state})",
            )
            sections.append((f"vcluster {name}", self._safely(diagnostics)))
        if sections:
            return sections
        match = _NAMESPACE_IN_ERROR.search(str(error))
        namespace = match.group(1) if match else None
        where = f"its namespace {namespace}" if namespace else "its namespace"
        state = (
            f"{where} is no longer on the host (deleted after the failed start)"
            if checked
            else f"whether {where} is still on the host could not be checked"
        )
        lines.insert(
            0,
            f"the vcluster failed to start and {state}; the error above tells what happened. "
            "To keep a cluster that fails to start for diagnosis, run with "
            "--vcluster-teardown=keep-on-failure.",
        )
        crashed = attached(error)
        if crashed:
            bundle = directory / (namespace or "setup")
            written = _write_crashed_logs(bundle, crashed, lines)
            if written:
                lines.append(
                    f"bundle: {bundle} ({written} crashed container log(s), read before the "
                    "namespace was deleted)"
                )
        return [(f"vcluster {namespace or 'setup'}", redact("\n".join(lines)))]


def _write_crashed_logs(bundle: Path, logs: Sequence[ContainerLog], lines: list[str]) -> int:
    """Write each crashed container's log (redacted when read) into ``bundle``."""
    written = 0
    try:
        bundle.mkdir(parents=True, exist_ok=True)
        for entry in logs:
            path = bundle / _slug(f"{entry.pod}.{entry.container}.crashed.log")
            path.write_text(entry.text, encoding="utf-8")
            written += 1
    except OSError as exc:
        lines.append(f"(cannot write the crashed containers' logs to {bundle}: {exc})")
    return written


def _is_start_failure(error: BaseException | None) -> bool:
    """True for errors of a vcluster's start (not bad arguments, not an interrupt)."""
    return isinstance(error, VClusterError) and not isinstance(
        error, ConfigError | RunInterruptedError
    )
