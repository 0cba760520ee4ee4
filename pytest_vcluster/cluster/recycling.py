"""Recycling a virtual cluster: its baseline when first Ready, and the proven reset.

A cluster that would be deleted after its test may instead serve a later test of the same
spec. :func:`take_baseline` records, when the cluster first becomes Ready, an inventory of
every object inside it (see :mod:`~pytest_vcluster.cluster.inventory`) and the names of what
vcluster synced into its host namespace. :func:`reset_to_baseline` later deletes what a test
added (:func:`~pytest_vcluster.cluster.reset.reset`), waits until the host namespace holds
only the control plane's own pods, services and claims again, and proves both against the
baseline. Anything short of that proof (a baseline object changed or gone, anything left, a
reset past its budget, an error) says why, and the caller deletes the cluster instead.

This module does not import pytest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from pytest_vcluster.cluster.inventory import Inventory, diff, take_inventory
from pytest_vcluster.cluster.reset import (
    HostBaseline,
    HostCheck,
    ResetResult,
    host_baseline,
    host_namespace_clean,
    reset,
)
from pytest_vcluster.core.errors import RunInterruptedError, VClusterError
from pytest_vcluster.core.waits import Deadline

__all__ = [
    "AUTH_CACHE_SECONDS",
    "SETTLE_CHECKS",
    "Baseline",
    "RecycleResult",
    "reset_to_baseline",
    "take_baseline",
]

#: How many more inventories a baseline may take while the cluster still settles. Right after
#: Ready, controllers may still write status (CoreDNS's Deployment becoming Available, its
#: EndpointSlice): a baseline taken in the middle of that would make every reset look
#: changed. Two inventories in a row that agree are the baseline.
SETTLE_CHECKS = 3
#: Seconds between two inventories while the cluster settles.
SETTLE_INTERVAL = 0.5
#: How long a token the last test used may still be accepted after its ServiceAccount is
#: gone. Two caches trust a bearer token once checked: the virtual kube-apiserver keeps each
#: successful token authentication for 10 s (``TokenSuccessCacheTTL``, not a flag), and
#: vcluster's API proxy in front of it keeps each TokenReview it got for 5 s (``cacheTime`` in
#: its ``pkg/authentication/delegatingauthenticator``, v0.36), asking the apiserver again only
#: after that. Seen here: a token of a ServiceAccount deleted 7 s before was still accepted,
#: and after the account was made again under the same name it authenticated as that new
#: account (403, not 401) until 15 s after its last use. A recycled cluster is handed over
#: only once both caches forgot the last test; the margin covers clock skew and request time.
AUTH_CACHE_SECONDS = 10.0 + 5.0 + 0.5


@dataclass(frozen=True)
class Baseline:
    """What a cluster held when it first became Ready: every object inside it, and the names
    of its host namespace's pods, services and claims. ``seconds`` is what taking it cost."""

    inventory: Inventory
    host: HostBaseline
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy, read back by :meth:`from_dict` (a warm cluster's baseline
        waits on the host for the run that adopts it)."""
        return {
            "inventory": self.inventory.to_dict(),
            "host": {
                "namespace": self.host.namespace,
                "names": {kind: sorted(names) for kind, names in self.host.names.items()},
            },
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """The baseline :meth:`to_dict` wrote; raises ``ValueError`` for anything else."""
        try:
            host = data["host"]
            names = {str(k): frozenset(map(str, v)) for k, v in dict(host["names"]).items()}
            return cls(
                Inventory.from_dict(data["inventory"]),
                HostBaseline(str(host["namespace"]), names),
                float(data["seconds"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a baseline written by to_dict: {exc}") from exc


@dataclass(frozen=True)
class RecycleResult:
    """Whether a reset brought the cluster back to its baseline, proven, and why not.

    ``seconds`` is the reset's work: deletes, waits, the proving inventory and the host
    check. ``auth_cache_seconds`` is the hold after it, until no token of the last test can
    be accepted any more (:data:`AUTH_CACHE_SECONDS`).
    """

    recycled: bool
    reasons: tuple[str, ...]
    seconds: float
    reset: ResetResult | None = None
    host: HostCheck | None = None
    #: Seconds waited at the end for vcluster's authentication cache to forget the last test.
    auth_cache_seconds: float = 0.0
    #: When (monotonic) a principal of the last test could last have used the cluster: what
    #: the token caches count from. Set for a recycled cluster only.
    last_use: float | None = None

    def phases(self) -> dict[str, float]:
        """Seconds per phase, for the records: deleting, waiting until gone, the proving
        inventory, and the host namespace check."""
        found: dict[str, float] = {}
        if self.reset is not None:
            found.update(
                delete=self.reset.delete_seconds,
                wait=self.reset.wait_seconds,
                verify=self.reset.verify_seconds,
            )
        if self.host is not None:
            found["host"] = self.host.seconds
        if self.auth_cache_seconds:
            found["auth_cache"] = self.auth_cache_seconds
        return {phase: round(seconds, 3) for phase, seconds in found.items()}


def take_baseline(
    api_client: client.ApiClient,
    host_api: client.ApiClient,
    namespace: str,
    *,
    timeout: float,
    settle_checks: int = SETTLE_CHECKS,
    interval: float = SETTLE_INTERVAL,
    stop: threading.Event | None = None,
) -> Baseline:
    """The inventory of a cluster that just became Ready, once it stopped changing by itself.

    Raises :class:`~pytest_vcluster.core.errors.VClusterError` if no complete inventory could
    be taken, or if the cluster did not settle within ``settle_checks`` more inventories: a
    baseline that moves would make every later reset fail its proof.
    """
    started = time.monotonic()
    deadline = Deadline(timeout, stop=stop)
    previous = take_inventory(api_client, timeout=deadline.remaining, stop=stop)
    settled = previous.complete and settle_checks == 0
    for _ in range(settle_checks):
        time.sleep(min(interval, max(deadline.remaining, 0.0)))
        now = take_inventory(api_client, timeout=deadline.remaining, stop=stop)
        settled = previous.complete and now.complete and diff(previous, now).clean
        previous = now
        if settled:
            break
    if not settled:
        unlisted = ", ".join(sorted(previous.unlisted)) or "none"
        raise VClusterError(
            f"the cluster kept changing by itself after Ready ({settle_checks + 1} inventories, "
            f"resources not listed: {unlisted}): no baseline to recycle it against, so it is "
            "deleted after its test"
        )
    host = host_baseline(host_api, namespace, timeout=max(deadline.remaining, 1.0))
    return Baseline(previous, host, time.monotonic() - started)


def reset_to_baseline(
    api_client: client.ApiClient,
    host_api: client.ApiClient,
    namespace: str,
    baseline: Baseline,
    *,
    timeout: float,
    stop: threading.Event | None = None,
    auth_cache: float = AUTH_CACHE_SECONDS,
    idle_since: float | None = None,
) -> RecycleResult:
    """Reset the cluster to ``baseline`` and prove it, inside and on the host, then wait until
    the API server and vcluster's proxy forgot every token of the last test (``auth_cache``
    seconds after the last moment one of its principals could have used the cluster: the
    reset's start, or when its pods were gone from the host).

    ``idle_since`` (monotonic) is when the cluster was last used, if known to be earlier than
    the reset (a warm cluster: when it was parked); it counts only when the reset found
    nothing to delete.

    Never raises for a cluster that cannot be recycled: the result says why. Raises
    :class:`~pytest_vcluster.core.errors.RunInterruptedError` when ``stop`` is set.
    """
    started = time.monotonic()
    deadline = Deadline(timeout, stop=stop)
    host: HostCheck | None = None
    try:
        inside = reset(api_client, baseline.inventory, timeout=timeout, stop=stop)
        if inside.clean:
            host = host_namespace_clean(
                host_api,
                namespace,
                baseline.host,
                # What is left of the budget, but a synced pod needs a moment to go.
                timeout=max(deadline.remaining, 1.0),
                # Only pods vcluster already deletes: the test's, gone from the virtual cluster.
                force_after=0,
                interval=0.25,
            )
    except RunInterruptedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means: delete it, as without recycling
        reason = str(exc) if isinstance(exc, VClusterError) else f"{type(exc).__name__}: {exc}"
        return RecycleResult(False, (reason,), time.monotonic() - started)
    seconds = time.monotonic() - started
    if not inside.clean:
        reasons = inside.reasons
    elif host is not None and not host.clean:
        reasons = host.reasons
    elif seconds > timeout:
        reasons = (
            f"the reset took {seconds:.1f}s, past its budget of {timeout:g}s "
            "(--vcluster-reset-timeout)",
        )
    else:
        reasons = ()
    if reasons:
        return RecycleResult(False, tuple(reasons), seconds, inside, host)
    # The test itself stopped using the cluster before the reset started; its pods, if any,
    # only once the host namespace was clean (which is now).
    ran_pods = any((key.group, key.kind) == ("", "Pod") for key in inside.deleted)
    last_use = time.monotonic() if ran_pods else started
    if idle_since is not None and not inside.deleted:
        last_use = min(last_use, idle_since)
    waited = _wait_until(last_use + auth_cache, stop)
    return RecycleResult(
        True, (), seconds, inside, host, auth_cache_seconds=round(waited, 3), last_use=last_use
    )


def _wait_until(moment: float, stop: threading.Event | None) -> float:
    """Sleep until ``moment`` (monotonic); the seconds slept. Raises if ``stop`` is set."""
    started = time.monotonic()
    left = moment - started
    if left > 0:
        if stop is not None:
            if stop.wait(left):
                raise RunInterruptedError("stopped recycling a vcluster: run interrupted")
        else:
            time.sleep(left)
    return time.monotonic() - started
