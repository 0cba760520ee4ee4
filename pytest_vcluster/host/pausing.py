"""Pausing and resuming a vcluster through the API, the way ``vcluster pause`` does it.

Pausing scales the control plane (StatefulSet or Deployment ``app=vcluster,release=NAME``) to
zero with the CLI's annotations (``loft.sh/paused``, ``loft.sh/paused-replicas``,
``loft.sh/paused-date``) and deletes the pods it synced to the host; resuming scales back.
``vcluster list`` shows such a cluster as paused and ``vcluster resume`` resumes it.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import VClusterError, api_error
from pytest_vcluster.core.labels import control_plane_selector

__all__ = [
    "ANNOTATION_PAUSED",
    "ANNOTATION_PAUSED_DATE",
    "ANNOTATION_PAUSED_REPLICAS",
    "is_paused",
    "pause",
    "resume",
]

ANNOTATION_PAUSED = "loft.sh/paused"
ANNOTATION_PAUSED_REPLICAS = "loft.sh/paused-replicas"
ANNOTATION_PAUSED_DATE = "loft.sh/paused-date"


def _workloads(apps: client.AppsV1Api, name: str, namespace: str) -> list[tuple[str, Any]]:
    selector = control_plane_selector(name)
    found: list[tuple[str, Any]] = [
        ("statefulset", item)
        for item in apps.list_namespaced_stateful_set(
            namespace, label_selector=selector, _request_timeout=API_TIMEOUT
        ).items
    ]
    found += [
        ("deployment", item)
        for item in apps.list_namespaced_deployment(
            namespace, label_selector=selector, _request_timeout=API_TIMEOUT
        ).items
    ]
    return found


def is_paused(apps: client.AppsV1Api, name: str, namespace: str) -> bool:
    """True when the control plane exists and every workload of it is scaled to zero."""
    workloads = _workloads(apps, name, namespace)
    if not workloads:
        return False
    for _, workload in workloads:
        annotations = (workload.metadata.annotations if workload.metadata else None) or {}
        replicas = workload.spec.replicas if workload.spec else None
        if ANNOTATION_PAUSED not in annotations and replicas != 0:
            return False
    return True


def _patch(
    apps: client.AppsV1Api, kind: str, name: str, namespace: str, body: dict[str, Any]
) -> None:
    if kind == "statefulset":
        apps.patch_namespaced_stateful_set(name, namespace, body, _request_timeout=API_TIMEOUT)
    else:
        apps.patch_namespaced_deployment(name, namespace, body, _request_timeout=API_TIMEOUT)


def _rescale(
    api: client.ApiClient,
    name: str,
    namespace: str,
    verb: str,
    body_of: Any,  # noqa: ANN401
) -> None:
    """Patch every control-plane workload with ``body_of(workload)``; errors name ``verb``."""
    apps = client.AppsV1Api(api)
    try:
        workloads = _workloads(apps, name, namespace)
        for kind, workload in workloads:
            _patch(apps, kind, workload.metadata.name, namespace, body_of(workload))
    except Exception as exc:
        raise api_error(f"cannot {verb} vcluster {name} in {namespace}", exc) from exc
    if not workloads:
        raise VClusterError(f"no control plane of vcluster {name} in namespace {namespace}")


def _paused_body(workload: Any) -> dict[str, Any]:  # noqa: ANN401 - a V1StatefulSet or V1Deployment
    replicas = workload.spec.replicas if workload.spec else None
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "metadata": {
            "annotations": {
                ANNOTATION_PAUSED: "true",
                ANNOTATION_PAUSED_REPLICAS: str(replicas or 1),
                ANNOTATION_PAUSED_DATE: now,
            }
        },
        "spec": {"replicas": 0},
    }


def _resumed_body(workload: Any) -> dict[str, Any]:  # noqa: ANN401 - a V1StatefulSet or V1Deployment
    annotations = (workload.metadata.annotations if workload.metadata else None) or {}
    try:
        replicas = int(annotations.get(ANNOTATION_PAUSED_REPLICAS, "1"))
    except ValueError:
        replicas = 1
    removed = dict.fromkeys((ANNOTATION_PAUSED, ANNOTATION_PAUSED_REPLICAS, ANNOTATION_PAUSED_DATE))
    return {"metadata": {"annotations": removed}, "spec": {"replicas": replicas}}


def pause(api: client.ApiClient, name: str, namespace: str) -> None:
    """Scale the control plane to zero and delete the pods it synced to the host."""
    _rescale(api, name, namespace, "pause", _paused_body)
    try:
        client.CoreV1Api(api).delete_collection_namespaced_pod(
            namespace,
            label_selector=f"vcluster.loft.sh/managed-by={name}",
            _request_timeout=API_TIMEOUT,
        )
    except Exception as exc:
        raise api_error(
            f"cannot delete the pods vcluster {name} synced to {namespace}", exc
        ) from exc


def resume(api: client.ApiClient, name: str, namespace: str) -> None:
    """Scale a paused control plane back to the replicas it had (does not wait)."""
    _rescale(api, name, namespace, "resume", _resumed_body)
