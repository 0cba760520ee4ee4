"""Host namespaces of vclusters: made with labels, claimed for reuse, deleted.

Each vcluster lives alone in a namespace the plugin makes. The labels (run id, worker, slot,
spec hash, name) let a later run find and claim a paused cluster of the same spec, and let a
reaper find what a run left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import api_error
from pytest_vcluster.core.labels import (
    ANNOTATION_TEST,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_RUN_ID,
    LABEL_SLOT,
    LABEL_SPEC_HASH,
    LABEL_STATE,
    LABEL_WORKER,
    label_value,
    slot_label,
)
from pytest_vcluster.core.waits import Deadline, wait_until
from pytest_vcluster.host.pausing import is_paused

__all__ = ["HostNamespaces", "begin_delete"]

log = logging.getLogger(__name__)


def begin_delete(core: client.CoreV1Api, namespace: str) -> None:
    """Ask for the namespace's deletion (everything in it goes with it).

    Its pods are then removed without a grace period: a throwaway control plane has
    nothing to shut down cleanly, and the 30 s default grace would otherwise keep the
    namespace (and its memory and CPU) on the host for half a minute.
    """
    try:
        core.delete_namespace(namespace, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise api_error(f"cannot delete namespace {namespace}", exc) from exc
    except Exception as exc:
        raise api_error(f"cannot delete namespace {namespace}", exc) from exc
    try:
        core.delete_collection_namespaced_pod(
            namespace, grace_period_seconds=0, _request_timeout=API_TIMEOUT
        )
    except Exception as exc:  # noqa: BLE001 - the namespace's deletion removes them anyway
        log.info("cannot force the pods of namespace %s away: %s", namespace, exc)


@dataclass
class HostNamespaces:
    """Namespace operations on the host for one run and worker."""

    api: client.ApiClient
    run_id: str
    worker: str

    @property
    def core(self) -> client.CoreV1Api:
        """``CoreV1Api`` on the host."""
        return client.CoreV1Api(self.api)

    def labels(self, name: str, spec_hash: str, slot: str) -> dict[str, str]:
        """The labels of a vcluster's namespace (and of every object the plugin makes)."""
        return {
            LABEL_MANAGED: "true",
            LABEL_RUN_ID: label_value(self.run_id),
            LABEL_WORKER: label_value(self.worker),
            LABEL_SPEC_HASH: spec_hash,
            LABEL_SLOT: slot_label(slot),
            LABEL_NAME: name,
        }

    def create(self, namespace: str, labels: Mapping[str, str], test: str) -> None:
        """Make the namespace; fails when it exists (names are unique per run)."""
        body = client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace,
                labels={**labels, LABEL_STATE: "active"},
                annotations={ANNOTATION_TEST: test},
            )
        )
        try:
            self.core.create_namespace(body, _request_timeout=API_TIMEOUT)
        except Exception as exc:
            raise api_error(f"cannot create host namespace {namespace}", exc) from exc

    def mark(self, namespace: str, state: str) -> None:
        """Label the namespace ``active``, ``paused`` or ``kept`` (what reapers go by)."""
        failure = f"cannot label namespace {namespace} {state}"
        self._patch(namespace, {"labels": {LABEL_STATE: state}}, failure)

    def annotate_test(self, namespace: str, test: str) -> None:
        """Name the test that now holds the cluster (a prepared one changes hands)."""
        failure = f"cannot annotate namespace {namespace} with its test"
        self._patch(namespace, {"annotations": {ANNOTATION_TEST: test}}, failure)

    def _patch(self, namespace: str, metadata: dict[str, object], failure: str) -> None:
        """Merge ``metadata`` into the namespace's; ``failure`` says what could not be done."""
        try:
            self.core.patch_namespace(
                namespace, {"metadata": metadata}, _request_timeout=API_TIMEOUT
            )
        except Exception as exc:
            raise api_error(failure, exc) from exc

    def claim_paused(self, spec_hash: str, slot: str, test: str) -> tuple[str, str] | None:
        """Find a paused vcluster of this slot and spec and claim it for this run.

        Returns ``(name, namespace)`` or ``None``. The claim carries the namespace's resource
        version, so two runs cannot claim the same cluster.
        """
        selector = (
            f"{LABEL_MANAGED}=true,{LABEL_SPEC_HASH}={spec_hash},{LABEL_SLOT}={slot_label(slot)}"
        )
        try:
            namespaces = self.core.list_namespace(
                label_selector=selector, _request_timeout=API_TIMEOUT
            ).items
        except Exception as exc:  # noqa: BLE001 - without a list, a new cluster is made
            log.warning("cannot look for paused vclusters: %s", exc)
            return None
        apps = client.AppsV1Api(self.api)
        for ns in namespaces:
            meta = ns.metadata
            if meta is None or meta.name is None or meta.deletion_timestamp is not None:
                continue
            name = (meta.labels or {}).get(LABEL_NAME)
            if not name:
                continue
            try:
                paused = is_paused(apps, name, meta.name)
            except Exception as exc:  # noqa: BLE001 - a cluster we cannot inspect is not claimed
                log.warning("cannot tell whether %s is paused: %s", name, exc)
                continue
            if not paused:
                continue
            try:
                self.take_over(meta.name, meta.resource_version or "", test)
            except Exception as exc:  # noqa: BLE001 - 409: another run claimed it first
                log.info("paused vcluster %s taken by someone else: %s", name, exc)
                continue
            return name, meta.name
        return None

    def take_over(self, namespace: str, resource_version: str, test: str) -> Mapping[str, str]:
        """Label a vcluster's namespace ``active`` for this run and ``test``, only if it is
        still at ``resource_version`` (else the API refuses with 409: someone else took it
        first); the headers of the answer (its ``Date`` is the host's time)."""
        patch = {
            "metadata": {
                "resourceVersion": resource_version,
                "labels": {
                    LABEL_RUN_ID: label_value(self.run_id),
                    LABEL_WORKER: label_value(self.worker),
                    LABEL_STATE: "active",
                },
                "annotations": {ANNOTATION_TEST: test},
            }
        }
        _, _, headers = self.core.patch_namespace_with_http_info(
            namespace, patch, _request_timeout=API_TIMEOUT
        )
        return dict(headers or {})

    def events(self, namespace: str, limit: int = 3) -> str:
        """The last warning (else any) events of a namespace, for error messages."""
        try:
            events = self.core.list_namespaced_event(namespace, _request_timeout=API_TIMEOUT).items
        except Exception:  # noqa: BLE001 - events only decorate an error message
            return ""
        events = [e for e in events if e.type == "Warning"] or events
        events.sort(key=lambda e: str(e.last_timestamp or e.event_time or ""))
        tail = [f"{e.reason}: {e.message}" for e in events[-limit:]]
        return (" | events: " + " / ".join(tail)) if tail else ""

    def begin_delete(self, namespace: str) -> None:
        """Ask for the namespace's deletion (see :func:`begin_delete`)."""
        begin_delete(self.core, namespace)

    def wait_gone(self, namespace: str, deadline: Deadline) -> None:
        """Wait until the namespace no longer exists."""

        def gone() -> tuple[bool, str]:
            try:
                ns = self.core.read_namespace(namespace, _request_timeout=API_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    return True, "gone"
                return False, f"{exc.status} {exc.reason}"
            phase = ns.status.phase if ns.status else "?"
            return False, f"namespace {namespace} is {phase}" + self.events(namespace)

        wait_until(f"namespace {namespace} to be deleted", gone, deadline)
