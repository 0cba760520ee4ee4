"""Waiting for objects inside a vcluster, and reading the logs of their pods.

:func:`wait_for` waits until an object is in the state a test needs: a Deployment rolled out,
a Job complete, a Pod Ready, a CRD Established, any condition of ``status.conditions``, or
the object gone. Each kind has a default; a kind without one needs ``condition=``.

A wait fails fast instead of waiting out its timeout when a pod of the object cannot get
anywhere: an image that cannot be pulled, a container that keeps crashing, a pod that stays
unschedulable, a Job that failed, a Deployment past its progress deadline. Those raise
:class:`~pytest_vcluster.core.errors.WorkloadFailedError` with the pod-level reason. The
rules for pods are :mod:`pytest_vcluster.core.pods`', plus one: ``ErrImagePull`` counts at
its first sighting, where a vcluster's own start waits for ``ImagePullBackOff``. A test's
image that fails to pull once has almost always a wrong name or tag, or is not loaded into
the host; kubelet's back-off would only add seconds before the same verdict.

:func:`logs` reads a pod's log, choosing one pod of a workload as kubectl does. This module
does not import pytest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cluster.manifests import (
    ApiResource,
    api_call,
    crd_established,
    discovery_for,
    get_json,
)
from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import (
    ConfigError,
    VClusterError,
    WaitTimeoutError,
    WorkloadFailedError,
    api_error,
)
from pytest_vcluster.core.pods import (
    UNSCHEDULABLE_GRACE,
    container_statuses,
    describe_pods,
    pod_ready,
    raise_if_stuck,
)
from pytest_vcluster.core.waits import Deadline, wait_until

__all__ = [
    "DELETED",
    "EXISTS",
    "IMAGE_PULL_REASONS",
    "Target",
    "choose_pod",
    "condition_status",
    "default_check",
    "label_selector",
    "logs",
    "raise_if_pods_stuck",
    "resolve_target",
    "wait_for",
    "workload_pods",
]

#: ``condition=`` values that wait until the object is gone.
DELETED = frozenset({"deleted", "delete", "gone"})
#: ``condition=`` values that wait until the object exists.
EXISTS = frozenset({"exists", "created"})
#: Waiting reasons of a container whose image cannot be pulled, counted at first sighting.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
#: Kinds whose pods are found through ``spec.selector`` and checked for a hopeless state.
WORKLOAD_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"})
_POD_PHASES = {"pending": "Pending", "running": "Running", "succeeded": "Succeeded"}
_FIX_IMAGE = (
    "check the image name and tag; an image that is not in a registry the host can reach must "
    "be loaded into the host (vcluster_host.load_image) and used with imagePullPolicy "
    "IfNotPresent (a :latest tag means Always)"
)
_DEFAULTS = (
    "Deployment, StatefulSet, DaemonSet, ReplicaSet (rolled out), Pod (Ready), Job (Complete), "
    "CustomResourceDefinition (Established), Namespace (Active)"
)

Check = Callable[[Mapping[str, Any]], tuple[bool, str]]


# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The object a wait or a log read is about."""

    resource: ApiResource
    name: str
    namespace: str | None

    @property
    def kind(self) -> str:
        """The object's kind (``Deployment``)."""
        return self.resource.kind

    @property
    def path(self) -> str:
        """The object's URL path."""
        return self.resource.path(self.name, self.namespace)

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name}{where}"

    def kubectl(self, verb: str) -> str:
        """A kubectl command about this object (``describe deployment/web -n default``)."""
        namespace = f" -n {self.namespace}" if self.namespace else ""
        group = f".{self.resource.group}" if self.resource.group else ""
        return f"kubectl {verb} {self.resource.plural}{group}/{self.name}{namespace}"


def resolve_target(
    api: client.ApiClient,
    kind_or_obj: str | Mapping[str, Any],
    name: str | None,
    namespace: str,
    *,
    option: str = "wait_for",
) -> Target:
    """The resource, name and namespace that ``kind_or_obj`` and ``name`` stand for.

    ``kind_or_obj`` is a kind as kubectl takes it (``deployment``, ``deploy``,
    ``deployments.apps``, ``crd``), ``KIND/NAME`` (then ``name`` is left out), or an object
    as a mapping (``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.namespace``).
    """
    discovery = discovery_for(api)
    if isinstance(kind_or_obj, Mapping):
        metadata = kind_or_obj.get("metadata") or {}
        api_version, kind = kind_or_obj.get("apiVersion"), kind_or_obj.get("kind")
        obj_name = name or metadata.get("name")
        if not (isinstance(api_version, str) and isinstance(kind, str) and obj_name):
            raise ConfigError(
                f"{option}(kind_or_obj=...)",
                "the object has no apiVersion, kind or metadata.name",
                "an object as apply() returns it, or a kind and a name",
            )
        resource = discovery.by_kind(api_version, kind) or discovery.by_kind(
            api_version, kind, refresh=True
        )
        if resource is None:
            raise ConfigError(
                f"{option}(kind_or_obj=...)", f"the API serves no kind {kind} in {api_version}"
            )
        namespace = str(metadata.get("namespace") or namespace)
        return Target(resource, str(obj_name), namespace if resource.namespaced else None)
    spelled = kind_or_obj
    if name is None and "/" in spelled:
        spelled, _, name = spelled.partition("/")
    if not name:
        raise ConfigError(
            f"{option}(name=...)",
            f"no name for {kind_or_obj!r}",
            f"{option}('deployment', 'web') or {option}('deployment/web')",
        )
    resource = discovery.find(spelled) or discovery.find(spelled, refresh=True)
    if resource is None:
        close = discovery.suggestions(spelled)
        raise ConfigError(
            f"{option}(kind_or_obj=...)",
            f"the API serves no kind {spelled!r}"
            + (f" (did you mean {', '.join(close)}?)" if close else ""),
            "a kind, plural or short name, optionally with its group (deployment.apps); "
            "apply the CRD of a custom kind first",
        )
    return Target(resource, name, namespace if resource.namespaced else None)


# -- reading -------------------------------------------------------------------------------


def _get(api: client.ApiClient, target: Target) -> dict[str, Any] | None:
    """The object, or None when the API says it does not exist."""
    try:
        found = get_json(api, target.path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(found) if isinstance(found, Mapping) else None


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A ``spec.selector`` (as JSON) in the string form of ``labelSelector=``."""
    if not selector:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _to_pods(api: client.ApiClient, items: Sequence[Mapping[str, Any]]) -> list[client.V1Pod]:
    """Pods as JSON to ``V1Pod`` objects, which the rules of :mod:`core.pods` read."""
    document = json.dumps({"apiVersion": "v1", "kind": "PodList", "items": list(items)})
    pods = api.deserialize(document, "V1PodList", "application/json")
    return list(pods.items or [])


def _list_pods(api: client.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    answer = get_json(api, f"/api/v1/namespaces/{namespace}/pods", [("labelSelector", selector)])
    return [dict(item) for item in (answer or {}).get("items") or []]


def _current_template_hash(
    api: client.ApiClient, deployment: Mapping[str, Any], namespace: str, selector: str
) -> str | None:
    """The ``pod-template-hash`` of the Deployment's newest ReplicaSet, if there is one yet."""
    revision = (
        (deployment.get("metadata") or {})
        .get("annotations", {})
        .get("deployment.kubernetes.io/revision")
    )
    uid = (deployment.get("metadata") or {}).get("uid")
    if not revision:
        return None
    answer = get_json(
        api, f"/apis/apps/v1/namespaces/{namespace}/replicasets", [("labelSelector", selector)]
    )
    for replica_set in (answer or {}).get("items") or []:
        metadata = replica_set.get("metadata") or {}
        owners = [ref.get("uid") for ref in metadata.get("ownerReferences") or []]
        annotations = metadata.get("annotations") or {}
        if uid in owners and annotations.get("deployment.kubernetes.io/revision") == revision:
            found = (metadata.get("labels") or {}).get("pod-template-hash")
            return str(found) if found else None
    return None


def workload_pods(
    api: client.ApiClient, target: Target, obj: Mapping[str, Any], *, current: bool = True
) -> list[client.V1Pod]:
    """The live pods of a Pod or workload (by its ``spec.selector``).

    With ``current``, only the pods of the workload's newest revision count where that is
    known (a Deployment's newest ReplicaSet, a StatefulSet's update revision, a DaemonSet's
    generation): the pods of an earlier, broken revision are on their way out.
    """
    namespace = target.namespace or "default"
    if target.kind == "Pod":
        return _to_pods(api, [obj])
    selector = label_selector((obj.get("spec") or {}).get("selector"))
    if not selector:
        # An empty selector would match every pod of the namespace.
        return []
    items = [
        item
        for item in _list_pods(api, namespace, selector)
        if not (item.get("metadata") or {}).get("deletionTimestamp")
    ]
    if current:
        label, value = _revision_label(api, target, obj, namespace, selector)
        if label is not None:
            items = [
                item
                for item in items
                if ((item.get("metadata") or {}).get("labels") or {}).get(label) == value
            ]
    return _to_pods(api, items)


def _revision_label(
    api: client.ApiClient, target: Target, obj: Mapping[str, Any], namespace: str, selector: str
) -> tuple[str | None, str | None]:
    status = obj.get("status") or {}
    if target.kind == "Deployment":
        found = _current_template_hash(api, obj, namespace, selector)
        return ("pod-template-hash", found) if found else (None, None)
    if target.kind == "StatefulSet" and status.get("updateRevision"):
        return "controller-revision-hash", str(status["updateRevision"])
    if target.kind == "DaemonSet" and (obj.get("metadata") or {}).get("generation"):
        return "pod-template-generation", str(obj["metadata"]["generation"])
    return None, None


# -- fail fast -----------------------------------------------------------------------------


@dataclass
class _Unschedulable:
    """When each pod was first seen unschedulable, to fail once one stays so too long."""

    clock: Callable[[], float]
    grace: float = UNSCHEDULABLE_GRACE
    since: dict[str, float] = field(default_factory=dict)

    def check(self, pods: Sequence[client.V1Pod], what: str) -> None:
        now = self.clock()
        seen: set[str] = set()
        for pod in pods:
            message = _unschedulable_message(pod)
            key = str(pod.metadata.uid or pod.metadata.name) if pod.metadata else "?"
            if message is None:
                continue
            seen.add(key)
            first = self.since.setdefault(key, now)
            if now - first > self.grace:
                name = pod.metadata.name if pod.metadata else "?"
                raise WorkloadFailedError(
                    f"{what}: pod {name} cannot be scheduled for {self.grace:g}s: "
                    f"{message.strip().rstrip('.')}. "
                    "Lower its resource requests, or check its node selector, affinity and "
                    "volume claims"
                )
        for key in set(self.since) - seen:
            del self.since[key]


def _unschedulable_message(pod: client.V1Pod) -> str | None:
    for condition in (pod.status.conditions if pod.status else None) or []:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            return str(condition.message or "Unschedulable")
    return None


def _shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle to at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def raise_if_pods_stuck(pods: Sequence[client.V1Pod], what: str) -> None:
    """Raise :class:`WorkloadFailedError` when a pod cannot start: an image that cannot be
    pulled (``ErrImagePull`` included), or :func:`~pytest_vcluster.core.pods.raise_if_stuck`'s
    hopeless states (a crash loop, a bad config)."""
    for pod in pods:
        for status in container_statuses(pod):
            waiting = status.state.waiting if status.state else None
            if waiting is None or waiting.reason not in IMAGE_PULL_REASONS:
                continue
            name = pod.metadata.name if pod.metadata else "?"
            # The end of a pull error says why (no such host, not found, unauthorized).
            message = _shorten((waiting.message or "").strip(), 600)
            raise WorkloadFailedError(
                f"{what}: pod {name} container {status.name} is {waiting.reason}"
                f" (image {status.image})" + (f": {message}" if message else "") + f"; {_FIX_IMAGE}"
            )
    raise_if_stuck(pods, what, WorkloadFailedError)


# -- conditions ----------------------------------------------------------------------------


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    """The status (``True``, ``False``, ``Unknown``) of condition type ``kind``, matched
    case-insensitively, or None; a condition older than the object's generation is None."""
    generation = (obj.get("metadata") or {}).get("generation")
    for condition in _conditions(obj):
        if str(condition.get("type", "")).lower() != kind.lower():
            continue
        observed = condition.get("observedGeneration")
        if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
            return None
        return str(condition.get("status"))
    return None


def _describe_conditions(obj: Mapping[str, Any]) -> str:
    parts = []
    for condition in _conditions(obj):
        reason = condition.get("reason")
        parts.append(
            f"{condition.get('type')}={condition.get('status')}"
            + (f" ({reason})" if reason else "")
        )
    return ", ".join(parts) or "no conditions yet"


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _observed(obj: Mapping[str, Any]) -> str | None:
    """Why the controller's status does not describe the latest spec yet, if it does not."""
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = _int((obj.get("status") or {}).get("observedGeneration"))
    if observed < generation or observed == 0:
        return f"generation {generation} not observed by its controller yet (observed {observed})"
    return None


def _deployment(obj: Mapping[str, Any]) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    for condition in _conditions(obj):
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            raise WorkloadFailedError(
                f"Deployment {obj['metadata']['name']} exceeded its progress deadline: "
                f"{condition.get('message')}"
            )
    stale = _observed(obj)
    if stale:
        return False, stale
    wanted = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    total = _int(status.get("replicas"))
    seen = f"{updated}/{wanted} updated, {available}/{wanted} available"
    if total > updated:
        seen += f", {total - updated} old pending termination"
    if spec.get("paused"):
        seen += ", paused (spec.paused: true)"
    is_available = condition_status(obj, "Available") == "True"
    seen += f"; {_describe_conditions(obj)}"
    return updated == available == total == wanted and is_available, seen


def _statefulset(obj: Mapping[str, Any]) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    stale = _observed(obj)
    if stale:
        return False, stale
    wanted = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"), ready)
    seen = f"{ready}/{wanted} ready, {updated}/{wanted} updated"
    done = ready == available == total == wanted
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
        if partition:
            done = done and updated >= wanted - partition
        else:
            current, update = status.get("currentRevision"), status.get("updateRevision")
            if current != update:
                seen += f", revision {current} still being replaced by {update}"
            done = done and current == update
    return done, seen


def _daemonset(obj: Mapping[str, Any]) -> tuple[bool, str]:
    status = obj.get("status") or {}
    stale = _observed(obj)
    if stale:
        return False, stale
    wanted = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    seen = f"{updated}/{wanted} updated, {available}/{wanted} available"
    return updated == available == wanted, seen


def _replicaset(obj: Mapping[str, Any]) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    stale = _observed(obj)
    if stale:
        return False, stale
    wanted = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    available = _int(status.get("availableReplicas"))
    total = _int(status.get("replicas"))
    return ready == available == total == wanted, f"{ready}/{wanted} ready, {available} available"


def _job(obj: Mapping[str, Any]) -> tuple[bool, str]:
    _job_failed(obj)
    status = obj.get("status") or {}
    counts = (
        f"{_int(status.get('succeeded'))} succeeded, {_int(status.get('active'))} active, "
        f"{_int(status.get('failed'))} failed"
    )
    return condition_status(obj, "Complete") == "True", f"{counts}; {_describe_conditions(obj)}"


def _job_failed(obj: Mapping[str, Any]) -> None:
    for condition in _conditions(obj):
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            raise WorkloadFailedError(
                f"Job {obj['metadata']['name']} failed: {condition.get('reason')}: "
                f"{condition.get('message')}"
            )


def _pod_phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def _pod_ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    phase = _pod_phase(obj)
    name = obj["metadata"]["name"]
    if phase in ("Succeeded", "Failed"):
        raise WorkloadFailedError(
            f"pod {name} has finished ({phase}) and will never be Ready; wait for "
            "condition='Succeeded' to wait for a pod that runs to completion"
        )
    return condition_status(obj, "Ready") == "True", f"{phase}; {_describe_conditions(obj)}"


def _namespace_active(obj: Mapping[str, Any]) -> tuple[bool, str]:
    phase = str((obj.get("status") or {}).get("phase") or "no phase yet")
    return phase == "Active", phase


_DEFAULT_CHECKS: Mapping[tuple[str, str], tuple[str, Check]] = {
    ("apps", "Deployment"): ("rolled out and Available", _deployment),
    ("apps", "StatefulSet"): ("rolled out", _statefulset),
    ("apps", "DaemonSet"): ("rolled out", _daemonset),
    ("apps", "ReplicaSet"): ("rolled out", _replicaset),
    ("batch", "Job"): ("Complete", _job),
    ("", "Pod"): ("Ready", _pod_ready),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ("Established", crd_established),
    ("", "Namespace"): ("Active", _namespace_active),
}


def default_check(resource: ApiResource) -> tuple[str, Check] | None:
    """What waiting for ``resource`` means without ``condition=``, and the check for it."""
    return _DEFAULT_CHECKS.get((resource.group, resource.kind))


def _condition_check(kind: str, value: str) -> Check:
    def check(obj: Mapping[str, Any]) -> tuple[bool, str]:
        found = condition_status(obj, kind)
        return (found or "").lower() == value.lower(), _describe_conditions(obj)

    return check


def _phase_check(phase: str) -> Check:
    def check(obj: Mapping[str, Any]) -> tuple[bool, str]:
        seen = _pod_phase(obj)
        if seen == "Failed" and phase != "Failed":
            reason = (obj.get("status") or {}).get("reason") or ""
            raise WorkloadFailedError(
                f"pod {obj['metadata']['name']} failed{f' ({reason})' if reason else ''} and "
                f"will never be {phase}"
            )
        return seen == phase, f"{seen}; {_describe_conditions(obj)}"

    return check


@dataclass(frozen=True)
class _Plan:
    """What one wait checks: its words, its check, and whether pods may fail it."""

    awaited: str
    check: Check | None  # None: the object gone
    fail_fast: bool


def _plan(target: Target, condition: str | None) -> _Plan:
    if condition is not None and condition.strip().lower() in DELETED:
        return _Plan(f"{target} to be deleted", None, fail_fast=False)
    if condition is not None and condition.strip().lower() in EXISTS:
        return _Plan(f"{target} to exist", lambda obj: (True, "exists"), fail_fast=False)
    if condition is None:
        found = default_check(target.resource)
        if found is None:
            raise ConfigError(
                "wait_for(condition=...)",
                f"{target.kind} has no default condition to wait for",
                "a type of its status.conditions ('Ready', 'Ready=False'), 'exists' or "
                f"'deleted'; kinds with a default: {_DEFAULTS}",
            )
        words, check = found
        return _Plan(f"{target} to be {words}", check, fail_fast=True)
    kind, _, value = condition.strip().partition("=")
    value = value or "True"
    # Waiting for a failure must not be cut short by that very failure.
    expects_failure = kind.lower() == "failed" or value.lower() == "false"
    if target.kind == "Pod" and kind.lower() in _POD_PHASES and "=" not in condition:
        phase = _POD_PHASES[kind.lower()]
        return _Plan(f"{target} to be {phase}", _phase_check(phase), fail_fast=True)
    check = _condition_check(kind, value)
    if not expects_failure and target.kind == "Job":
        plain = check

        def check(obj: Mapping[str, Any]) -> tuple[bool, str]:
            _job_failed(obj)
            return plain(obj)

    return _Plan(f"{target} to have condition {kind}={value}", check, not expects_failure)


def wait_for(
    api_client: client.ApiClient,
    kind_or_obj: str | Mapping[str, Any],
    name: str | None = None,
    *,
    namespace: str = "default",
    condition: str | None = None,
    timeout: float = 120.0,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Wait until an object inside the cluster is in the state asked for; return it.

    ``kind_or_obj`` is a kind as kubectl takes it (``Deployment``, ``deploy``, ``pod``,
    ``job``, ``crd``, ``statefulsets``, ``widgets.example.com``) with ``name``, or
    ``"KIND/NAME"``, or an object as :func:`~pytest_vcluster.cluster.manifests.apply_manifests`
    returns it. ``namespace`` is ignored for cluster-scoped kinds and for an object that
    names its own.

    ``condition`` is ``None`` for the kind's default (:func:`default_check`: a Deployment
    rolled out and Available, a Job Complete, a Pod Ready, a CRD Established, ...),
    a type of ``status.conditions`` (``"Ready"``, matched case-insensitively, True unless
    written ``"Ready=False"``), a Pod phase (``"Succeeded"``, ``"Running"``), ``"exists"``, or
    ``"deleted"`` (also ``"gone"``): until the API says it does not exist.

    Returns the object as last read (for ``"deleted"``, as last seen before it went, or ``{}``
    if it never existed). Raises :class:`WorkloadFailedError` as soon as a pod of the object
    cannot start (see the module's docstring) or the object failed for good, and
    :class:`~pytest_vcluster.core.errors.WaitTimeoutError` with the last state seen after
    ``timeout`` seconds. ``clock`` and ``sleep`` are for tests.
    """
    target = resolve_target(api_client, kind_or_obj, name, namespace)
    plan = _plan(target, condition)
    deadline = Deadline(timeout, clock=clock)
    unschedulable = _Unschedulable(clock)
    last: dict[str, Any] = {}
    pods_have = target.kind == "Pod" or (
        target.kind in WORKLOAD_KINDS and target.resource.group in ("apps", "batch")
    )

    def check() -> tuple[bool, str]:
        obj = _get(api_client, target)
        if obj is None:
            return plan.check is None, "not found" if plan.check is not None else "gone"
        last.clear()
        last.update(obj)
        if plan.check is None:
            deleting = (obj.get("metadata") or {}).get("deletionTimestamp")
            finalizers = (obj.get("metadata") or {}).get("finalizers") or []
            if deleting:
                return False, f"being deleted, held by finalizers {finalizers}"
            return False, "still there, not being deleted"
        done, seen = plan.check(obj)
        if done or not (plan.fail_fast and pods_have):
            return done, seen
        pods = workload_pods(api_client, target, obj)
        raise_if_pods_stuck(pods, str(target))
        unschedulable.check(pods, str(target))
        if target.kind != "Pod":
            seen += f"; pods: {describe_pods(pods)}"
        return False, seen

    try:
        wait_until(
            plan.awaited, check, deadline, interval=interval, sleep=sleep,
            fatal=(WorkloadFailedError,),
        )  # fmt: skip
    except WaitTimeoutError as exc:
        raise WaitTimeoutError(
            exc.awaited,
            exc.timeout,
            f"{exc.last_seen}. Its events tell why: `{target.kubectl('describe')}`; "
            "if it is only slow, pass a larger timeout=",
        ) from None
    return dict(last)


# -- logs ----------------------------------------------------------------------------------


def choose_pod(pods: Sequence[client.V1Pod]) -> client.V1Pod | None:
    """The pod whose log to show, as kubectl picks one: Ready ones first, then running ones,
    then finished ones (a Job's), newest first within each."""

    def rank(pod: client.V1Pod) -> tuple[int, float]:
        phase = pod.status.phase if pod.status else None
        created = pod.metadata.creation_timestamp if pod.metadata else None
        when = created.timestamp() if created else 0.0
        if pod_ready(pod):
            return 0, -when
        if phase == "Running":
            return 1, -when
        if phase in ("Succeeded", "Failed"):
            return 2, -when
        return 3, -when

    return min(pods, key=rank) if pods else None


def _default_container(pod: client.V1Pod) -> str | None:
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    chosen = annotations.get("kubectl.kubernetes.io/default-container")
    if chosen:
        return str(chosen)
    containers = (pod.spec.containers if pod.spec else None) or []
    return str(containers[0].name) if containers else None


def logs(
    api_client: client.ApiClient,
    target: str | Mapping[str, Any],
    *,
    namespace: str = "default",
    container: str | None = None,
    tail: int | None = None,
    previous: bool = False,
) -> str:
    """The log of a pod, or of one pod of a workload, as ``kubectl logs`` shows it.

    ``target`` is ``NAME`` or ``pod/NAME`` (a pod), ``KIND/NAME`` for anything with a
    ``spec.selector`` (``deployment/web``, ``job/migrate``, ``statefulset/db``), or an
    object as a mapping. For a workload one pod is read: a Ready one first, else a running
    one, else a finished one, the newest. Without ``container`` the pod's
    ``kubectl.kubernetes.io/default-container`` annotation, else its first container, is
    read. ``tail`` keeps the last lines; ``previous`` reads the last run of a restarted
    container.
    """
    if isinstance(target, str) and "/" not in target:
        target = f"pod/{target}"
    found = resolve_target(api_client, target, None, namespace, option="logs")
    try:
        obj = _get(api_client, found)
    except Exception as exc:
        raise api_error(f"reading {found}", exc) from exc
    if obj is None:
        raise VClusterError(
            f"cannot read logs: no {found} in the vcluster; check the name and namespace"
        )
    if found.kind == "Pod":
        pod = _to_pods(api_client, [obj])[0]
    else:
        try:
            pods = workload_pods(api_client, found, obj) or workload_pods(
                api_client, found, obj, current=False
            )
        except Exception as exc:
            raise api_error(f"listing the pods of {found}", exc) from exc
        chosen = choose_pod(pods)
        if chosen is None:
            raise VClusterError(
                f"cannot read logs: {found} has no pods yet; wait for it first "
                f"(vcluster.wait_for({found.kind.lower()!r}, {found.name!r}))"
            )
        pod = chosen
    metadata = pod.metadata or client.V1ObjectMeta()
    pod_name = str(metadata.name)
    pod_namespace = str(metadata.namespace or found.namespace or namespace)
    query = [("container", container or _default_container(pod) or "")]
    if tail is not None:
        query.append(("tailLines", str(tail)))
    if previous:
        query.append(("previous", "true"))
    try:
        data = api_call(
            api_client,
            "GET",
            f"/api/v1/namespaces/{pod_namespace}/pods/{pod_name}/log",
            query=[(key, value) for key, value in query if value],
            timeout=API_TIMEOUT,
        )
    except Exception as exc:
        raise api_error(f"reading the log of pod {pod_name} in {pod_namespace}", exc) from exc
    return data.decode("utf-8", errors="replace")
