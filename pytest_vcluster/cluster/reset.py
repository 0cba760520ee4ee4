"""Bringing a virtual cluster back to its baseline: what it held when it first became Ready.

:func:`reset` deletes everything added since the baseline inventory (see
:mod:`~pytest_vcluster.cluster.inventory`), waits until it is gone, and proves the result by
taking the inventory again. It restores nothing: a baseline object that was changed or
deleted cannot be put back as it was (its uid and resourceVersion are gone), so the reset
reports it and the caller deletes the cluster instead of recycling it.

The order makes a reset finish whatever a test left, and quickly:

1. admission objects (webhook configurations, admission policies) and the APIServices of
   aggregated API servers first, and gone before anything else is deleted: a test's webhook
   whose service is gone, with ``failurePolicy: Fail``, would refuse every later delete, and
   an APIService whose server is gone stops namespace deletion;
2. then the CRDs, gone with their objects: while discovery changes under it, the namespace
   controller backs off for up to a minute;
3. then the rest at once: added namespaces are emptied a collection at a time (as the
   namespace controller would, without waiting for it), objects added in baseline namespaces
   and cluster-scoped ones are deleted one by one. What an owner deletes (the garbage
   collector) is left to it for a grace period; pods are deleted without one, since nobody
   waits for a test's pods to shut down;
4. objects held by a finalizer of the test's own lose it at once (its controller was part of
   the test, and is gone); those held by one of the control plane's lose it only after the
   grace period; and a namespace whose content is gone is finalized through its ``finalize``
   subresource.

Between two rounds only the resources of what is left are listed; the last look lists every
resource and is the proof.

:func:`host_namespace_clean` checks the other half: vcluster syncs the virtual cluster's pods
and services into its host namespace, and after a reset only the control plane's own may be
left there. This module does not import pytest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cluster.inventory import (
    EXCLUSIONS,
    Drift,
    Entry,
    Exclusion,
    Inventory,
    InventoryDiff,
    ObjectKey,
    Resource,
    diff,
    request,
    take_inventory,
)
from pytest_vcluster.core.errors import (
    RunInterruptedError,
    VClusterError,
    WaitTimeoutError,
    api_error,
)
from pytest_vcluster.core.waits import Deadline

__all__ = [
    "FINALIZER_GRACE",
    "GATE_GROUPS",
    "HOST_KINDS",
    "LEFT_TO_THE_SERVER",
    "HostBaseline",
    "HostCheck",
    "ResetResult",
    "host_baseline",
    "host_namespace_clean",
    "reset",
]

#: API groups whose objects stand between a delete and the API server (admission webhooks
#: and policies) or between namespace deletion and discovery (APIServices of aggregated API
#: servers).
GATE_GROUPS = frozenset({"admissionregistration.k8s.io", "apiregistration.k8s.io"})
#: Seconds an object may terminate on its own before its finalizers are removed. A controller
#: that is still running removes its finalizer within a second; one that was part of the test
#: is gone and never does. Also how long objects that a CRD or an owner deletes along are
#: left to it before the reset deletes them itself.
FINALIZER_GRACE = 2.0
#: Objects the API server makes and removes itself, by (group, kind) and the label that marks
#: them: deleting one only makes it come back. The reset waits for them to go with what they
#: belong to.
LEFT_TO_THE_SERVER: Mapping[tuple[str, str], str] = {
    # Registered for every group the API server serves itself, CRD groups included; removed
    # with the group's last CRD. Deleted, it is registered again at once.
    ("apiregistration.k8s.io", "APIService"): "kube-aggregator.kubernetes.io/automanaged",
    # A Service's cluster IP; freed with the Service.
    ("networking.k8s.io", "IPAddress"): "ipaddress.kubernetes.io/managed-by",
}
#: Seconds of grace a test's pods get to shut down: none, nobody waits for them. The pod is
#: gone from the virtual cluster at once; vcluster then deletes its copy on the host, with
#: the pod's own grace period (see :func:`host_namespace_clean`'s ``force_after``).
POD_GRACE_SECONDS = 0
#: Seconds between two looks at what is left.
POLL_INTERVAL = 0.2
#: Seconds before a delete that failed (a webhook still refusing) is sent again.
RETRY_INTERVAL = 2.0
#: Requests sent at once.
WORKERS = 8

log = logging.getLogger(__name__)

_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
_NAMESPACE = ("", "Namespace")
_POD = ("", "Pod")
_JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class ResetResult:
    """What a reset did and whether the cluster is back at its baseline.

    ``clean`` is true only if the final inventory equals the baseline (exclusions aside);
    otherwise ``reasons`` says why, one line per object. ``deleted`` are the objects the reset
    asked the API to delete, alone or with their collection (not those a CRD or an owner took
    along),
    ``finalizers_removed`` those whose finalizers it removed, ``namespaces_finalized`` the
    namespaces it finalized. The timings are in seconds: ``delete_seconds`` until every
    delete was sent (the gates gone first), ``wait_seconds`` until nothing added was left,
    ``verify_seconds`` for the final inventory; ``inventories`` counts the looks, partial
    ones included.
    """

    clean: bool
    reasons: tuple[str, ...]
    diff: InventoryDiff
    inventory: Inventory
    deleted: tuple[ObjectKey, ...] = ()
    finalizers_removed: tuple[ObjectKey, ...] = ()
    namespaces_finalized: tuple[str, ...] = ()
    delete_seconds: float = 0.0
    wait_seconds: float = 0.0
    verify_seconds: float = 0.0
    inventories: int = 0

    @property
    def seconds(self) -> float:
        """The whole reset."""
        return self.delete_seconds + self.wait_seconds + self.verify_seconds


def reset(
    api_client: client.ApiClient,
    baseline: Inventory,
    *,
    timeout: float,
    grace: float = FINALIZER_GRACE,
    interval: float = POLL_INTERVAL,
    exclusions: Sequence[Exclusion] = EXCLUSIONS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> ResetResult:
    """Delete what was added to the cluster since ``baseline`` and prove it is back there.

    Returns at once, deleting nothing, if a baseline object was changed or removed: the
    reset cannot restore it, and the cluster has to be deleted anyway. Raises
    :class:`~pytest_vcluster.core.errors.WaitTimeoutError` if the added objects are not gone
    within ``timeout`` seconds (it names what is left and what holds it), and
    :class:`~pytest_vcluster.core.errors.ApiError` if discovery fails.
    """
    if not baseline.complete:
        missing = ", ".join(sorted(baseline.unlisted)) or "a partial inventory"
        raise VClusterError(
            f"the baseline inventory is incomplete (could not list {missing}): a reset could "
            "not prove anything against it; take the baseline again once every resource answers"
        )
    run = _Reset(
        api_client,
        baseline,
        Deadline(timeout, clock=clock, stop=stop),
        grace=grace,
        interval=interval,
        exclusions=exclusions,
        sleep=sleep,
    )
    try:
        return run.run()
    finally:
        run.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Tracked:
    """What the reset did to one object (by uid) and when."""

    asked: float | None = None
    deleting_since: float | None = None
    stripped: bool = False
    error: str = ""

    def started(self) -> float | None:
        """When its deletion started: asked by the reset, or seen terminating."""
        times = [t for t in (self.asked, self.deleting_since) if t is not None]
        return min(times) if times else None


class _Reset:
    def __init__(
        self,
        api: client.ApiClient,
        baseline: Inventory,
        deadline: Deadline,
        *,
        grace: float,
        interval: float,
        exclusions: Sequence[Exclusion],
        sleep: Callable[[float], None],
    ) -> None:
        self.api = api
        self.baseline = baseline
        self.deadline = deadline
        self.grace = grace
        self.interval = interval
        self.exclusions = exclusions
        self.sleep = sleep
        self.pool = ThreadPoolExecutor(WORKERS)
        self.tracked: dict[str, _Tracked] = {}
        self.deleted: list[ObjectKey] = []
        self.stripped: list[ObjectKey] = []
        self.finalized: list[str] = []
        self.collections: dict[tuple[str, str], float] = {}
        self.inventories = 0
        self.last: Inventory | None = None
        self.full: Inventory | None = None
        self.lock = threading.Lock()

    # -- the phases ----------------------------------------------------------------------

    def run(self) -> ResetResult:
        clock = self.deadline.clock
        started = clock()
        now = self.look()
        drift = diff(self.baseline, now, exclusions=self.exclusions)
        if drift.changed or drift.removed:
            return self.result(
                now,
                drift,
                [
                    *drift.reasons(),
                    "the reset restores nothing: a baseline object that was changed or removed "
                    "cannot be put back, so this cluster cannot be recycled",
                ],
                delete_seconds=clock() - started,
            )
        if not self.added(now):
            # Nothing to delete: this first look is the proof.
            return self.result(now, drift, drift.reasons(), delete_seconds=0.0,
                               verify_seconds=clock() - started)  # fmt: skip
        # Delete phase: the gates, gone; the CRDs with their objects, gone (the namespace
        # controller backs off for a minute while discovery changes under it); then one round
        # for the rest. Between two rounds only the resources of what is left are listed.
        for phase, awaited in (
            (_GATES, "the admission objects and APIServices added since the baseline gone"),
            (_CRDS, "the CRDs added since the baseline gone, with their objects"),
        ):
            while self.step(now, phase):
                self.pause(awaited)
                now = self.look(self.kinds_left(now))
        self.step(now, _REST)
        delete_seconds = clock() - started
        # Wait phase: look again, push what is stuck, until nothing added is left. A look at
        # every resource ends it (the verify phase): what a controller made again in the
        # meantime, or anything the partial looks did not list, shows there and is pushed in
        # turn.
        started = clock()
        full = False
        while True:
            looked = clock()
            now = self.look(None if full else self.kinds_left(now))
            left = self.step(now, _REST)
            if not left and full:
                break
            # Finalized in this step, a namespace is gone when its finalize returns: the next
            # look can be the proof at once.
            finished = self.only_finalized_left(now)
            if left and (full or not finished):
                self.pause("the objects added since the baseline deleted")
            # A namespace waiting with no content in a partial look is finalized at once, unless
            # a resource could not be listed: then only once a look at every resource shows
            # it empty.
            full = not left or finished or (self.namespace_waits(now) and not self.listed_all())
        verify_seconds = clock() - looked
        wait_seconds = clock() - started - verify_seconds
        drift = diff(self.baseline, now, exclusions=self.exclusions)
        return self.result(
            now,
            drift,
            drift.reasons(),
            delete_seconds=delete_seconds,
            wait_seconds=wait_seconds,
            verify_seconds=verify_seconds,
        )

    def kinds_left(self, now: Inventory) -> set[tuple[str, str]]:
        """The resources of what ``now`` shows as added, and namespaces."""
        return {_kind(entry) for entry in self.added(now)} | {_NAMESPACE}

    def namespace_waits(self, now: Inventory) -> bool:
        """True if an added namespace terminates with nothing left in it that ``now`` lists."""
        used = {key.namespace for key in now.objects}
        return any(
            _kind(entry) == _NAMESPACE and entry.deleting and entry.key.name not in used
            for entry in self.added(now)
        )

    def only_finalized_left(self, now: Inventory) -> bool:
        """True if all that is left of what counts is namespaces the reset finalized."""
        return all(
            _kind(entry) == _NAMESPACE and entry.key.name in self.finalized
            for entry in self.added(now)
            if self.counts(entry)
        )

    def listed_all(self) -> bool:
        """True if the last look at every resource listed each of them."""
        return self.full is not None and self.full.complete

    def finalizable(self, now: Inventory, entry: Entry) -> bool:
        """True if ``entry`` is an added namespace, terminating, that ``now`` shows empty, and
        every resource could be listed (by ``now``, or by the last look at all of them).

        Its content is gone: what the namespace controller would do next, done now (it
        retries with a backoff of up to a minute once anything in the namespace held it up).
        A partial look is enough: the proof is a look at every resource, and anything of
        another resource still in the namespace shows there and is deleted in turn.
        """
        return (
            _kind(entry) == _NAMESPACE
            and entry.deleting
            and entry.key.name not in self.finalized
            and not now.unlisted
            and (now.complete or self.listed_all())
            and not any(key.namespace == entry.key.name for key in now.objects)
        )

    def result(
        self,
        now: Inventory,
        drift: InventoryDiff,
        reasons: Sequence[str],
        *,
        delete_seconds: float,
        wait_seconds: float = 0.0,
        verify_seconds: float = 0.0,
    ) -> ResetResult:
        return ResetResult(
            clean=drift.clean,
            reasons=tuple(reasons),
            diff=drift,
            inventory=now,
            deleted=tuple(self.deleted),
            finalizers_removed=tuple(self.stripped),
            namespaces_finalized=tuple(self.finalized),
            delete_seconds=delete_seconds,
            wait_seconds=wait_seconds,
            verify_seconds=verify_seconds,
            inventories=self.inventories,
        )

    def look(self, kinds: set[tuple[str, str]] | None = None) -> Inventory:
        """An inventory: of every resource, or of those of ``kinds`` that the last full one
        listed."""
        if self.deadline.stopped:
            raise RunInterruptedError("stopped resetting the virtual cluster: run interrupted")
        if self.deadline.expired:
            self.timed_out("the objects added since the baseline deleted")
        only = None
        if kinds is not None and self.full is not None:
            only = [r for key, r in self.full.resources.items() if key in kinds]
        self.inventories += 1
        try:
            self.last = take_inventory(
                self.api,
                timeout=self.deadline.remaining,
                clock=self.deadline.clock,
                stop=self.deadline.stop,
                only=only,
            )
        except WaitTimeoutError as exc:
            if self.last is not None and self.deadline.expired:
                # The reset's time ran out while it looked: say what was left at the last look.
                self.timed_out("the objects added since the baseline deleted")
            raise WaitTimeoutError(
                f"the inventory of a reset of the virtual cluster: {exc.awaited}",
                self.deadline.seconds,
                exc.last_seen,
            ) from None
        if not self.last.partial:
            self.full = self.last
        if log.isEnabledFor(logging.DEBUG):
            left = [str(entry) for entry in self.added(self.last)]
            log.debug(
                "reset look %d at %.2fs (%s, %.2fs): %d added left: %s",
                self.inventories, self.deadline.elapsed,
                "partial" if self.last.partial else "full", self.last.seconds,
                len(left), ", ".join(left[:12]),
            )  # fmt: skip
        return self.last

    def pause(self, awaited: str) -> None:
        if self.deadline.stopped:
            raise RunInterruptedError(f"stopped waiting for {awaited}: the run was interrupted")
        if self.deadline.expired:
            self.timed_out(awaited)
        self.sleep(min(self.interval, max(self.deadline.remaining, 0.01)))

    # -- one round -----------------------------------------------------------------------

    def added(self, now: Inventory) -> list[Entry]:
        """What the reset deletes: every object whose name the baseline did not have,
        excluded ones too (an earlier test's Events must not show to a later one).

        An object that took the name of a baseline one is not deleted: either the baseline
        object was the test's to lose (the cluster cannot be recycled, the first look says
        so), or a controller made it again as it was (an exclusion says which).
        """
        return [entry for key, entry in now.objects.items() if key not in self.baseline.objects]

    def counts(self, entry: Entry) -> bool:
        """True if ``entry`` being there keeps the reset going (excluded drift does not)."""
        return not any(exclusion.covers(entry.key, Drift.ADDED) for exclusion in self.exclusions)

    def step(self, now: Inventory, phase: str) -> bool:
        """Push the added objects of ``phase`` one step towards gone; True while any (that
        counts) is left."""
        added = self.added(now)
        covers = self.covers(now, added)
        if phase == _GATES:
            chosen = [entry for entry in added if _is_gate(entry)]
        elif phase == _CRDS:
            crds = {entry.uid for entry in added if _kind(entry) == _CRD}
            chosen = [e for e in added if e.uid in crds or covers.get(e.uid) in crds]
        else:
            chosen = added
        self.push(now, chosen, covers=covers)
        return any(self.counts(entry) for entry in chosen)

    def covers(self, now: Inventory, added: Sequence[Entry]) -> dict[str, str]:
        """uid -> the uid of what deletes it along: its added CRD, its added namespace, or
        its added owner (the garbage collector)."""
        deletable = [entry for entry in added if _deletable(now, entry)]
        namespaces = {e.key.name: e.uid for e in deletable if _kind(e) == _NAMESPACE}
        crds = {e.key.name: e.uid for e in deletable if _kind(e) == _CRD}
        alive = {entry.uid for entry in deletable}
        covered: dict[str, str] = {}
        for entry in added:
            resource = now.resource_of(entry.key)
            crd = f"{resource.plural}.{resource.group}" if resource is not None else ""
            owner = next((uid for uid in entry.owners if uid in alive), None)
            if crd in crds:
                covered[entry.uid] = crds[crd]
            elif entry.key.namespace in namespaces:
                covered[entry.uid] = namespaces[entry.key.namespace]
            elif owner is not None:
                covered[entry.uid] = owner
        return covered

    def push(self, now: Inventory, entries: Sequence[Entry], *, covers: Mapping[str, str]) -> None:
        at = self.deadline.clock()
        by_uid = {entry.uid: entry for entry in entries}
        for entry in entries:
            state = self.tracked.setdefault(entry.uid, _Tracked())
            if entry.deleting and state.deleting_since is None:
                state.deleting_since = at
        jobs: list[Callable[[], None]] = []
        # Namespaces are deleted before anything else is sent: emptied while still active, a
        # namespace gets some objects made again at once by their controllers
        # (kube-root-ca.crt); terminating, it refuses them.
        namespaces: list[Callable[[], None]] = []
        for entry in entries:
            state = self.tracked[entry.uid]
            if not _deletable(now, entry):
                state.error = "the API does not allow deleting it"
                continue
            if _left_to_the_server(entry):
                state.error = "the API server removes it with what it belongs to"
                continue
            parent = by_uid.get(covers.get(entry.uid, ""))
            if parent is not None and _kind(parent) == _NAMESPACE:
                if not entry.deleting:
                    self.empty(now, entry, at, jobs)
            elif _kind(entry) == _POD:
                # Not before its owner is going, which would make it again.
                if (parent is None or parent.deleting) and self.due(state, at):
                    jobs.append(self.job_delete(entry))
            elif (
                not entry.deleting
                # What a CRD or an owner deletes along is left to it for a while.
                and (parent is None or self.past_grace(self.tracked[parent.uid], at))
                and self.due(state, at)
            ):
                (namespaces if _kind(entry) == _NAMESPACE else jobs).append(self.job_delete(entry))
            if (
                entry.deleting
                and entry.finalizers
                # The CRD's own finalizer waits for its objects to be deleted; removing it
                # would leave them in the store, back when a CRD of that name comes again.
                and _kind(entry) != _CRD
                and not state.stripped
                # A finalizer of the test's own (its controller went with the test) goes at
                # once; one of the control plane's is left to it for the grace period, counted
                # from the delete: the reset's own, or the first look that saw it terminating.
                and (not _control_plane_finalizers(entry) or self.past_grace(state, at))
            ):
                state.stripped = True
                jobs.append(self.job_strip(entry))
            if self.finalizable(now, entry):
                self.finalized.append(entry.key.name)
                jobs.append(self.job_finalize(entry))
        list(self.pool.map(lambda job: job(), namespaces))
        list(self.pool.map(lambda job: job(), jobs))

    def empty(
        self, now: Inventory, entry: Entry, at: float, jobs: list[Callable[[], None]]
    ) -> None:
        """Delete ``entry`` as part of emptying its namespace: its whole collection at once.

        The namespace controller would do the same, but only after discovering every resource,
        and with a backoff of up to a minute when discovery changes under it (a CRD going).
        """
        resource = self.resource(entry)
        if "deletecollection" not in resource.verbs:
            if self.due(self.tracked[entry.uid], at):
                jobs.append(self.job_delete(entry))
            return
        collection = (entry.key.namespace, str(resource))
        asked = self.collections.get(collection)
        if asked is not None and at - asked < RETRY_INTERVAL:
            return
        self.collections[collection] = at
        members = [
            e for e in now.objects.values()
            if e.key.namespace == entry.key.namespace and (e.key.group, e.key.kind) == _kind(entry)
        ]  # fmt: skip
        for member in members:
            state = self.tracked.setdefault(member.uid, _Tracked())
            state.asked = state.asked if state.asked is not None else at
        jobs.append(self.job_empty(resource, entry.key.namespace, members))

    def due(self, state: _Tracked, at: float) -> bool:
        """True if a delete should be sent now (the first, or again after a failure)."""
        if state.asked is not None and at - state.asked < RETRY_INTERVAL:
            return False
        state.asked = at
        return True

    def past_grace(self, state: _Tracked, at: float) -> bool:
        started = state.started()
        return started is not None and at - started >= self.grace

    # -- requests ------------------------------------------------------------------------

    def job_delete(self, entry: Entry) -> Callable[[], None]:
        def run() -> None:
            resource = self.resource(entry)
            options = _delete_options(entry.key)
            # Only the object the inventory saw: one made again under its name is new and
            # gets its own turn.
            options["preconditions"] = {"uid": entry.uid}
            try:
                request(
                    self.api,
                    "DELETE",
                    resource.path(entry.key.namespace, entry.key.name),
                    body=options,
                    timeout=self.deadline.remaining,
                )
            except ApiException as exc:
                # 404: gone already; 409: the uid differs, so the one seen is gone.
                if exc.status not in {404, 409}:
                    self.tracked[entry.uid].error = str(api_error(f"deleting {entry}", exc))
                return
            except Exception as exc:  # noqa: BLE001 - tried again next round; the error is kept
                self.tracked[entry.uid].error = str(api_error(f"deleting {entry}", exc))
                return
            with self.lock:
                if entry.key not in self.deleted:
                    self.deleted.append(entry.key)

        return run

    def job_empty(
        self, resource: Resource, namespace: str, members: Sequence[Entry]
    ) -> Callable[[], None]:
        def run() -> None:
            try:
                request(
                    self.api,
                    "DELETE",
                    resource.path(namespace),
                    body=_delete_options(members[0].key),
                    timeout=self.deadline.remaining,
                )
            except Exception as exc:  # noqa: BLE001 - tried again next round; the error is kept
                for entry in members:
                    if entry.uid in self.tracked:
                        self.tracked[entry.uid].error = str(
                            api_error(f"deleting the {resource} of namespace {namespace}", exc)
                        )
                return
            with self.lock:
                self.deleted.extend(e.key for e in members if e.key not in self.deleted)

        return run

    def job_strip(self, entry: Entry) -> Callable[[], None]:
        def run() -> None:
            resource = self.resource(entry)
            patch = [
                # A new object under the same name fails the "test" and keeps its finalizers.
                {"op": "test", "path": "/metadata/uid", "value": entry.uid},
                {"op": "remove", "path": "/metadata/finalizers"},
            ]
            try:
                request(
                    self.api,
                    "PATCH",
                    resource.path(entry.key.namespace, entry.key.name),
                    body=patch,
                    content_type=_JSON_PATCH,
                    timeout=self.deadline.remaining,
                )
            except Exception as exc:  # noqa: BLE001 - the wait's error shows it if it matters
                self.tracked[entry.uid].error = str(
                    api_error(f"removing the finalizers of {entry}", exc)
                )
                self.tracked[entry.uid].stripped = False
                return
            with self.lock:
                self.stripped.append(entry.key)

        return run

    def job_finalize(self, entry: Entry) -> Callable[[], None]:
        def run() -> None:
            path = f"/api/v1/namespaces/{entry.key.name}"
            try:
                namespace = request(self.api, "GET", path, timeout=self.deadline.remaining)
                if (namespace.get("metadata") or {}).get("uid") != entry.uid:
                    return
                namespace.setdefault("spec", {})["finalizers"] = []
                request(
                    self.api,
                    "PUT",
                    f"{path}/finalize",
                    body=namespace,
                    timeout=self.deadline.remaining,
                )
            except Exception as exc:  # noqa: BLE001 - the wait's error shows it if it matters
                self.tracked[entry.uid].error = str(
                    api_error(f"finalizing namespace {entry.key.name}", exc)
                )
                with self.lock:
                    self.finalized.remove(entry.key.name)

        return run

    def resource(self, entry: Entry) -> Resource:
        inventory = self.last or self.baseline
        found = inventory.resource_of(entry.key) or self.baseline.resource_of(entry.key)
        if found is None:
            raise VClusterError(f"no resource serves {entry.key}")
        return found

    # -- failing -------------------------------------------------------------------------

    def timed_out(self, awaited: str) -> None:
        left = (
            [entry for entry in self.added(self.last) if self.counts(entry)]
            if self.last is not None
            else []
        )
        shown = "; ".join(self.describe(entry) for entry in left[:8])
        more = f" and {len(left) - 8} more" if len(left) > 8 else ""
        raise WaitTimeoutError(
            f"{awaited} (reset of the virtual cluster to its baseline)",
            self.deadline.seconds,
            f"{len(left)} left: {shown or 'nothing listed'}{more}. Something recreates them or "
            "refuses their deletion (a controller of the test still running, an admission "
            "webhook or policy of the baseline): delete the cluster instead of recycling it, "
            "or pass a larger timeout",
        )

    def describe(self, entry: Entry) -> str:
        state = self.tracked.get(entry.uid, _Tracked())
        text = str(entry)
        if entry.deleting:
            held = f"finalizers {list(entry.finalizers)}" if entry.finalizers else "no finalizers"
            text += f" (terminating, {held})"
        elif state.asked is None:
            text += " (not asked to delete yet)"
        return text + (f": {state.error}" if state.error else "")


# -- the host namespace ----------------------------------------------------------------------

#: What vcluster syncs from the virtual cluster into its host namespace, by resource path:
#: pods and services, and the claims of the pods' volumes.
HOST_KINDS: Mapping[str, str] = {
    "pods": "Pod",
    "services": "Service",
    "persistentvolumeclaims": "PersistentVolumeClaim",
}


@dataclass(frozen=True)
class HostBaseline:
    """The names of the host namespace's objects, per resource of :data:`HOST_KINDS`, when
    the virtual cluster first became Ready."""

    namespace: str
    names: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class HostCheck:
    """Whether the host namespace holds only its baseline objects: ``extra`` and ``missing``
    name the others, per resource; ``reasons`` says it in words."""

    clean: bool
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    missing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    seconds: float = 0.0


_GATES, _CRDS, _REST = "gates", "crds", "rest"


def _delete_options(key: ObjectKey) -> dict[str, object]:
    options: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    }
    if (key.group, key.kind) == _POD:
        # Whatever grace the pod got before (the garbage collector's delete gives it its
        # own), the virtual pod goes now; vcluster's delete of the host copy is not cut short
        # by a second, shorter delete of the virtual pod, so waiting for it gains nothing.
        options["gracePeriodSeconds"] = POD_GRACE_SECONDS
    return options


#: Finalizer domains whose controllers run in the virtual control plane (garbage collector,
#: volume protection, Job tracking, CRD cleanup): they remove their finalizers themselves.
_CONTROL_PLANE_DOMAINS = ("kubernetes.io", "k8s.io")


def _control_plane_finalizers(entry: Entry) -> bool:
    """True if any of ``entry``'s finalizers is the control plane's (``foregroundDeletion``,
    ``orphan``, ``kubernetes.io/pvc-protection``, ...), not one a test's controller set."""
    for finalizer in entry.finalizers:
        domain = finalizer.split("/", 1)[0] if "/" in finalizer else ""
        if not domain or domain.endswith(_CONTROL_PLANE_DOMAINS):
            return True
    return False


def _kind(entry: Entry) -> tuple[str, str]:
    return entry.key.group, entry.key.kind


def _left_to_the_server(entry: Entry) -> bool:
    label = LEFT_TO_THE_SERVER.get(_kind(entry))
    return label is not None and entry.label(label) is not None


def _is_gate(entry: Entry) -> bool:
    return entry.key.group in GATE_GROUPS and not _left_to_the_server(entry)


def _deletable(inventory: Inventory, entry: Entry) -> bool:
    resource = inventory.resource_of(entry.key)
    return resource is not None and resource.deletable


def _host_objects(
    host_api: client.ApiClient, namespace: str, timeout: float
) -> dict[str, dict[str, bool]]:
    """Per resource of :data:`HOST_KINDS`: name -> whether it is terminating."""
    found: dict[str, dict[str, bool]] = {}
    for plural in HOST_KINDS:
        answer = request(
            host_api,
            "GET",
            f"/api/v1/namespaces/{namespace}/{plural}",
            accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            timeout=timeout,
        )
        found[plural] = {
            str(item["metadata"]["name"]): bool(item["metadata"].get("deletionTimestamp"))
            for item in (answer or {}).get("items") or []
        }
    return found


def host_baseline(
    host_api: client.ApiClient, namespace: str, *, timeout: float = 15.0
) -> HostBaseline:
    """The names of the host namespace's pods, services and claims now."""
    try:
        found = _host_objects(host_api, namespace, timeout)
    except Exception as exc:
        raise api_error(f"listing host namespace {namespace}", exc) from exc
    return HostBaseline(namespace, {plural: frozenset(names) for plural, names in found.items()})


def host_namespace_clean(
    host_api: client.ApiClient,
    namespace: str,
    baseline: HostBaseline | Mapping[str, Iterable[str]],
    *,
    timeout: float,
    force_after: float | None = None,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> HostCheck:
    """Wait until the host namespace holds only the baseline's pods, services and claims.

    vcluster deletes a synced pod on the host after its virtual pod is gone, with the pod's
    own grace period (30 s unless the pod says otherwise, and a process that ignores SIGTERM
    uses all of it). With ``force_after`` set, synced pods still terminating that many seconds
    into the wait are deleted with a grace period of 0: only pods vcluster already deletes,
    never one it still syncs, and never a baseline pod. Returns (does not raise) an unclean
    :class:`HostCheck` after ``timeout`` seconds, saying what is extra or missing; a host
    namespace that stays unclean means the cluster must be deleted, not recycled.
    """
    names = baseline.names if isinstance(baseline, HostBaseline) else baseline
    wanted = {plural: set(names.get(plural, ())) for plural in HOST_KINDS}
    deadline = Deadline(timeout, clock=clock)
    extra: dict[str, tuple[str, ...]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    forced: set[str] = set()
    seen = "nothing yet"
    while True:
        try:
            now = _host_objects(host_api, namespace, deadline.remaining)
        except Exception as exc:  # noqa: BLE001 - the host may not answer for a moment
            seen = str(api_error(f"listing host namespace {namespace}", exc))
        else:
            extra = {
                p: tuple(sorted(set(now[p]) - wanted[p]))
                for p in HOST_KINDS
                if set(now[p]) - wanted[p]
            }
            missing = {
                p: tuple(sorted(wanted[p] - set(now[p])))
                for p in HOST_KINDS
                if wanted[p] - set(now[p])
            }
            if not extra and not missing:
                return HostCheck(clean=True, seconds=deadline.elapsed)
            seen = "; ".join(
                [f"extra {HOST_KINDS[p]}s: {', '.join(v)}" for p, v in extra.items()]
                + [f"missing {HOST_KINDS[p]}s: {', '.join(v)}" for p, v in missing.items()]
            )
            if force_after is not None and deadline.elapsed >= force_after:
                terminating = [
                    pod for pod in extra.get("pods", ()) if now["pods"][pod] and pod not in forced
                ]
                for pod in terminating:
                    forced.add(pod)
                    _force_delete_pod(host_api, namespace, pod, deadline.remaining)
                if terminating:
                    continue
        if deadline.expired:
            return HostCheck(
                clean=False,
                extra=extra,
                missing=missing,
                reasons=(
                    f"host namespace {namespace} after {timeout:g}s: {seen}. vcluster deletes "
                    "a synced object after its virtual one; what is left was not synced back "
                    "or is still terminating: delete the cluster instead of recycling it",
                ),
                seconds=deadline.elapsed,
            )
        sleep(min(interval, max(deadline.remaining, 0.01)))


def _force_delete_pod(host_api: client.ApiClient, namespace: str, pod: str, timeout: float) -> None:
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    # A failure (it went meanwhile) shows in the next look, or in the check's reasons.
    with contextlib.suppress(Exception):
        request(
            host_api,
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods/{pod}",
            body=options,
            timeout=timeout,
        )
