"""What a test asks for, resolved once: :class:`ClusterRequest` and the :class:`VClusterSpec`.

A :class:`ClusterRequest` is built per test at collection (marker, matrix version, the values
of ``vcluster_values`` when they can be known then) and kept on the item, together with the
:class:`VClusterSpec` of the test's first cluster. The same object travels to the lookahead
pool (which prepares that spec before the test starts), the factory and the fixtures; the spec
is built again at setup only when the test's ``vcluster_values`` turn out different from what
collection saw. Two specs with the same :attr:`VClusterSpec.spec_hash` are interchangeable
clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.markers import MANIFEST_SUFFIXES, MarkerArgs
from pytest_vcluster.settings.values import deep_merge, layer_values, spec_hash, user_layers
from pytest_vcluster.settings.versions import KubeVersion, resolve_tag

__all__ = [
    "ClusterRequest",
    "VClusterSpec",
    "chart_identity",
    "make_spec",
    "manifest_files",
    "may_pause",
]


@dataclass(frozen=True)
class VClusterSpec:
    """What to create: the final chart values and where the vcluster belongs.

    ``slot`` says who may reuse it later (``worker:gw0`` or ``test:<nodeid>:<index>``);
    ``test`` is the node id recorded as annotation; ``label`` is the readable part of the name.
    ``persistent`` clusters keep their store on a volume claim and may be paused.
    ``manifests`` are applied inside the cluster once it is ready, before a test gets it.
    ``recycle`` says whether the test may get a recycled cluster and its cluster may be reset
    and handed on afterwards; like the volume choice it is not part of the hash.
    """

    values: Mapping[str, Any]
    spec_hash: str
    slot: str
    test: str
    label: str
    version: KubeVersion | None = None
    ready_timeout: float = 300.0
    persistent: bool = True
    manifests: tuple[Path, ...] = ()
    recycle: bool = False

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


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The files ``paths`` name: a file itself, a directory's manifest files sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
        else:
            files.append(path)
    return files


def _manifests_digest(paths: Sequence[Path]) -> str:
    # By content: a cluster paused with yesterday's manifests must not serve today's.
    digest = hashlib.sha256()
    for path in manifest_files(paths):
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


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
    manifests: tuple[Path, ...] = (),
    recycle: bool = False,
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
    chart = chart_identity(settings)
    if manifests:
        chart["manifests"] = _manifests_digest(manifests)
    return VClusterSpec(
        values=merged,
        spec_hash=spec_hash(identity, chart),
        slot=slot,
        test=test,
        label=label,
        version=version,
        ready_timeout=ready_timeout if ready_timeout is not None else settings.ready_timeout,
        persistent=persistent,
        manifests=manifests,
        recycle=recycle,
    )


@dataclass(frozen=True)
class ClusterRequest:
    """The clusters one test asks for: its marker, matrix version and ``vcluster_values``.

    ``extra_values`` is ``None`` while the test's ``vcluster_values`` are not known (a fixture
    that can only run at setup); such a request cannot be prepared ahead. ``first`` is the
    spec of the test's first cluster, built once by :meth:`resolved` when it can be known at
    collection.
    """

    nodeid: str
    name: str
    marker: MarkerArgs = field(default_factory=MarkerArgs)
    version: KubeVersion | None = None
    extra_values: Mapping[str, Any] | None = field(default_factory=dict)
    first: VClusterSpec | None = field(default=None, compare=False)

    def resolved(self, settings: Settings) -> ClusterRequest:
        """This request with the spec of its first cluster, when the values are known."""
        if self.extra_values is None:
            return self
        return replace(self, first=self.spec(settings))

    def at_setup(
        self, version: KubeVersion | None, extra_values: Mapping[str, Any]
    ) -> ClusterRequest:
        """This request with what setup knows: the ``vcluster_version`` and ``vcluster_values``
        fixtures' values. Unchanged from collection, it is the same object (and spec)."""
        if version == self.version and extra_values == self.extra_values:
            return self
        return replace(self, version=version, extra_values=extra_values, first=None)

    def worker_spec(self, settings: Settings, worker: str) -> VClusterSpec:
        """The spec of the cluster this process shares (``vcluster_worker``) for this request.

        Its slot is the worker, so tests of the same version and values share it; it may be
        paused exactly when ``--vcluster-teardown`` may pause it.
        """
        return make_spec(
            settings,
            slot=f"worker:{worker}",
            test=f"worker {worker}",
            label=f"worker-{worker}",
            version=self.version,
            values=self._values(None),
            values_file=self.marker.values_file,
            persistent=may_pause(settings.teardown),
            manifests=self.marker.manifests,
        )

    def _values(self, override: Mapping[str, Any] | None) -> dict[str, Any]:
        merged: dict[str, Any] = dict(self.extra_values or {})
        for layer in (self.marker.values, override):
            if layer:
                merged = deep_merge(merged, layer)
        return merged

    def teardown_mode(self, settings: Settings) -> TeardownMode:
        """The marker's teardown mode, else the setting."""
        return self.marker.teardown or settings.teardown

    def persistent(self, settings: Settings) -> bool:
        """The marker's choice, else persistent exactly when teardown may pause the cluster."""
        if self.marker.persistent is not None:
            return self.marker.persistent
        return may_pause(self.teardown_mode(settings))

    def recycle(self, settings: Settings) -> bool:
        """The marker's choice, else ``--vcluster-recycle``."""
        if self.marker.recycle is not None:
            return self.marker.recycle
        return settings.recycle

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
        overrides = (version, values, values_file, timeout, persistent)
        if index == 0 and self.first is not None and all(arg is None for arg in overrides):
            return self.first
        return make_spec(
            settings,
            slot=f"test:{self.nodeid}:{index}",
            test=self.nodeid,
            label=self.name,
            version=version or self.version,
            values=self._values(values),
            values_file=values_file or self.marker.values_file,
            ready_timeout=timeout or self.marker.timeout,
            persistent=self.persistent(settings) if persistent is None else persistent,
            manifests=self.marker.manifests,
            recycle=self.recycle(settings),
        )
