"""Warm clusters: vclusters a run left running on the host, reset and proven clean, for a
later run to adopt instead of creating one.

With ``--vcluster-warm-pool N`` a run parks up to N clusters per spec at its end instead of
deleting them (see :meth:`~pytest_vcluster.cluster.lifecycle.VClusterManager.park`). Parking
writes the cluster's baseline inventory into a ConfigMap of its host namespace, then labels
the namespace ``warm`` with the host's time: the label comes last, so that a cluster is never
claimable without its baseline. A later run claims one with a label patch that carries the
namespace's resourceVersion, so two runs (or two workers) never claim the same cluster. The
claimer proves it against the stored baseline before any test sees it.

This module does not import pytest.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cluster.recycling import AUTH_CACHE_SECONDS, Baseline
from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import api_error
from pytest_vcluster.core.labels import (
    ANNOTATION_PARKED_AT,
    ANNOTATION_TEST,
    ANNOTATION_TESTS_BEFORE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_SPEC_HASH,
    LABEL_STATE,
    WARM_STATE,
)
from pytest_vcluster.host.liveness import host_date, utc_now
from pytest_vcluster.host.namespaces import HostNamespaces

__all__ = ["BASELINE_CONFIGMAP", "WarmClaim", "WarmClusters"]

log = logging.getLogger(__name__)

#: The ConfigMap in a warm cluster's host namespace that holds its baseline inventory.
BASELINE_CONFIGMAP = "pytest-vcluster-baseline"
_BASELINE_KEY = "baseline.json"
#: The host's ``Date`` has whole seconds: one more covers the rounding of both readings.
_DATE_ROUNDING = 1.0
#: The longest a claimer waits for the token caches to forget a warm cluster's last test
#: (a create takes longer than this on a 2-core host); a cluster parked more recently, say by
#: another worker of the same run a moment ago, is left for later.
MAX_HOLD = 10.0


@dataclass(frozen=True)
class WarmClaim:
    """A warm cluster this run now holds (its namespace is labelled ``active`` for this run).

    ``baseline`` is None when it could not be read back (``problem`` says why): the cluster
    cannot be proven, so the claimer deletes it. ``hold_seconds`` is how long the claimer
    must still wait before a test may use it: token caches remember the last test for
    :data:`~pytest_vcluster.cluster.recycling.AUTH_CACHE_SECONDS` after it was parked.
    """

    name: str
    namespace: str
    baseline: Baseline | None
    tests_before: int
    hold_seconds: float
    problem: str = ""


@dataclass(frozen=True)
class _Parked:
    name: str
    namespace: str
    resource_version: str
    annotations: dict[str, str]


@dataclass
class WarmClusters(HostNamespaces):
    """Parking and claiming warm clusters on the host, for one run and worker."""

    def _selector(self, spec_hash: str) -> str:
        return f"{LABEL_MANAGED}=true,{LABEL_SPEC_HASH}={spec_hash},{LABEL_STATE}={WARM_STATE}"

    def _listed(self, spec_hash: str) -> tuple[list[_Parked], datetime.datetime | None]:
        """The warm clusters of ``spec_hash``, longest parked first, and the host's time."""
        listed, _, headers = self.core.list_namespace_with_http_info(
            label_selector=self._selector(spec_hash), _request_timeout=API_TIMEOUT
        )
        found = []
        for ns in listed.items:
            meta = ns.metadata
            if meta is None or not meta.name or meta.deletion_timestamp is not None:
                continue
            name = (meta.labels or {}).get(LABEL_NAME)
            if name:
                annotations = dict(meta.annotations or {})
                found.append(
                    _Parked(str(name), meta.name, meta.resource_version or "", annotations)
                )
        # The longest parked first: its token caches are surely cold.
        found.sort(key=lambda parked: parked.annotations.get(ANNOTATION_PARKED_AT, ""))
        return found, host_date(headers)

    def count(self, spec_hash: str) -> int:
        """Warm clusters of ``spec_hash`` on the host now (any run's)."""
        try:
            return len(self._listed(spec_hash)[0])
        except Exception as exc:
            raise api_error("cannot count the warm vclusters on the host", exc) from exc

    def park(
        self, namespace: str, baseline: Baseline, tests_before: int, *, idle_for: float = 0.0
    ) -> None:
        """Store ``baseline`` in the namespace, then label it ``warm`` (claimable).

        ``idle_for`` is how many seconds ago the cluster's last test could last have used it:
        the parking time written is that moment, by the host's clock, which is what a claimer
        counts the token caches' memory from.
        """
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=BASELINE_CONFIGMAP, namespace=namespace),
            data={_BASELINE_KEY: json.dumps(baseline.to_dict(), separators=(",", ":"))},
        )
        try:
            try:
                self.core.create_namespaced_config_map(
                    namespace, body, _request_timeout=API_TIMEOUT
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Parked before by an earlier run: the baseline is the same cluster's.
                self.core.replace_namespaced_config_map(
                    BASELINE_CONFIGMAP, namespace, body, _request_timeout=API_TIMEOUT
                )
            _, _, headers = self.core.read_namespace_with_http_info(
                namespace, _request_timeout=API_TIMEOUT
            )
            parked_at = (host_date(headers) or utc_now()) - datetime.timedelta(seconds=idle_for)
            patch = {
                "metadata": {
                    "labels": {LABEL_STATE: WARM_STATE},
                    "annotations": {
                        ANNOTATION_PARKED_AT: parked_at.isoformat(),
                        ANNOTATION_TESTS_BEFORE: str(tests_before),
                        ANNOTATION_TEST: "",
                    },
                }
            }
            self.core.patch_namespace(namespace, patch, _request_timeout=API_TIMEOUT)
        except Exception as exc:
            raise api_error(f"cannot park vcluster namespace {namespace} warm", exc) from exc

    def claim(self, spec_hash: str, test: str, *, max_hold: float = MAX_HOLD) -> WarmClaim | None:
        """Claim a warm cluster of ``spec_hash`` for this run, or None if there is none that
        is usable within ``max_hold`` seconds (one parked moments ago, by another worker of
        the same run, is left for later: waiting out its token caches would take longer than
        a create).

        Never raises: without a list or a claim, the caller creates a cluster as usual.
        """
        try:
            candidates, host_now = self._listed(spec_hash)
        except Exception as exc:  # noqa: BLE001 - without a list, a new cluster is made
            log.warning("cannot look for warm vclusters: %s", exc)
            return None
        for parked in candidates:
            if _hold(parked.annotations.get(ANNOTATION_PARKED_AT), host_now) > max_hold:
                continue
            try:
                headers = self.take_over(parked.namespace, parked.resource_version, test)
            except Exception as exc:  # noqa: BLE001 - 409: another run or worker claimed it
                log.info("warm vcluster %s taken by someone else: %s", parked.name, exc)
                continue
            annotations = parked.annotations
            baseline, problem = self._read_baseline(parked.namespace)
            return WarmClaim(
                name=parked.name,
                namespace=parked.namespace,
                baseline=baseline,
                tests_before=_int(annotations.get(ANNOTATION_TESTS_BEFORE)),
                hold_seconds=_hold(annotations.get(ANNOTATION_PARKED_AT), host_date(headers)),
                problem=problem,
            )
        return None

    def _read_baseline(self, namespace: str) -> tuple[Baseline | None, str]:
        try:
            found = self.core.read_namespaced_config_map(
                BASELINE_CONFIGMAP, namespace, _request_timeout=API_TIMEOUT
            )
            return Baseline.from_dict(json.loads((found.data or {})[_BASELINE_KEY])), ""
        except Exception as exc:  # noqa: BLE001 - an unreadable baseline: the cluster goes
            return None, f"its stored baseline cannot be read: {exc}"


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _hold(parked_at: str | None, host_now: datetime.datetime | None) -> float:
    """Seconds until the token caches forgot the cluster's last test: all of
    :data:`AUTH_CACHE_SECONDS` when either time is unknown."""
    full = AUTH_CACHE_SECONDS + _DATE_ROUNDING
    if not parked_at or host_now is None:
        return full
    try:
        parked = datetime.datetime.fromisoformat(parked_at)
    except ValueError:
        return full
    if parked.tzinfo is None:
        parked = parked.replace(tzinfo=datetime.UTC)
    waited = (host_now - parked).total_seconds()
    return min(full, max(0.0, full - waited))
