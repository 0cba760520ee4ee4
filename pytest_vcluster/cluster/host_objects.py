"""Creating rendered objects on the host through the Kubernetes API.

Each object is POSTed to the collection its ``apiVersion`` and ``kind`` name. The resource
name and scope of a kind come from API discovery, asked once per group version and process;
the kinds the vcluster chart renders by default are known without asking.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import ApiError, VClusterError, api_error

__all__ = ["ApiObjectError", "CreatedObject", "ObjectApplier", "Resource", "collection_path"]


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live: their resource name and whether they are namespaced."""

    plural: str
    namespaced: bool


@dataclass(frozen=True)
class CreatedObject:
    """An object this applier created (cluster-scoped ones must be deleted by name)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    plural: str


class ApiObjectError(ApiError):
    """The API refused an object; keeps the status (code, reason, message, body)."""

    def __init__(self, what: str, exc: ApiException) -> None:
        found = api_error(what, exc)
        super().__init__(
            what,
            status=found.status,
            reason=found.reason,
            message=found.message or _message(exc),
            body=found.body,
        )


def _message(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    return str(body or "")[:300]


_KNOWN: Mapping[tuple[str, str], Resource] = {
    ("v1", "ServiceAccount"): Resource("serviceaccounts", True),
    ("v1", "Secret"): Resource("secrets", True),
    ("v1", "ConfigMap"): Resource("configmaps", True),
    ("v1", "Service"): Resource("services", True),
    ("apps/v1", "StatefulSet"): Resource("statefulsets", True),
    ("apps/v1", "Deployment"): Resource("deployments", True),
    ("rbac.authorization.k8s.io/v1", "Role"): Resource("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Resource("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): Resource("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): Resource("clusterrolebindings", False),
}


def collection_path(api_version: str, resource: Resource, namespace: str | None) -> str:
    """The URL path objects of ``resource`` are created at."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if resource.namespaced:
        if not namespace:
            raise VClusterError(f"{resource.plural} are namespaced but no namespace was given")
        return f"{prefix}/namespaces/{namespace}/{resource.plural}"
    return f"{prefix}/{resource.plural}"


class ObjectApplier:
    """Creates objects through one API client; discovery answers are shared by all callers."""

    _discovered: dict[tuple[str, str], Resource] = {}  # noqa: RUF012 - a process-wide cache
    _discovery_lock = threading.Lock()

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:  # noqa: ANN401 - decoded JSON
        """One request through the client (its credentials and TLS); raises ``ApiException``."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=API_TIMEOUT)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= int(response.status) < 300:
            raise ApiException(status=response.status, reason=response.reason, body=data)
        return json.loads(data) if data else None

    def resource(self, api_version: str, kind: str) -> Resource:
        """The resource of ``kind`` in ``api_version`` (discovered when not known)."""
        key = (api_version, kind)
        known = _KNOWN.get(key) or self._discovered.get(key)
        if known is not None:
            return known
        with self._discovery_lock:
            self._discover(api_version)
        found = self._discovered.get(key)
        if found is None:
            raise VClusterError(
                f"the host's API has no kind {kind} in {api_version}: the chart values ask for "
                "something this host does not serve (a CRD that is not installed?)"
            )
        return found

    def _discover(self, api_version: str) -> None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            answer = self._call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise ApiObjectError(f"cannot discover {api_version}", exc) from exc
        for entry in answer.get("resources", []):
            if "/" in entry["name"]:  # subresources such as pods/log
                continue
            self._discovered[(api_version, entry["kind"])] = Resource(
                entry["name"], bool(entry["namespaced"])
            )

    def create(
        self, obj: Mapping[str, Any], namespace: str, labels: Mapping[str, str]
    ) -> CreatedObject:
        """Create ``obj`` (in ``namespace`` when namespaced) with ``labels`` added to it."""
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        resource = self.resource(api_version, kind)
        metadata = dict(obj.get("metadata") or {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        target_namespace = namespace if resource.namespaced else None
        if target_namespace:
            metadata["namespace"] = target_namespace
        body = {**obj, "metadata": metadata}
        name = str(metadata.get("name", "?"))
        try:
            self._call("POST", collection_path(api_version, resource, target_namespace), body)
        except ApiException as exc:
            raise ApiObjectError(
                f"cannot create {kind} {name} in {target_namespace or 'the host'}", exc
            ) from exc
        return CreatedObject(api_version, kind, name, target_namespace, resource.plural)

    def delete(self, created: CreatedObject) -> None:
        """Delete an object made by :meth:`create`; one that is gone already is fine."""
        resource = Resource(created.plural, created.namespace is not None)
        path = f"{collection_path(created.api_version, resource, created.namespace)}/{created.name}"
        try:
            self._call("DELETE", path)
        except ApiException as exc:
            if exc.status != 404:
                raise ApiObjectError(f"cannot delete {created.kind} {created.name}", exc) from exc
