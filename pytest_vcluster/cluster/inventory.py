"""What a virtual cluster holds, object by object, and what changed between two looks.

:func:`take_inventory` lists every object of every resource API discovery reports as listable,
in all namespaces; :func:`diff` compares two inventories by identity (group, kind, namespace,
name), uid and resourceVersion. A cluster a test is done with can be recycled only if, after a
reset (:mod:`~pytest_vcluster.cluster.reset`), the diff against the inventory taken when the
cluster first became Ready is clean.

Some objects change on their own; :data:`EXCLUSIONS` lists them, each with why ignoring it
cannot hide what a test left behind. Two inventories of idle fresh vclusters 40 s apart
(vcluster 0.36, Kubernetes 1.36, in several clusters) differed only in the API server's
identity Lease; the other entries cover what controllers do on their own once a test has run,
seen when resetting clusters after a test or reasoned from the controller, as each says.

Only metadata is listed (``PartialObjectMetadataList``): names, uids and resourceVersions are
all a comparison needs, and the answers are a fraction of the full objects'. The resources are
listed in parallel, each request with :data:`~pytest_vcluster.core.api.API_TIMEOUT` at most,
the whole inventory within one deadline. This module does not import pytest.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import (
    RunInterruptedError,
    VClusterError,
    WaitTimeoutError,
    api_error,
)
from pytest_vcluster.core.waits import Deadline

__all__ = [
    "EXCLUSIONS",
    "Drift",
    "Entry",
    "Exclusion",
    "Inventory",
    "InventoryDiff",
    "ObjectKey",
    "Resource",
    "diff",
    "discover",
    "request",
    "take_inventory",
]

#: Requests in flight at once while listing. Eight keep a vcluster's API server busy without
#: queueing behind its priority-and-fairness limits; more did not list faster on two cores.
WORKERS = 8
#: Objects per page: a fresh cluster has a few hundred objects in all, so most resources fit
#: in one page, and a test that made thousands still does not get one huge answer.
PAGE_SIZE = 500

_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_JSON = "application/json"


# -- requests ------------------------------------------------------------------------------


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,  # noqa: ANN401 - a JSON document: an object, or a JSON patch's list
    accept: str = _JSON,
    content_type: str = _JSON,
    timeout: float = API_TIMEOUT,
) -> Any:  # noqa: ANN401 - decoded JSON
    """One request through ``api`` (its credentials and TLS), the answer decoded from JSON.

    A non-2xx answer raises :class:`ApiException`; a transport failure raises what urllib3
    raised. ``timeout`` is capped at :data:`API_TIMEOUT`.
    """
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": accept, "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=min(max(timeout, 0.5), API_TIMEOUT))
    data = response.read()  # type: ignore[no-untyped-call]
    if not 200 <= int(response.status) < 300:
        raise ApiException(status=response.status, reason=response.reason, body=data)
    return json.loads(data) if data else None


# -- discovery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One listable resource: where its objects are and what may be done to them."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset({"list", "delete"})

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kind_key(self) -> tuple[str, str]:
        """(group, kind): what identifies the resource whatever version serves it."""
        return self.group, self.kind

    @property
    def deletable(self) -> bool:
        """True if the API accepts DELETE for its objects."""
        return "delete" in self.verbs

    def path(self, namespace: str = "", name: str = "") -> str:
        """The collection's URL path (in ``namespace`` if given), or object ``name``'s."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            prefix += f"/namespaces/{namespace}"
        return f"{prefix}/{self.plural}" + (f"/{name}" if name else "")

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def discover(api: client.ApiClient, deadline: Deadline) -> list[Resource]:
    """Every listable resource, one per (group, kind), at the most preferred version that
    serves it; subresources are left out.

    Asks the aggregated discovery documents (two requests) and falls back to one request per
    group version for servers older than Kubernetes 1.30 (or aggregated API servers that
    answer the plain documents only).
    """
    core = request(api, "GET", "/api", accept=f"{_AGGREGATED},{_JSON}", timeout=deadline.remaining)
    if isinstance(core, dict) and core.get("kind") == "APIGroupDiscoveryList":
        groups = request(
            api, "GET", "/apis", accept=f"{_AGGREGATED},{_JSON}", timeout=deadline.remaining
        )
        if isinstance(groups, dict) and groups.get("kind") == "APIGroupDiscoveryList":
            return _first_per_kind(
                _aggregated(core) + _aggregated(groups),
            )
    return _first_per_kind(_legacy(api, deadline))


def _aggregated(document: Mapping[str, Any]) -> list[Resource]:
    found: list[Resource] = []
    for item in document.get("items") or []:
        group = str((item.get("metadata") or {}).get("name") or "")
        # Versions come in order of preference: the first one serving a kind wins.
        for version in item.get("versions") or []:
            if version.get("freshness") == "Stale":
                # An aggregated API server that does not answer: its lists would fail.
                continue
            for entry in version.get("resources") or []:
                kind = (entry.get("responseKind") or {}).get("kind")
                verbs = frozenset(str(verb) for verb in entry.get("verbs") or ())
                if not kind or "list" not in verbs:
                    continue
                found.append(
                    Resource(
                        group=group,
                        version=str(version["version"]),
                        kind=str(kind),
                        plural=str(entry["resource"]),
                        namespaced=entry.get("scope") == "Namespaced",
                        verbs=verbs,
                    )
                )
    return found


def _legacy(api: client.ApiClient, deadline: Deadline) -> list[Resource]:
    versions: list[tuple[str, str]] = [("", "v1")]
    answer = request(api, "GET", "/apis", timeout=deadline.remaining) or {}
    for entry in answer.get("groups") or []:
        preferred = (entry.get("preferredVersion") or {}).get("version")
        names = [str(v["version"]) for v in entry.get("versions") or []]
        ordered = [preferred] if preferred in names else []
        ordered += [name for name in names if name != preferred]
        versions += [(str(entry["name"]), name) for name in ordered]

    def resources_of(group: str, version: str) -> list[Resource]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            document = request(api, "GET", path, timeout=deadline.remaining) or {}
        except ApiException as exc:
            # 503: an aggregated API server that does not answer; there is nothing to list.
            if exc.status in {404, 503}:
                return []
            raise
        return [
            Resource(
                group=group,
                version=version,
                kind=str(entry["kind"]),
                plural=str(entry["name"]),
                namespaced=bool(entry.get("namespaced")),
                verbs=frozenset(str(verb) for verb in entry.get("verbs") or ()),
            )
            for entry in document.get("resources") or []
            if "/" not in str(entry.get("name", "/")) and "list" in (entry.get("verbs") or ())
        ]

    with ThreadPoolExecutor(WORKERS) as pool:
        answers = list(pool.map(lambda gv: resources_of(*gv), versions))
    return [resource for found in answers for resource in found]


def _first_per_kind(resources: Iterable[Resource]) -> list[Resource]:
    # One resource served at two versions (autoscaling/v1 and v2) holds the same objects:
    # listed twice, every object would be counted twice.
    chosen: dict[tuple[str, str], Resource] = {}
    for resource in resources:
        chosen.setdefault(resource.kind_key, resource)
    return list(chosen.values())


# -- inventories ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectKey:
    """What identifies an object whatever version it is read at; ``namespace`` is ``""`` for
    cluster-scoped objects."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


@dataclass(frozen=True)
class Entry:
    """One object as an inventory saw it.

    ``deleting`` is set once the object has a ``deletionTimestamp``; ``finalizers`` are what
    holds it then; ``owners`` are the uids of its ``ownerReferences`` (the garbage collector
    deletes it with them); ``labels`` its labels, as (name, value) pairs.
    """

    key: ObjectKey
    version: str
    uid: str
    resource_version: str
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return str(self.key)

    def label(self, name: str) -> str | None:
        """The value of label ``name``, or None."""
        return next((value for key, value in self.labels if key == name), None)


@dataclass(frozen=True)
class Inventory:
    """Every object of a cluster at one moment.

    ``unlisted`` maps a resource that could not be listed to why; an inventory with any is
    incomplete and never compares clean. A ``partial`` one listed only some resources.
    ``seconds`` and ``requests`` (the list requests; discovery adds two) say what it cost.
    """

    objects: Mapping[ObjectKey, Entry]
    resources: Mapping[tuple[str, str], Resource]
    unlisted: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    requests: int = 0
    partial: bool = False

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.objects.values())

    @property
    def complete(self) -> bool:
        """True if every listable resource was listed."""
        return not self.unlisted and not self.partial

    def resource_of(self, key: ObjectKey) -> Resource | None:
        """The resource ``key``'s objects were listed from."""
        return self.resources.get((key.group, key.kind))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy of a complete inventory (a warm cluster's baseline is kept on
        the host this way), read back by :meth:`from_dict`."""
        return {
            "resources": [
                [r.group, r.version, r.kind, r.plural, r.namespaced, sorted(r.verbs)]
                for r in self.resources.values()
            ],
            "objects": [
                [
                    [e.key.group, e.key.kind, e.key.namespace, e.key.name],
                    e.version, e.uid, e.resource_version, e.deleting,
                    list(e.finalizers), list(e.owners), [list(pair) for pair in e.labels],
                ]
                for e in self.objects.values()
            ],
            "unlisted": dict(self.unlisted),
            "partial": self.partial,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inventory:
        """The inventory :meth:`to_dict` wrote; raises ``ValueError`` for anything else."""
        try:
            resources = [
                Resource(str(g), str(v), str(k), str(p), bool(n), frozenset(map(str, verbs)))
                for g, v, k, p, n, verbs in data["resources"]
            ]
            entries = [
                Entry(
                    ObjectKey(*map(str, key)), str(version), str(uid), str(rv), bool(deleting),
                    tuple(map(str, finalizers)), tuple(map(str, owners)),
                    tuple((str(name), str(value)) for name, value in labels),
                )
                for key, version, uid, rv, deleting, finalizers, owners, labels in data["objects"]
            ]  # fmt: skip
            unlisted = {str(k): str(v) for k, v in dict(data.get("unlisted", {})).items()}
            partial = bool(data.get("partial", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an inventory written by to_dict: {exc}") from exc
        return cls(
            objects={entry.key: entry for entry in entries},
            resources={resource.kind_key: resource for resource in resources},
            unlisted=unlisted,
            partial=partial,
        )

    def count_by_kind(self) -> dict[str, int]:
        """Objects per ``Kind.group``, most first: for reports."""
        counts: dict[str, int] = {}
        for key in self.objects:
            name = f"{key.kind}.{key.group}" if key.group else key.kind
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def take_inventory(
    api_client: client.ApiClient,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    only: Sequence[Resource] | None = None,
) -> Inventory:
    """Every object of every listable resource of the cluster behind ``api_client``.

    A resource whose list fails (an aggregated API server that does not answer, a 403) is
    recorded in :attr:`Inventory.unlisted` instead of failing the inventory. With ``only``,
    just those resources are listed, without discovery: a partial inventory, for following
    known objects, which :func:`diff` refuses. Raises
    :class:`~pytest_vcluster.core.errors.WaitTimeoutError` if the listing takes longer than
    ``timeout`` seconds, and :class:`~pytest_vcluster.core.errors.ApiError` if discovery
    fails.
    """
    deadline = Deadline(timeout, clock=clock, stop=stop)
    counter = _Counter()
    if only is not None:
        resources = list(only)
    else:
        try:
            resources = discover(api_client, deadline)
        except Exception as exc:
            raise api_error("discovering the resources of the virtual cluster", exc) from exc
    objects: dict[ObjectKey, Entry] = {}
    unlisted: dict[str, str] = {}
    pool = ThreadPoolExecutor(WORKERS)
    try:
        pending = {
            pool.submit(_list, api_client, resource, deadline, counter): resource
            for resource in resources
        }
        while pending:
            done, _ = wait(
                pending, timeout=max(deadline.remaining, 0.01), return_when=FIRST_COMPLETED
            )
            if deadline.stopped or (not done and deadline.expired):
                _give_up(resources, list(pending.values()), timeout, stopped=deadline.stopped)
            out_of_time: list[Resource] = []
            for future in done:
                resource = pending.pop(future)
                try:
                    for entry in future.result():
                        objects[entry.key] = entry
                except Exception as exc:  # noqa: BLE001 - any failure leaves the resource unlisted
                    if deadline.expired:
                        # It failed for want of time, not because it cannot be listed.
                        out_of_time.append(resource)
                    else:
                        unlisted[str(resource)] = str(api_error(f"listing {resource}", exc))
            if out_of_time:
                _give_up(resources, [*out_of_time, *pending.values()], timeout, stopped=False)
    finally:
        # Requests still running end by their own timeout; nobody waits for them.
        pool.shutdown(wait=False, cancel_futures=True)
    return Inventory(
        objects=dict(sorted(objects.items())),
        resources={resource.kind_key: resource for resource in resources},
        unlisted=unlisted,
        seconds=deadline.elapsed,
        requests=counter.value,
        partial=only is not None,
    )


def _give_up(
    resources: Sequence[Resource], left: Sequence[Resource], timeout: float, *, stopped: bool
) -> None:
    names = sorted(str(resource) for resource in left)
    shown = ", ".join(names[:10]) + (" and more" if len(names) > 10 else "")
    if stopped:
        raise RunInterruptedError(
            f"stopped taking the inventory: the run was interrupted; still listing {shown}"
        )
    raise WaitTimeoutError(
        f"an inventory of the virtual cluster's objects ({len(resources)} resources)",
        timeout,
        f"{len(resources) - len(names)} resources listed, still listing {shown}. The virtual "
        "cluster's API server answers slowly: check its pod's CPU and logs in the host "
        "namespace, or pass a larger timeout",
    )


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def _list(
    api: client.ApiClient, resource: Resource, deadline: Deadline, counter: _Counter
) -> list[Entry]:
    entries: list[Entry] = []
    token = ""
    while True:
        if deadline.expired or deadline.stopped:
            raise TimeoutError(f"no time left to list {resource}")
        query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
        counter.add()
        answer = request(
            api,
            "GET",
            resource.path(),
            query=query,
            # Servers (or aggregated API servers) that cannot answer with metadata only
            # answer with the full list, which has the same metadata.
            accept=f"{_METADATA},{_JSON}",
            timeout=deadline.remaining,
        )
        entries += [_entry(resource, item) for item in (answer or {}).get("items") or []]
        token = str(((answer or {}).get("metadata") or {}).get("continue") or "")
        if not token:
            return entries


def _entry(resource: Resource, item: Mapping[str, Any]) -> Entry:
    metadata = item.get("metadata") or {}
    return Entry(
        key=ObjectKey(
            resource.group,
            resource.kind,
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
        ),
        version=resource.version,
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        deleting=bool(metadata.get("deletionTimestamp")),
        finalizers=tuple(str(f) for f in metadata.get("finalizers") or ()),
        owners=tuple(str(ref.get("uid")) for ref in metadata.get("ownerReferences") or ()),
        labels=tuple(sorted((str(k), str(v)) for k, v in (metadata.get("labels") or {}).items())),
    )


# -- differences ---------------------------------------------------------------------------


class Drift(enum.Flag):
    """Ways an object can differ from the baseline."""

    ADDED = enum.auto()
    #: Same uid, another resourceVersion.
    CHANGED = enum.auto()
    #: Gone, with nothing of its name in its place.
    REMOVED = enum.auto()
    #: Gone, and another object (another uid) has its name: counted as removed and added.
    REPLACED = enum.auto()


@dataclass(frozen=True)
class Exclusion:
    """Objects whose drift of the kinds in ``ignores`` is their own doing, not a test's.

    ``namespaces`` and ``names`` limit it (None: any); ``reason`` says why ignoring it cannot
    hide what a test left behind.
    """

    group: str
    kind: str
    ignores: Drift
    reason: str
    namespaces: frozenset[str] | None = None
    names: frozenset[str] | None = None

    def covers(self, key: ObjectKey, drift: Drift) -> bool:
        """True if ``key``'s ``drift`` is ignored by this exclusion."""
        return (
            bool(drift & self.ignores)
            and key.group == self.group
            and key.kind == self.kind
            and (self.namespaces is None or key.namespace in self.namespaces)
            and (self.names is None or key.name in self.names)
        )


#: What changes by itself in a virtual cluster, or is made again by a controller exactly as it
#: was (see the module's docstring for how the list was found).
EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion(
        "coordination.k8s.io",
        "Lease",
        Drift.CHANGED,
        namespaces=frozenset({"kube-system"}),
        reason=(
            "the API server renews its identity Lease (apiserver-<hash>) every 10 s: the one "
            "drift of an idle vcluster. Leader election of the controller manager and scheduler "
            "renews its Leases the same way where it is on (vcluster runs them without). Only "
            "the renewal is ignored: a Lease a test adds in kube-system still counts as added"
        ),
    ),
    Exclusion(
        "coordination.k8s.io",
        "Lease",
        Drift.CHANGED,
        namespaces=frozenset({"kube-node-lease"}),
        reason=(
            "node heartbeats: a kubelet (or vcluster, when it syncs real nodes) renews one "
            "Lease per node every 10 s, and it holds only the renew time. None exist with "
            "vcluster's default fake nodes"
        ),
    ),
    Exclusion(
        "",
        "Node",
        Drift.CHANGED,
        reason=(
            "vcluster copies the host node's status (conditions, heartbeat times, images) into "
            "the virtual Node whenever the host's changes (not seen within 40 s idle); a test "
            "cannot change a node of the shared host through the virtual cluster, and a Node "
            "added or removed still counts"
        ),
    ),
    Exclusion(
        "",
        "Event",
        Drift.ADDED | Drift.CHANGED | Drift.REMOVED | Drift.REPLACED,
        reason=(
            "Events are records, not state: controllers (and vcluster, copying the host's) "
            "write them for baseline objects on their own, bump counts in place, and they "
            "expire after an hour. A test's Deployment leaves them in its namespace, a baseline "
            "one too. The reset still deletes the ones added since the baseline, so a later "
            "test does not read an earlier test's events"
        ),
    ),
    Exclusion(
        "events.k8s.io",
        "Event",
        Drift.ADDED | Drift.CHANGED | Drift.REMOVED | Drift.REPLACED,
        reason="the same Events as the core group's, served a second time",
    ),
    Exclusion(
        "",
        "ConfigMap",
        Drift.CHANGED | Drift.REPLACED,
        names=frozenset({"kube-root-ca.crt"}),
        reason=(
            "the root CA publisher writes the cluster's CA bundle into this ConfigMap in "
            "every namespace and rewrites or recreates it whenever it differs or is gone, so "
            "its content is always the controller's, whatever a test did to it. It missing, "
            "or added in a namespace the baseline had, still counts"
        ),
    ),
)


@dataclass(frozen=True)
class InventoryDiff:
    """How ``now`` differs from ``baseline``, drift covered by an exclusion left out.

    ``changed`` pairs each object's baseline entry with its entry now; an object whose name
    now belongs to another uid is in ``removed`` (the old one) and in ``added`` (the new one).
    ``ignored`` keeps what the exclusions covered, ``unlisted`` the resources either
    inventory could not list.
    """

    added: tuple[Entry, ...] = ()
    changed: tuple[tuple[Entry, Entry], ...] = ()
    removed: tuple[Entry, ...] = ()
    ignored: tuple[tuple[Drift, Entry], ...] = ()
    unlisted: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """True if ``now`` equals the baseline, exclusions aside, and both were complete."""
        return not (self.added or self.changed or self.removed or self.unlisted)

    def reasons(self, limit: int = 20) -> list[str]:
        """What makes the diff unclean, one line per object (at most ``limit`` per group)."""
        lines: list[str] = []

        def some(items: Sequence[str], what: str) -> None:
            lines.extend(f"{what}: {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"... and {len(items) - limit} more {what}")

        # What the test did to the baseline comes first: it decides that a cluster cannot be
        # recycled, while added objects are what every reset deletes (a summary shows line 1).
        some(
            [f"{old} (resourceVersion {old.resource_version} -> {new.resource_version})"
             for old, new in self.changed],
            "changed",
        )  # fmt: skip
        some([f"{entry} (uid {entry.uid})" for entry in self.removed], "removed")
        some(list(self.unlisted), "not listed")
        some([str(entry) for entry in self.added], "added")
        return lines


def diff(
    baseline: Inventory,
    now: Inventory,
    *,
    exclusions: Sequence[Exclusion] = EXCLUSIONS,
) -> InventoryDiff:
    """What was added, changed and removed between ``baseline`` and ``now``."""
    if baseline.partial or now.partial:
        # Every object of a resource it did not list would look removed.
        raise VClusterError("a diff needs two inventories of every resource, not partial ones")
    added: list[Entry] = []
    changed: list[tuple[Entry, Entry]] = []
    removed: list[Entry] = []
    ignored: list[tuple[Drift, Entry]] = []

    def note(drift: Drift, entry: Entry, into: list[Any], item: object) -> None:
        if any(exclusion.covers(entry.key, drift) for exclusion in exclusions):
            ignored.append((drift, entry))
        else:
            into.append(item)

    for key, old in baseline.objects.items():
        new = now.objects.get(key)
        if new is None:
            # A resource that could not be listed now says nothing about its objects.
            if _resource_name(baseline, key) not in now.unlisted:
                note(Drift.REMOVED, old, removed, old)
        elif new.uid != old.uid:
            note(Drift.REPLACED, old, removed, old)
            note(Drift.REPLACED, new, added, new)
        elif new.resource_version != old.resource_version:
            note(Drift.CHANGED, old, changed, (old, new))
    for key, new in now.objects.items():
        if key not in baseline.objects:
            note(Drift.ADDED, new, added, new)
    return InventoryDiff(
        added=tuple(added),
        changed=tuple(changed),
        removed=tuple(removed),
        ignored=tuple(ignored),
        unlisted=tuple(sorted({*baseline.unlisted, *now.unlisted})),
    )


def _resource_name(inventory: Inventory, key: ObjectKey) -> str:
    resource = inventory.resource_of(key)
    return str(resource) if resource is not None else f"{key.kind}.{key.group}"
