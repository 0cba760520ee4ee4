"""What a test asks for, resolved once: :class:`ClusterRequest` and the :class:`VClusterSpec`.

A :class:`ClusterRequest` is built per test at collection (marker, matrix version, the values
of ``vcluster_values`` when they can be known then) and kept on the item; the lookahead pool
prepares clusters from it before the test starts, and the fixtures turn it into the same
:class:`VClusterSpec` at setup. Two specs with the same :attr:`VClusterSpec.spec_hash` are
interchangeable clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.markers import MarkerArgs
from pytest_vcluster.settings.values import deep_merge, layer_values, spec_hash, user_layers
from pytest_vcluster.settings.versions import KubeVersion, resolve_tag

__all__ = ["ClusterRequest", "VClusterSpec", "chart_identity", "make_spec", "may_pause"]


@dataclass(frozen=True)
class VClusterSpec:
    """What to create: the final chart values and where the vcluster belongs.

    ``slot`` says who may reuse it later (``worker:gw0`` or ``test:<nodeid>:<index>``);
    ``test`` is the node id recorded as annotation; ``label`` is the readable part of the name.
    ``persistent`` clusters keep their store on a volume claim and may be paused.
    """

    values: Mapping[str, Any]
    spec_hash: str
    slot: str
    test: str
    label: str
    version: KubeVersion | None = None
    ready_timeout: float = 300.0
    persistent: bool = True

    def for_test(self, slot: str, test: str) -> VClusterSpec:
        """The same cluster recorded for another test (a prepared cluster taken by it)."""
        return replace(self, slot=slot, test=test)


def may_pause(mode: TeardownMode) -> bool:
    """True when a teardown mode can leave a cluster paused (it needs a persistent store)."""
    return mode in (TeardownMode.PAUSE, TeardownMode.PAUSE_ON_FAILURE)


def chart_identity(settings: Settings) -> dict[str, str | None]:
    """Which chart a spec is rendered from (part of the spec hash)."""
    return {
        "repo": settings.chart_repo,
        "version": settings.chart_version,
        "local": str(settings.local_chart_dir) if settings.local_chart_dir else None,
    }


def make_spec(
    settings: Settings,
    *,
    slot: str,
    test: str,
    label: str,
    version: KubeVersion | None = None,
    values: Mapping[str, Any] | None = None,
    values_file: Path | None = None,
    ready_timeout: float | None = None,
    persistent: bool = True,
) -> VClusterSpec:
    """Build a :class:`VClusterSpec` from settings and per-test (marker) choices."""
    tag = resolve_tag(version, settings.version_map) if version is not None else None

    user = user_layers(values_files=settings.values_files, values_file=values_file, values=values)

    def layered(ephemeral: bool) -> dict[str, Any]:
        return layer_values(user, tag=tag, fast_start=settings.fast_start, ephemeral=ephemeral)

    merged = layered(ephemeral=not persistent)
    # The hash leaves the volume choice out: a paused (persistent) cluster may serve a test
    # that would otherwise get an emptyDir one, as it did before that test's teardown changed.
    identity = merged if persistent else layered(ephemeral=False)
    return VClusterSpec(
        values=merged,
        spec_hash=spec_hash(identity, chart_identity(settings)),
        slot=slot,
        test=test,
        label=label,
        version=version,
        ready_timeout=ready_timeout if ready_timeout is not None else settings.ready_timeout,
        persistent=persistent,
    )


@dataclass(frozen=True)
class ClusterRequest:
    """The clusters one test asks for: its marker, matrix version and ``vcluster_values``.

    ``extra_values`` is ``None`` while the test's ``vcluster_values`` are not known (a fixture
    that can only run at setup); such a request cannot be prepared ahead.
    """

    nodeid: str
    name: str
    marker: MarkerArgs = field(default_factory=MarkerArgs)
    version: KubeVersion | None = None
    extra_values: Mapping[str, Any] | None = field(default_factory=dict)

    def teardown_mode(self, settings: Settings) -> TeardownMode:
        """The marker's teardown mode, else the setting."""
        return self.marker.teardown or settings.teardown

    def persistent(self, settings: Settings) -> bool:
        """The marker's choice, else persistent exactly when teardown may pause the cluster."""
        if self.marker.persistent is not None:
            return self.marker.persistent
        return may_pause(self.teardown_mode(settings))

    def spec(
        self,
        settings: Settings,
        *,
        index: int = 0,
        version: KubeVersion | None = None,
        values: Mapping[str, Any] | None = None,
        values_file: Path | None = None,
        timeout: float | None = None,
        persistent: bool | None = None,
    ) -> VClusterSpec:
        """The spec of this test's ``index``-th cluster; keyword arguments override the marker."""
        merged: dict[str, Any] = dict(self.extra_values or {})
        for layer in (self.marker.values, values):
            if layer:
                merged = deep_merge(merged, layer)
        return make_spec(
            settings,
            slot=f"test:{self.nodeid}:{index}",
            test=self.nodeid,
            label=self.name,
            version=version or self.version,
            values=merged,
            values_file=values_file or self.marker.values_file,
            ready_timeout=timeout or self.marker.timeout,
            persistent=self.persistent(settings) if persistent is None else persistent,
        )
