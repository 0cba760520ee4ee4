"""Manifests inside a vcluster: reading them, finding their resources, applying them.

:func:`load_manifests` turns files, directories, YAML text and dicts into :class:`Manifest`
objects that remember where each came from, so that an error can name the file, the document,
the kind and the name. :func:`apply_manifests` server-side applies them (as
``kubectl apply --server-side --force-conflicts`` would) in an order that works in one go:
CustomResourceDefinitions first, waited for until ``Established``, then Namespaces, then the
rest in the order given.

The resources behind kinds come from API discovery (:class:`Discovery`), cached per API
client and asked again when a kind is missing: a CRD applied a moment ago may not be listed
yet. Requests are made with the client's own credentials and TLS through :func:`api_call`,
which the waits in :mod:`~pytest_vcluster.cluster.conditions` share. This module does not
import pytest.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import (
    ManifestError,
    VClusterError,
    WaitTimeoutError,
    WorkloadFailedError,
    api_error,
)
from pytest_vcluster.core.waits import Deadline, wait_until

__all__ = [
    "APPLY_CONTENT_TYPE",
    "FIELD_MANAGER",
    "MANIFEST_SUFFIXES",
    "SERVER_SET_METADATA",
    "ApiResource",
    "Discovery",
    "Manifest",
    "ManifestSource",
    "api_call",
    "apply_manifests",
    "crd_established",
    "discovery_for",
    "get_json",
    "load_manifests",
    "order_for_apply",
]

#: The field manager of every object applied here (``kubectl`` uses ``kubectl``).
FIELD_MANAGER = "pytest-vcluster"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: Files of a directory that are read, as ``kubectl apply -f DIR`` reads them.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: Seconds a kind that discovery does not list is looked up again before the apply fails: a
#: CRD applied by an earlier call can take a moment to show. Kinds whose CRD is in the same
#: apply are looked up until the apply's own timeout instead.
KIND_GRACE = 5.0
#: API answers worth another try: the API server (or a webhook it calls) is busy or starting.
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_RETRY_INTERVAL = 0.5
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?")
_TEXT_START = re.compile(r"\s*(?:(?:apiVersion|kind)\s*:|\{|---)")

#: What :func:`load_manifests` reads: a path (file or directory), YAML or JSON text, one
#: object as a mapping, or a list of any of these.
ManifestSource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any]


# -- requests ------------------------------------------------------------------------------


def api_call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Mapping[str, Any] | None = None,
    content_type: str = "application/json",
    timeout: float = API_TIMEOUT,
) -> bytes:
    """One request through ``api`` (its credentials and TLS); the raw answer body.

    A non-2xx answer raises :class:`ApiException` (``status``, ``reason``, ``body``); a
    transport failure raises what urllib3 raised.
    """
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": "application/json, */*", "Content-Type": content_type},
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=timeout)
    data = response.read()  # type: ignore[no-untyped-call]
    if not 200 <= int(response.status) < 300:
        raise ApiException(status=response.status, reason=response.reason, body=data)
    return bytes(data or b"")


def get_json(
    api: client.ApiClient,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = API_TIMEOUT,
) -> Any:  # noqa: ANN401 - decoded JSON
    """``GET path`` decoded from JSON."""
    data = api_call(api, "GET", path, query=query, timeout=timeout)
    return json.loads(data) if data else None


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the ``Status`` the API answered with, else a short raw body."""
    found = api_error("", exc)
    if found.message:
        return found.message
    return (found.body or "").strip()[:300] or "(no message)"


def _status_details_kind(exc: ApiException) -> str | None:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    try:
        details = json.loads(body or "{}").get("details") or {}
    except (ValueError, AttributeError):
        return None
    kind = details.get("kind") if isinstance(details, dict) else None
    return kind if isinstance(kind, str) else None


# -- discovery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResource:
    """One resource the API serves: its kind, plural and scope in one group version."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        """The URL path of the collection, or of object ``name``, in ``namespace``."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            if not namespace:
                raise VClusterError(f"{self.plural} are namespaced but no namespace was given")
            prefix += f"/namespaces/{namespace}"
        return f"{prefix}/{self.plural}" + (f"/{name}" if name else "")

    def names(self) -> tuple[str, ...]:
        """Every lower-case spelling that means this resource (kind, plural, short names)."""
        spelled = (self.kind.lower(), self.plural, self.singular, *self.short_names)
        return tuple(dict.fromkeys(name for name in spelled if name))


@dataclass(frozen=True)
class _Group:
    name: str
    preferred: str
    versions: tuple[str, ...]


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


class Discovery:
    """What one API server serves, asked one group version at a time and cached.

    Lookups that miss may be asked again with ``refresh=True``: resources come and go with
    CRDs, and the cache must not hide a kind that was just added.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._lock = threading.RLock()
        # group version -> its resources; None: the API does not serve the group version.
        self._resources: dict[str, list[ApiResource] | None] = {}
        self._groups: list[_Group] | None = None

    def forget(self) -> None:
        """Drop everything cached (the next lookups ask the API again)."""
        with self._lock:
            self._resources.clear()
            self._groups = None

    def resources(self, api_version: str, *, refresh: bool = False) -> list[ApiResource] | None:
        """The resources of ``api_version`` (``apps/v1``), or None if it is not served."""
        with self._lock:
            if not refresh and api_version in self._resources:
                return self._resources[api_version]
        group, version = _split_api_version(api_version)
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            answer = get_json(self.api, path)
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(f"discovering the resources of {api_version}", exc) from exc
            found: list[ApiResource] | None = None
        except Exception as exc:
            raise api_error(f"discovering the resources of {api_version}", exc) from exc
        else:
            found = [
                ApiResource(
                    group=group,
                    version=version,
                    kind=str(entry.get("kind", "")),
                    plural=str(entry["name"]),
                    namespaced=bool(entry.get("namespaced")),
                    singular=str(entry.get("singularName") or ""),
                    short_names=tuple(str(s) for s in entry.get("shortNames") or ()),
                )
                for entry in (answer or {}).get("resources", [])
                # Subresources (pods/log, deployments/scale) are not kinds of their own.
                if "/" not in str(entry.get("name", "/"))
            ]
        with self._lock:
            self._resources[api_version] = found
        return found

    def groups(self, *, refresh: bool = False) -> list[_Group]:
        """The core group, then every group in the API's order (its priority order)."""
        with self._lock:
            if self._groups is not None and not refresh:
                return self._groups
        try:
            answer = get_json(self.api, "/apis")
        except Exception as exc:
            raise api_error("discovering the API groups", exc) from exc
        groups = [_Group("", "v1", ("v1",))]
        for entry in (answer or {}).get("groups", []):
            versions = tuple(str(v["version"]) for v in entry.get("versions", []))
            preferred = (entry.get("preferredVersion") or {}).get("version") or (
                versions[0] if versions else ""
            )
            if preferred:
                groups.append(_Group(str(entry["name"]), str(preferred), versions))
        with self._lock:
            self._groups = groups
        return groups

    def by_kind(self, api_version: str, kind: str, *, refresh: bool = False) -> ApiResource | None:
        """The resource of ``kind`` in ``api_version``, or None if the API does not serve it."""
        for resource in self.resources(api_version, refresh=refresh) or []:
            if resource.kind == kind:
                return resource
        return None

    def find(self, spelled: str, *, refresh: bool = False) -> ApiResource | None:
        """The resource a user means by ``spelled``, as kubectl reads it.

        ``Deployment``, ``deployment``, ``deployments``, ``deploy`` (a short name),
        ``deployment.apps`` (with its group) and ``deployment.v1.apps`` (with its version)
        all mean Deployments. Without a group, the core group wins, then the groups in the
        API's order, each in its preferred version.
        """
        token, _, group = spelled.strip().lower().partition(".")
        version: str | None = None
        first, _, rest = group.partition(".")
        if rest and _VERSION.fullmatch(first):
            version, group = first, rest
        for entry in self.groups(refresh=refresh):
            if group and entry.name != group:
                continue
            served = self.resources(_join(entry.name, version or entry.preferred), refresh=refresh)
            for resource in served or []:
                if token in resource.names():
                    return resource
        return None

    def suggestions(self, spelled: str) -> list[str]:
        """Kinds the API serves that look like ``spelled`` (for an error message)."""
        known: set[str] = set()
        for entry in self.groups():
            for resource in self.resources(_join(entry.name, entry.preferred)) or []:
                known.update(resource.names())
        token = spelled.strip().lower().partition(".")[0]
        return difflib.get_close_matches(token, sorted(known), n=4, cutoff=0.6)


def _join(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


_DISCOVERIES: weakref.WeakKeyDictionary[client.ApiClient, Discovery] = weakref.WeakKeyDictionary()
_DISCOVERIES_LOCK = threading.Lock()


def discovery_for(api: client.ApiClient) -> Discovery:
    """The discovery cache of ``api`` (one per client, gone with it)."""
    with _DISCOVERIES_LOCK:
        found = _DISCOVERIES.get(api)
        if found is None:
            found = _DISCOVERIES[api] = Discovery(api)
        return found


# -- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """One object to apply and where it came from.

    ``source`` is the file's path, ``<string>`` or ``<dict>``; ``document`` counts the YAML
    documents of that source from 1 (for a list of dicts, the position in the list);
    ``item`` is set for an object taken out of a ``kind: List``, counted from 1.
    """

    obj: Mapping[str, Any]
    source: str
    document: int
    item: int | None = None

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the object."""
        return str(self.obj["apiVersion"])

    @property
    def kind(self) -> str:
        """``kind`` of the object."""
        return str(self.obj["kind"])

    @property
    def group(self) -> str:
        """The API group of ``apiVersion`` (``""`` for the core group)."""
        return _split_api_version(self.api_version)[0]

    @property
    def name(self) -> str:
        """``metadata.name`` of the object."""
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        """``metadata.namespace`` of the object, if it names one."""
        value = self.obj["metadata"].get("namespace")
        return str(value) if value else None

    @property
    def is_crd(self) -> bool:
        """True for a CustomResourceDefinition."""
        return self.kind == "CustomResourceDefinition" and self.group == "apiextensions.k8s.io"

    @property
    def is_namespace(self) -> bool:
        """True for a Namespace."""
        return self.kind == "Namespace" and self.api_version == "v1"

    def error(self, problem: str, *, status: int | None = None) -> ManifestError:
        """A :class:`ManifestError` about this object."""
        return ManifestError(
            self.source,
            problem,
            document=self.document,
            item=self.item,
            kind=self.kind,
            name=self.name,
            status=status,
        )


def _looks_like_text(text: str) -> bool:
    # "kind-config.yaml" is a file name; "kind: ConfigMap" is a manifest.
    return "\n" in text or _TEXT_START.match(text) is not None


def load_manifests(source: ManifestSource) -> list[Manifest]:
    """The objects in ``source``, in order, each with where it came from.

    ``source`` is one of:

    * a path (``str`` or :class:`~pathlib.Path`) of a file, or of a directory whose
      ``.yaml``, ``.yml`` and ``.json`` files are read in the order of their names; only the
      directory itself, not its subdirectories, as ``kubectl apply -f DIR`` without ``-R``
      (hidden files are skipped). A relative path starts at the current directory.
    * YAML (or JSON) text: a ``str`` containing a newline, or starting with ``apiVersion:``,
      ``kind:``, ``---`` or ``{``. Any other ``str`` is a path, which must exist.
    * one object as a mapping, or a list of objects (or of paths and texts).

    Empty documents are skipped; the items of a ``kind: List`` become objects of their own.
    Every object needs ``apiVersion``, ``kind`` and ``metadata.name``. Raises
    :class:`ManifestError` naming the file, the document and the problem.
    """
    return list(_load(source))


def _load(source: object) -> Iterator[Manifest]:
    if isinstance(source, Mapping):
        yield from _objects(source, "<dict>", 1)
    elif isinstance(source, str) and _looks_like_text(source):
        yield from _parse_yaml(source, "<string>")
    elif isinstance(source, str | os.PathLike):
        yield from _load_path(Path(source))
    elif isinstance(source, Sequence) and not isinstance(source, bytes | bytearray):
        for position, entry in enumerate(source, start=1):
            if isinstance(entry, Mapping):
                yield from _objects(entry, "<dict>", position)
            else:
                yield from _load(entry)
    else:
        raise ManifestError(
            repr(source)[:100],
            f"cannot read manifests from a {type(source).__name__}: pass a path, YAML text, a "
            "dict, or a list of these",
        )


def _load_path(path: Path) -> Iterator[Manifest]:
    path = path.expanduser()
    if path.is_dir():
        files = sorted(
            entry
            for entry in path.iterdir()
            if entry.is_file()
            and entry.suffix.lower() in MANIFEST_SUFFIXES
            and not entry.name.startswith(".")
        )
        if not files:
            raise ManifestError(
                str(path),
                f"the directory holds no {', '.join(MANIFEST_SUFFIXES)} files (subdirectories "
                "are not read): put the manifests there, or name the files themselves",
            )
        for file in files:
            yield from _load_file(file)
    elif path.is_file():
        yield from _load_file(path)
    else:
        raise ManifestError(
            str(path),
            "no such file or directory (a string without a newline is read as a path; "
            f"relative paths start at {Path.cwd()})",
        )


def _load_file(path: Path) -> Iterator[Manifest]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), f"cannot read it: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ManifestError(str(path), f"not valid JSON: {exc}", document=1) from exc
        yield from _objects(document, str(path), 1)
    else:
        yield from _parse_yaml(text, str(path))


def _parse_yaml(text: str, source: str) -> Iterator[Manifest]:
    number = 0
    documents = yaml.safe_load_all(text)
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ManifestError(
                source, f"not valid YAML{where}: {problem}", document=number + 1
            ) from exc
        number += 1
        yield from _objects(document, source, number)


def _objects(document: object, source: str, number: int) -> Iterator[Manifest]:
    if document is None:
        return
    obj = _check_object(document, source, number, None)
    kind = str(obj["kind"])
    if kind.endswith("List") and isinstance(obj.get("items"), list):
        for index, item in enumerate(obj["items"], start=1):
            if item is None:
                continue
            yield Manifest(_check_object(item, source, number, index), source, number, index)
        return
    yield Manifest(obj, source, number)


def _check_object(
    document: object, source: str, number: int, item: int | None
) -> Mapping[str, Any]:
    def error(problem: str, kind: str | None = None, name: str | None = None) -> ManifestError:
        return ManifestError(source, problem, document=number, item=item, kind=kind, name=name)

    if not isinstance(document, Mapping):
        raise error(
            f"a {type(document).__name__} is not an object: each document must be a mapping "
            "with apiVersion, kind and metadata.name"
        )
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    metadata = document.get("metadata")
    kind_text = str(kind) if isinstance(kind, str) and kind else None
    if kind_text is None:
        raise error("no kind: every object needs apiVersion and kind")
    if not isinstance(api_version, str) or not api_version:
        raise error("no apiVersion: every object needs apiVersion and kind", kind_text)
    if kind_text.endswith("List") and isinstance(document.get("items"), list):
        return document
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        generated = isinstance(metadata, Mapping) and metadata.get("generateName")
        hint = (
            "metadata.generateName cannot be applied: server-side apply needs a fixed name"
            if generated
            else "no metadata.name: give the object a name"
        )
        raise error(hint, kind_text)
    return document


# -- applying ------------------------------------------------------------------------------


def order_for_apply(manifests: Sequence[Manifest]) -> list[int]:
    """Positions of ``manifests`` in the order they are applied.

    CustomResourceDefinitions first (objects of their kinds need them), Namespaces second
    (namespaced objects need them), then everything else in the order given.
    """
    rank = [0 if m.is_crd else 1 if m.is_namespace else 2 for m in manifests]
    return sorted(range(len(manifests)), key=lambda position: rank[position])


def crd_established(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a CRD is ``Established``; raise :class:`WorkloadFailedError` when its names
    were refused (another CRD holds them), which no wait fixes."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    seen = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions) or "no conditions"
    for condition in conditions:
        if condition.get("type") == "NamesAccepted" and condition.get("status") == "False":
            raise WorkloadFailedError(
                f"CustomResourceDefinition {obj.get('metadata', {}).get('name')} will not be "
                f"Established: its names were not accepted: {condition.get('message')}; "
                "choose other names (spec.names) or delete the CRD that holds them"
            )
    done = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
    return done, seen


#: Metadata the API server sets. An object read back from the API (as :func:`apply_manifests`
#: returns it) carries them, and server-side apply refuses ``managedFields`` and takes a
#: ``resourceVersion`` as a precondition that an older copy fails.
SERVER_SET_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def _for_apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` to send: without what the server set on an object it returned."""
    body = copy.deepcopy(dict(obj))
    metadata = body["metadata"] = dict(body["metadata"])
    from_api = "managedFields" in metadata or "resourceVersion" in metadata
    for key in SERVER_SET_METADATA:
        metadata.pop(key, None)
    if from_api:
        # The status an object was read with is the controller's, not something to apply.
        body.pop("status", None)
    return body


class _Applier:
    """Applies the objects of one :func:`apply_manifests` call against one deadline."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        deadline: Deadline,
        new_kinds: set[tuple[str, str]],
        sleep: Callable[[float], None],
    ) -> None:
        self.api = api
        self.discovery = discovery_for(api)
        self.namespace = namespace
        self.deadline = deadline
        # (group, kind) defined by CRDs of this apply: they may take a moment to be served.
        self.new_kinds = new_kinds
        self.sleep = sleep

    def _pause(self, limit: Deadline) -> bool:
        """Sleep before another try; False when ``limit`` leaves no time for one."""
        if limit.expired or self.deadline.expired:
            return False
        self.sleep(min(_RETRY_INTERVAL, limit.remaining, self.deadline.remaining))
        return True

    def resource(self, manifest: Manifest) -> ApiResource:
        found = self.discovery.by_kind(manifest.api_version, manifest.kind)
        if found is not None:
            return found
        new = (manifest.group, manifest.kind) in self.new_kinds
        # One Deadline shares the apply's clock, so a short grace never outlives the apply.
        limit = (
            self.deadline
            if new
            else Deadline(min(KIND_GRACE, self.deadline.remaining), clock=self.deadline.clock)
        )
        while True:
            found = self.discovery.by_kind(manifest.api_version, manifest.kind, refresh=True)
            if found is not None:
                return found
            if not self._pause(limit):
                break
        served = self.discovery.resources(manifest.api_version)
        if served is None:
            problem = f"the API serves no group version {manifest.api_version}"
        else:
            kinds = ", ".join(sorted({r.kind for r in served})) or "none"
            problem = (
                f"the API serves no kind {manifest.kind} in {manifest.api_version} "
                f"(its kinds: {kinds})"
            )
        waited = f" after {limit.seconds:g}s" if new else ""
        raise manifest.error(
            f"{problem}{waited}: check apiVersion and kind, or apply the "
            "CustomResourceDefinition that defines it first (in the same call, it is applied "
            "and waited for before the rest)"
        )

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        resource = self.resource(manifest)
        body = _for_apply(manifest.obj)
        metadata = body["metadata"]
        namespace: str | None = None
        if resource.namespaced:
            namespace = manifest.namespace or self.namespace
            metadata["namespace"] = namespace
        else:
            # A namespace on a cluster-scoped object would not match the request's (none).
            metadata.pop("namespace", None)
        path = resource.path(manifest.name, namespace)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        where = f" in namespace {namespace}" if namespace else ""
        while True:
            try:
                data = api_call(
                    self.api,
                    "PATCH",
                    path,
                    query=query,
                    body=body,
                    content_type=APPLY_CONTENT_TYPE,
                    timeout=max(1.0, min(API_TIMEOUT, self.deadline.remaining)),
                )
            except ApiException as exc:
                if self._retry_refused(manifest, resource, exc):
                    continue
                message = _status_message(exc)
                raise manifest.error(
                    f"the API refused it{where} ({exc.status} {exc.reason}): {message}",
                    status=exc.status,
                ) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # The forward to the API may drop a connection; applying again is harmless.
                if self._pause(self.deadline):
                    continue
                raise api_error(
                    f"applying {manifest.kind} {manifest.name}{where} "
                    f"({manifest.source}, document {manifest.document})",
                    exc,
                ) from exc
            return dict(json.loads(data)) if data else dict(body)

    def _retry_refused(self, manifest: Manifest, resource: ApiResource, exc: ApiException) -> bool:
        """Whether a refusal may pass if asked again (and a pause for it was taken)."""
        if exc.status in _RETRYABLE:
            return self._pause(self.deadline)
        if exc.status == 404 and (manifest.group, manifest.kind) in self.new_kinds:
            # The resource of a CRD that just became Established may not be routed yet;
            # a missing namespace is no such case.
            if _status_details_kind(exc) == "namespaces":
                return False
            if self._pause(self.deadline):
                self.discovery.by_kind(manifest.api_version, resource.kind, refresh=True)
                return True
        return False

    def wait_established(self, manifest: Manifest) -> None:
        crds = self.discovery.by_kind(manifest.api_version, "CustomResourceDefinition")
        if crds is None:  # pragma: no cover - applied a moment ago through this very resource
            raise manifest.error("the API serves no CustomResourceDefinitions")
        path = crds.path(manifest.name)

        def check() -> tuple[bool, str]:
            return crd_established(get_json(self.api, path))

        try:
            wait_until(
                f"CustomResourceDefinition {manifest.name} to be Established",
                check,
                self.deadline,
                interval=0.25,
                sleep=self.sleep,
                fatal=(WorkloadFailedError,),
            )
        except WorkloadFailedError as exc:
            raise manifest.error(str(exc)) from exc
        except WaitTimeoutError as exc:
            raise manifest.error(
                f"not Established within the apply's {exc.timeout:g}s (last seen: "
                f"{exc.last_seen}); pass a larger timeout= if the API server is slow"
            ) from exc


def apply_manifests(
    api_client: client.ApiClient,
    source: ManifestSource,
    *,
    namespace: str | None = None,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Server-side apply every object of ``source`` (see :func:`load_manifests`).

    CustomResourceDefinitions go first and are waited for until ``Established``, then
    Namespaces, then the rest in the order given. A namespaced object without
    ``metadata.namespace`` goes to ``namespace`` (default ``"default"``); an object's own
    namespace wins. Field manager ``pytest-vcluster``, conflicts forced (the test owns the
    cluster). Returns the objects as the API answered, in the order of ``source``.

    ``timeout`` bounds the whole call: retries of a busy API server (429, 5xx, a dropped
    connection) and the wait for CRDs. A refused object raises :class:`ManifestError` naming
    its file, document, kind and name and the API's message; objects before it stay applied.
    ``clock`` and ``sleep`` are for tests.
    """
    manifests = load_manifests(source)
    deadline = Deadline(timeout, clock=clock)
    new_kinds = {
        (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
        for m in manifests
        if m.is_crd
        for spec in [m.obj.get("spec") or {}]
    }
    applier = _Applier(api_client, namespace or "default", deadline, new_kinds, sleep)
    applied: dict[int, dict[str, Any]] = {}
    crds_pending: list[Manifest] = []
    for position in order_for_apply(manifests):
        manifest = manifests[position]
        if not manifest.is_crd and crds_pending:
            for crd in crds_pending:
                applier.wait_established(crd)
            crds_pending.clear()
        applied[position] = applier.apply(manifest)
        if manifest.is_crd:
            crds_pending.append(manifest)
    for crd in crds_pending:
        applier.wait_established(crd)
    return [applied[position] for position in range(len(manifests))]
