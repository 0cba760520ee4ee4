"""Per-process building blocks behind the fixtures: the worker pool and the factory.

These glue :mod:`~pytest_vcluster.host.kind` and :mod:`~pytest_vcluster.cluster.lifecycle`
together the way the fixtures need them, without importing pytest, so ``plugin.py`` stays
wiring only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.lifecycle import decide_teardown
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.stats import Stats
from pytest_vcluster.pool.lookahead import ClusterPool
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.markers import check_persistent, check_timeout, check_values
from pytest_vcluster.settings.request import ClusterRequest
from pytest_vcluster.settings.versions import KubeVersion, parse_version

__all__ = ["VClusterFactory", "WorkerPool"]

log = logging.getLogger(__name__)


@dataclass
class WorkerPool:
    """vclusters shared by all tests of one process, one per distinct spec (version, values).

    The first test that asks for a spec takes its cluster from the lookahead pool, like a
    ``vcluster`` does (progress lines, setup statistics); later tests of that spec share it.
    """

    pool: ClusterPool
    settings: Settings
    worker: str
    stats: Stats
    _handles: dict[str, VCluster] = field(default_factory=dict)

    def get(self, request: ClusterRequest) -> VCluster:
        """The shared vcluster for this test's request, created on first use."""
        spec = request.worker_spec(self.settings, self.worker)
        handle = self._handles.get(spec.spec_hash)
        if handle is not None:
            self.stats.record_setup(request.nodeid, self.worker, 0.0, "shared")
            return handle
        taken = self.pool.take(spec.slot + ":" + spec.spec_hash, spec, self.settings.teardown)
        self.stats.record_setup(request.nodeid, self.worker, taken.wait_seconds, taken.source)
        self._handles[spec.spec_hash] = taken.handle
        return taken.handle

    def close(self, *, failed: bool) -> None:
        """Tear every shared vcluster down according to ``--vcluster-teardown``."""
        action = decide_teardown(self.settings.teardown, failed)
        with interrupts.shielded():
            for handle in self._handles.values():
                self.pool.release(handle, action)
        self._handles.clear()


@dataclass
class VClusterFactory:
    """Creates vclusters for one test; all of them are torn down when the test ends.

    Call it with keyword arguments to override the test's marker: ``version``, ``values``,
    ``values_file``, ``timeout``, ``persistent``. The ``vcluster`` fixture is the factory's
    first call, which the lookahead pool may have prepared before the test started.
    """

    pool: ClusterPool
    settings: Settings
    request: ClusterRequest
    worker: str
    stats: Stats
    created: list[VCluster] = field(default_factory=list)

    @property
    def teardown_mode(self) -> TeardownMode:
        """The marker's teardown mode, else the setting."""
        return self.request.teardown_mode(self.settings)

    def __call__(
        self,
        *,
        version: str | KubeVersion | None = None,
        values: Mapping[str, Any] | None = None,
        values_file: str | Path | None = None,
        timeout: float | None = None,
        persistent: bool | None = None,
    ) -> VCluster:
        """Create (or resume) a vcluster and return it once it is ready."""
        option = "vcluster_factory(version=...)"
        parsed = version if isinstance(version, KubeVersion) or version is None else None
        if version is not None and parsed is None:
            parsed = parse_version(version, option=option)
        index = len(self.created)
        spec = self.request.spec(
            self.settings,
            index=index,
            version=parsed,
            values=check_values(values, "vcluster_factory(values=...)"),
            values_file=Path(values_file) if values_file else None,
            timeout=check_timeout(timeout, "vcluster_factory(timeout=...)"),
            persistent=check_persistent(persistent, "vcluster_factory(persistent=...)"),
        )
        key = self.request.nodeid if index == 0 else f"{self.request.nodeid}#{index}"
        taken = self.pool.take(key, spec, self.teardown_mode)
        if index == 0:
            self.stats.record_setup(
                self.request.nodeid, self.worker, taken.wait_seconds, taken.source
            )
        self.created.append(taken.handle)
        return taken.handle

    def close(self, *, failed: bool) -> None:
        """Tear down every vcluster this factory made, newest first, in the background."""
        action = decide_teardown(self.teardown_mode, failed)
        with interrupts.shielded():
            for handle in reversed(self.created):
                self.pool.release(handle, action)
        self.created.clear()
