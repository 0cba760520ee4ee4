"""The host as the plugin sees it: acquire, release, the header line and the summary line.

:class:`Host` is what the rest of the plugin uses; two classes implement it, so no other
module asks whether the host is a kind cluster or an existing one:

* :class:`SharedKindHost`: the kind cluster, shared by every pytest process on this machine
  through machine-wide leases (:mod:`~pytest_vcluster.host.locks`). The first process that
  needs it creates it; the last live one to leave deletes it, if a pytest-vcluster run
  created it and it holds no paused or kept vclusters. An xdist controller :meth:`holds
  <Host.hold>` it for its workers, so it outlives a worker that finishes early.
* :class:`ExistingHost`: a cluster given by kubeconfig; checked, never created or deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import HostError, VClusterError
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.processes import ProcessId
from pytest_vcluster.core.progress import Progress
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host.images import ImageLoader, LoadResult
from pytest_vcluster.host.kind import (
    HostInfo,
    KindHost,
    check_docker,
    connect_existing_host,
    host_api_client,
)
from pytest_vcluster.host.locks import HostLeases, HostRecord, Lease
from pytest_vcluster.host.readiness import host_checks, wait_host_ready
from pytest_vcluster.host.reaper import count_preserved
from pytest_vcluster.settings.config import Settings, describe_host

__all__ = ["ExistingHost", "Host", "SharedKindHost", "ensure_host_ready", "make_host"]

log = logging.getLogger(__name__)


class Host(Protocol):
    """The host cluster for one pytest process."""

    #: The command-line tools this host needs (shown in the report header).
    tools: tuple[str, ...]

    def acquire(self) -> HostInfo:
        """Make the host usable by this process (creating it if needed)."""
        ...

    def release(self) -> None:
        """This process is done with the host; the last one out cleans up."""
        ...

    def hold(self) -> None:
        """Keep the host for this run without using it (xdist controller)."""
        ...

    def header_line(self) -> str:
        """The host line of pytest's report header."""
        ...

    def summary_line(self) -> str | None:
        """What this process did with the host, for the terminal summary."""
        ...


class ExistingHost:
    """A cluster given by kubeconfig and context: used as it is, left as it was."""

    tools: tuple[str, ...] = ("vcluster", "helm")

    def __init__(self, settings: Settings) -> None:
        if settings.host_kubeconfig is None:
            raise ValueError("ExistingHost needs settings.host_kubeconfig")
        self.settings = settings
        self.kubeconfig = settings.host_kubeconfig
        self.context = settings.host_context
        self.timeout = settings.host_timeout
        #: What each readiness check saw when the host was acquired.
        self.readiness: list[str] = []

    def acquire(self) -> HostInfo:
        """Check that the cluster answers and that pods there can use its API and DNS."""
        info = connect_existing_host(self.kubeconfig, self.context)
        self.readiness = ensure_host_ready(info, self.timeout)
        return info

    def release(self) -> None:
        """Nothing to do: the cluster is not ours."""

    def hold(self) -> None:
        """Nothing to do: the cluster is not ours."""

    def header_line(self) -> str:
        """``existing host, kubeconfig ..., context ...``."""
        return describe_host(self.settings)

    def summary_line(self) -> str | None:
        """Nothing happened to the host itself."""
        return None


class SharedKindHost:
    """The kind host shared by every pytest process on this machine."""

    tools: tuple[str, ...] = ("kind", "vcluster", "helm")

    def __init__(
        self,
        settings: Settings,
        *,
        state_root: Path,
        run_id: str,
        worker: str,
        runner_factory: Callable[[], CommandRunner] = CommandRunner,
        docker_check: Callable[[], None] = check_docker,
        preserved: Callable[[HostInfo], int] | None = None,
        progress: Progress | None = None,
        ready_check: Callable[[HostInfo], list[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.worker = worker
        self.runner_factory = runner_factory
        self.docker_check = docker_check
        self.preserved = preserved or _count_preserved
        self.progress = progress or Progress()
        self.ready_check = ready_check or (
            lambda info: ensure_host_ready(info, settings.host_timeout, progress=self.progress)
        )
        self.leases = HostLeases(
            state_root, settings.host_name, lock_timeout=settings.host_timeout + 120
        )
        self.process = ProcessId.current()
        self._outcome: str | None = None
        #: What each readiness check saw when the host was acquired.
        self.readiness: list[str] = []
        self._holding = False
        self._loaded: list[LoadResult] = []

    @property
    def name(self) -> str:
        """The kind cluster's name."""
        return self.settings.host_name

    def _kind(self) -> KindHost:
        return KindHost(
            self.runner_factory(),
            find_tool("kind", self.settings.kind_binary),
            self.name,
            self.leases.directory,
            node_image=self.settings.node_image,
            timeout=self.settings.host_timeout,
        )

    def _lease(self) -> Lease:
        return Lease(self.process.pid, self.process.started, self.run_id, self.worker)

    def acquire(self) -> HostInfo:
        """Create the host unless it exists, and lease it for this process."""
        with self.leases.locked(self.progress) as record:
            if record.error and record.error_run == self.run_id:
                # Another process of this run failed to create it: fail alike, at once.
                raise HostError(record.error)
            kind = self._kind()
            self.docker_check()
            if not kind.exists():
                self._create(kind, record)
            kind.export_kubeconfig()
            created_here = record.created and record.created_by_run == self.run_id
            info = kind.info(created_here)
            # Under the lock: one process waits for a new host, the others find it ready.
            try:
                self.readiness = self.ready_check(info)
            except BaseException:
                if created_here and not record.leases:
                    # Nobody will use a host that never became ready: it goes as it came.
                    self._remove_partial(kind)
                    record.created = False
                    record.created_by_run = None
                raise
            record.leases[self.process.key] = self._lease()
        if self.settings.load_images:
            self._load_images()
        return info

    def _load_images(self) -> None:
        """Load ``--vcluster-load-images`` once per process; nodes that hold them are skipped."""
        loader = ImageLoader(self.name, timeout=self.settings.host_timeout)
        try:
            # Under the host lock: concurrent imports of the same blobs into one containerd can
            # fail on its ingest locks, and after the first process the others skip by ID.
            with self.leases.locked():
                self._loaded = loader.load_all(self.settings.load_images)
        except BaseException:
            # This process will not use the host: drop its lease now (the last user out
            # deletes a host this run created), and report the load failure.
            try:
                self.release()
            except VClusterError as exc:
                log.warning("could not release the kind host %s: %s", self.name, exc)
            raise

    def _create(self, kind: KindHost, record: HostRecord) -> None:
        started = time.monotonic()
        # Recorded first: if this process is killed while kind runs, the next one still
        # knows that pytest-vcluster made this cluster and may delete it.
        record.created = True
        record.created_by_run = self.run_id
        record.error = record.error_run = None
        self.leases.save(record)
        image = self.settings.node_image or "kind's default node image"
        try:
            with self.progress.waiting(f"kind host {self.name!r} to be created from {image}"):
                kind.create()
        except BaseException as exc:
            # Ctrl-C or a failure halfway leaves a node container behind: nobody uses it yet.
            self._remove_partial(kind)
            record.created = False
            record.created_by_run = None
            if isinstance(exc, VClusterError):
                record.error, record.error_run = str(exc), self.run_id
            raise
        record.create_seconds = round(time.monotonic() - started, 1)

    def _remove_partial(self, kind: KindHost) -> None:
        # A `kind create` stopped halfway leaves Docker still starting its node container, and a
        # delete racing that start can leave the container behind: delete until kind no
        # longer lists the cluster (seen on a loaded machine with a large node image).
        deadline = Deadline(60)
        try:
            while kind.exists() and not deadline.expired:
                try:
                    kind.delete()
                except VClusterError:
                    if deadline.expired:
                        raise
                time.sleep(1)
            if kind.exists():
                log.warning("kind still lists %s after deleting it for 60s", self.name)
        except BaseException as exc:  # noqa: BLE001 - the original failure is the one to report
            log.warning(
                "could not remove the half-created kind host %s (%s); remove it with "
                "`kind delete cluster --name %s`",
                self.name,
                exc,
                self.name,
            )

    def hold(self) -> None:
        """Lease the host for this run without creating it (the workers do that)."""
        with self.leases.locked() as record:
            record.leases[self.process.key] = self._lease()
        self._holding = True

    def release(self) -> None:
        """Drop this process's lease; the last live lease deletes the host if it may."""
        with self.leases.locked() as record:
            record.leases.pop(self.process.key, None)
            others = len(record.leases)
            created_here = record.created and record.created_by_run == self.run_id
            origin = (
                f"created by this run in {record.create_seconds}s"
                if created_here
                else "created by an earlier run"
                if record.created
                else "existed before pytest-vcluster used it"
            )
            if not record.created:
                fate = "left in place"
            elif others:
                fate = f"left in place for {others} other live process(es) using it"
            else:
                fate = self._finish(record)
            self._outcome = f"kind host {self.name!r}: {origin}; {fate}"

    def _finish(self, record: HostRecord) -> str:
        """The last user left: delete the host unless something says keep it."""
        if self.settings.keep_host:
            return "kept (--vcluster-keep-host)"
        kind = self._kind()
        try:
            preserved = self.preserved(kind.info(True))
        except VClusterError as exc:
            return f"kept: cannot tell whether it holds paused, kept or warm vclusters ({exc})"
        if preserved:
            return (
                f"kept: it holds {preserved} paused, kept or warm vcluster(s); remove it with "
                f"`kind delete cluster --name {self.name}`"
            )
        try:
            kind.delete()
        except VClusterError as exc:
            return f"could not be deleted: {exc}"
        record.created = False
        record.created_by_run = None
        return "deleted (last user)"

    def header_line(self) -> str:
        """``kind host 'NAME' (node image: ...)``."""
        return describe_host(self.settings)

    def summary_line(self) -> str | None:
        """Created by whom, and deleted, kept or left for other processes."""
        if self._outcome is None and not self._holding:
            record = self.leases.read()
            if record.error and record.error_run == self.run_id:
                return f"kind host {self.name!r}: could not be created: {record.error}"
        if self._outcome and self._loaded:
            images = "; ".join(result.describe() for result in self._loaded)
            return f"{self._outcome}; images: {images}"
        return self._outcome


def ensure_host_ready(
    info: HostInfo, timeout: float, *, progress: Progress | None = None
) -> list[str]:
    """Wait until pods on the host reach its API, DNS and storage (see
    :mod:`~pytest_vcluster.host.readiness`); raise :class:`HostError` when they do not in time."""
    try:
        api = host_api_client(info.kubeconfig, info.context)
    except Exception as exc:
        raise HostError(f"cannot load the host's kubeconfig {info.kubeconfig}: {exc}") from exc
    waiting = progress.waiting if progress is not None else Progress().waiting
    try:
        with waiting(f"the host {info.name!r} to be ready for vclusters"):
            return wait_host_ready(
                host_checks(api),
                Deadline(timeout, stop=interrupts.cancel),
                where=info.describe(),
            )
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _count_preserved(info: HostInfo) -> int:
    api = host_api_client(info.kubeconfig, info.context)
    try:
        return count_preserved(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def make_host(
    settings: Settings,
    *,
    state_root: Path,
    run_id: str,
    worker: str,
    progress: Progress | None = None,
) -> Host:
    """The :class:`Host` these settings ask for."""
    if settings.existing_host:
        return ExistingHost(settings)
    return SharedKindHost(
        settings, state_root=state_root, run_id=run_id, worker=worker, progress=progress
    )
