"""Images from the local Docker engine, loaded into the kind host's nodes without a registry.

:class:`ImageLoader` finds an image with the Docker SDK, asks each kind node's containerd
whether it already holds that image under that name with the same ID (the config digest,
which is what Docker calls the image ID), and streams ``docker save`` into ``ctr images
import`` on the nodes that do not. Pods in every vcluster on the host then run it with
``imagePullPolicy: Never`` (or ``IfNotPresent`` with a tag other than ``latest``).

Node containers are found by kind's label, so the loader needs no ``kind`` binary. This
module does not import pytest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar

import docker
import docker.errors

from pytest_vcluster.core.commands import find_tool, kill_group
from pytest_vcluster.core.errors import CommandError, HostError, VClusterError, WaitTimeoutError

__all__ = [
    "ImageLoadError",
    "ImageLoader",
    "KindNodes",
    "LoadResult",
    "containerd_name",
    "pipe_into",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The label kind puts on every container of a cluster, valued with the cluster's name.
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
#: The containerd namespace the kubelet's CRI uses.
CTR = ("ctr", "--namespace", "k8s.io")
#: How long one query inside a node (``ctr images ls``, ``ctr content get``) may take.
QUERY_TIMEOUT = 60.0
#: How long the stream may take to end once the command has exited.
FEED_JOIN_TIMEOUT = 30.0
#: How long a killed command and its stream may take to end.
REAP_TIMEOUT = 5.0

_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class ExecResult(Protocol):
    """What the Docker SDK's ``exec_run(..., demux=True)`` returns."""

    @property
    def exit_code(self) -> int | None: ...

    @property
    def output(self) -> tuple[bytes | None, bytes | None] | None: ...


class NodeContainer(Protocol):
    """The parts of a Docker SDK ``Container`` used here."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> dict[str, str]: ...

    def exec_run(self, cmd: list[str], *, demux: bool) -> ExecResult: ...


class LocalImage(Protocol):
    """The parts of a Docker SDK ``Image`` used here."""

    @property
    def id(self) -> str: ...

    @property
    def tags(self) -> list[str]: ...

    def save(self, *, named: str) -> Iterable[bytes]: ...


class _Images(Protocol):
    def get(self, name: str) -> LocalImage: ...


class _Containers(Protocol):
    def list(self, *, filters: dict[str, str]) -> list[NodeContainer]: ...


class DockerClient(Protocol):
    """The parts of ``docker.DockerClient`` used here (the SDK ships no type hints)."""

    @property
    def images(self) -> _Images: ...

    @property
    def containers(self) -> _Containers: ...

    def close(self) -> None: ...


class ImageLoadError(VClusterError):
    """An image could not be found locally or loaded into the kind host's nodes."""


@dataclass(frozen=True)
class LoadResult:
    """What :meth:`ImageLoader.load` did with one image."""

    #: The reference as asked for, e.g. ``myapp:dev``.
    ref: str
    #: The name pods see (containerd's normalized form), e.g. ``docker.io/library/myapp:dev``.
    name: str
    #: Docker's image ID (``sha256:...``), the config digest containerd keeps too.
    image_id: str
    #: Nodes the image was imported into.
    loaded: tuple[str, ...]
    #: Nodes that already held this name with this ID and were left alone.
    present: tuple[str, ...]
    seconds: float

    @property
    def skipped(self) -> bool:
        """True when every node already had the image: nothing was imported."""
        return not self.loaded

    def describe(self) -> str:
        """One line for logs and the terminal summary."""
        if self.skipped:
            return f"{self.ref} already on {len(self.present)} node(s) ({self.seconds:.1f}s check)"
        return f"{self.ref} loaded into {len(self.loaded)} node(s) in {self.seconds:.1f}s"


def containerd_name(ref: str) -> str:
    """``ref`` as containerd and the kubelet name it: registry, repository and tag in full.

    Docker shows ``myapp:dev`` for what containerd stores as ``docker.io/library/myapp:dev``.
    """
    name = ref.strip()
    if "@" in name:
        raise ImageLoadError(
            f"{ref!r} names an image by digest; load it by repository and tag (repo:tag), "
            f"the name a pod's image field gives"
        )
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first, slash, rest = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if first in ("docker.io", "index.docker.io"):
        return f"docker.io/{rest}" if "/" in rest else f"docker.io/library/{rest}"
    # Docker's rule: a first component with a dot, a port or "localhost" is a registry.
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _bounded(call: Callable[[], T], timeout: float, awaited: str) -> T:
    """``call()``, given up after ``timeout`` seconds.

    The Docker SDK's exec has no deadline of its own; the call runs in a daemon thread so a
    hung daemon cannot hold the test run (the thread is abandoned, not killed).
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"pytest-vcluster: {awaited}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise WaitTimeoutError(awaited, timeout, "no answer from the Docker daemon")
    if failure:
        raise failure[0]
    return outcome[0]


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")


def pipe_into(argv: Sequence[str], chunks: Iterable[bytes], timeout: float) -> str:
    """Run ``argv`` with ``chunks`` as its standard input; return its standard output.

    Raise :class:`CommandError` when it fails or outlives ``timeout``, and
    :class:`ImageLoadError` when producing the chunks failed (the export, not the import).
    Output goes to temporary files, so a chatty command cannot block on a full pipe while
    this thread writes. Interrupted (Ctrl-C) while it waits, it kills the command and stops
    streaming before the interrupt goes on.
    """
    command = list(argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a timeout kills the whole tree
        )
        feed_failure: list[BaseException] = []
        stop = threading.Event()

        def feed() -> None:
            stdin = process.stdin
            if stdin is None:  # pragma: no cover - stdin=PIPE always sets it
                return
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break  # the caller gave up: its lock is released, the stream must end
                    stdin.write(chunk)
            except BrokenPipeError:
                pass  # the command ended early: its exit code and stderr say why
            except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
                feed_failure.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    stdin.close()

        feeder = threading.Thread(target=feed, name="pytest-vcluster: image stream", daemon=True)
        try:
            feeder.start()
            process.wait(timeout=timeout)
            feeder.join(timeout=FEED_JOIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            _abandon(process, feeder, stop)
            raise CommandError(command, None, _read(err), timeout=timeout) from None
        except BaseException:
            # Ctrl-C: the command runs in its own session, so the terminal's signal never
            # reached it; an import must not go on after this process stopped waiting for it.
            _abandon(process, feeder, stop)
            raise
        if feed_failure:
            cause = feed_failure[0]
            raise ImageLoadError(
                f"exporting the image from Docker failed while streaming it into "
                f"{' '.join(command)}: {type(cause).__name__}: {cause}"
            ) from cause
        if process.returncode != 0:
            raise CommandError(command, process.returncode, _read(err) or _read(out))
        return _read(out)


def _abandon(
    process: subprocess.Popen[bytes], feeder: threading.Thread, stop: threading.Event
) -> None:
    """Kill ``process``'s group and end ``feeder``, each within a bounded wait."""
    stop.set()
    kill_group(process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=REAP_TIMEOUT)
    # The kill ends a write blocked on the full pipe (EPIPE), and the event stops the feeder
    # before its next write; one stuck in the export itself is a daemon thread, left behind.
    with contextlib.suppress(RuntimeError):  # interrupted before it started
        feeder.join(timeout=REAP_TIMEOUT)
    if not feeder.is_alive() and process.stdin is not None:
        # Closing under a writing feeder would wait for its write: only once it is gone.
        with contextlib.suppress(OSError):
            process.stdin.close()


#: Runs a command with a byte stream as stdin under a timeout (replaceable in tests).
Pipe = Callable[[Sequence[str], Iterable[bytes], float], str]


class KindNodes:
    """The node containers of one kind cluster and what their containerd holds."""

    def __init__(
        self,
        cluster: str,
        client: DockerClient,
        *,
        docker_binary: str = "docker",
        pipe: Pipe = pipe_into,
        query_timeout: float = QUERY_TIMEOUT,
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.docker_binary = docker_binary
        self.pipe = pipe
        self.query_timeout = query_timeout

    def containers(self) -> list[NodeContainer]:
        """Running node containers, sorted by name; a load balancer has no containerd."""
        found = self.client.containers.list(
            filters={"label": f"{KIND_CLUSTER_LABEL}={self.cluster}"}
        )
        nodes = [c for c in found if c.labels.get(KIND_ROLE_LABEL) != "external-load-balancer"]
        if not nodes:
            raise ImageLoadError(
                f"kind cluster {self.cluster!r} has no running node containers (none labelled "
                f"{KIND_CLUSTER_LABEL}={self.cluster}); check `kind get clusters` and "
                f"`docker ps`, or let pytest-vcluster create the host first"
            )
        return sorted(nodes, key=lambda c: str(c.name))

    def query(self, node: NodeContainer, argv: Sequence[str]) -> str:
        """Run ``argv`` in ``node`` through the SDK, bounded by :attr:`query_timeout`."""
        shown = [self.docker_binary, "exec", str(node.name), *argv]
        result = _bounded(
            lambda: node.exec_run(list(argv), demux=True),
            self.query_timeout,
            f"`{' '.join(shown)}`",
        )
        stdout, stderr = result.output or (None, None)
        if result.exit_code != 0:
            text = (stderr or stdout or b"").decode("utf-8", "replace")
            raise CommandError(shown, result.exit_code, text)
        return (stdout or b"").decode("utf-8", "replace")

    def image_ids(self, node: NodeContainer, name: str) -> frozenset[str]:
        """Config digests (image IDs) ``node`` holds under ``name``; empty when it has none."""
        listing = self.query(node, [*CTR, "images", "ls", f"name=={name}"])
        target = None
        for row in listing.splitlines()[1:]:
            fields = row.split()
            # REF TYPE DIGEST SIZE ...: the size holds a space, the first three do not.
            if len(fields) >= 3 and fields[0] == name:
                target = fields[2]
        if target is None:
            return frozenset()
        return self._config_digests(node, target, depth=0)

    def _config_digests(self, node: NodeContainer, digest: str, depth: int) -> frozenset[str]:
        text = self.query(node, [*CTR, "content", "get", digest])
        try:
            document = json.loads(text)
        except ValueError:
            return frozenset()
        if not isinstance(document, dict):
            return frozenset()
        config = document.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            return frozenset({config["digest"]})
        manifests = document.get("manifests")
        if depth == 0 and (document.get("mediaType") in _INDEX_TYPES or manifests):
            # A multi-platform image: any platform's config counts as the same image.
            found: set[str] = set()
            for entry in manifests if isinstance(manifests, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                    found |= self._config_digests(node, entry["digest"], depth + 1)
            return frozenset(found)
        return frozenset()

    def snapshotter(self, node: NodeContainer) -> str | None:
        """The snapshotter the kubelet's CRI unpacks with; ``None`` means containerd's default.

        ``ctr import`` unpacks for containerd's default snapshotter; a node whose CRI uses
        another one would not see the image unpacked where the kubelet looks for it.
        """
        try:
            dump = tomllib.loads(self.query(node, ["containerd", "config", "dump"]))
        except (VClusterError, tomllib.TOMLDecodeError) as exc:
            log.debug("cannot read containerd's config on %s: %s", node.name, exc)
            return None
        plugins = dump.get("plugins", {})
        for section, path in (
            ("io.containerd.grpc.v1.cri", ("containerd", "snapshotter")),  # containerd 1.x
            ("io.containerd.cri.v1.images", ("snapshotter",)),  # containerd 2.x
        ):
            value: Any = plugins.get(section, {})
            for key in path:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            if isinstance(value, str) and value:
                return value
        return None

    def import_image(self, node: NodeContainer, chunks: Iterable[bytes], timeout: float) -> str:
        """Stream a ``docker save`` archive into ``ctr images import`` on ``node``.

        This goes through ``docker exec -i`` rather than the SDK's hijacked exec socket: the
        CLI ends stdin cleanly on every transport (unix, TCP, TLS, ssh), returns the command's
        exit code as its own, and a timeout kills it like any subprocess; the SDK would need
        its private socket, a half-close and frame decoding by hand.
        """
        argv = [self.docker_binary, "exec", "-i", str(node.name), *CTR, "images", "import"]
        argv.append("--all-platforms")
        snapshotter = self.snapshotter(node)
        if snapshotter:
            argv += ["--snapshotter", snapshotter]
        argv.append("-")
        return self.pipe(argv, chunks, timeout)


def _docker_client(timeout: float) -> DockerClient:
    try:
        found: DockerClient = docker.from_env(timeout=int(timeout))
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise HostError(
            f"Docker is not reachable at {where} ({exc}); images are loaded from the local "
            f"Docker engine, so start it (or set DOCKER_HOST)"
        ) from exc
    return found


class ImageLoader:
    """Loads images from the local Docker engine into the nodes of one kind cluster."""

    def __init__(
        self,
        cluster: str,
        *,
        client_factory: Callable[[float], DockerClient] = _docker_client,
        docker_binary: str | None = None,
        pipe: Pipe = pipe_into,
        timeout: float = 600.0,
    ) -> None:
        self.cluster = cluster
        self.client_factory = client_factory
        self.docker_binary = docker_binary
        self.pipe = pipe
        self.timeout = timeout

    def load(self, ref: str) -> LoadResult:
        """Make ``ref`` usable by pods on every node; skip nodes that already hold it."""
        return self.load_all([ref])[0]

    def load_all(self, refs: Sequence[str]) -> list[LoadResult]:
        """:meth:`load` for each of ``refs``, with one Docker connection."""
        client = self.client_factory(QUERY_TIMEOUT)
        try:
            binary = self.docker_binary or find_tool("docker")
            nodes = KindNodes(self.cluster, client, docker_binary=binary, pipe=self.pipe)
            return [self._load(client, nodes, ref) for ref in refs]
        finally:
            client.close()

    def _image(self, client: DockerClient, ref: str) -> tuple[LocalImage, str]:
        """The local image and the tag of it ``docker save`` must name."""
        try:
            image = client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise ImageLoadError(
                f"image {ref!r} is not in the local Docker engine (see `docker images`); build "
                f"it with `docker build -t {ref} .` or tag an existing one with `docker tag`"
            ) from None
        except docker.errors.DockerException as exc:
            raise ImageLoadError(f"cannot look up image {ref!r} in Docker: {exc}") from exc
        wanted = containerd_name(ref)
        for tag in image.tags:
            if containerd_name(tag) == wanted:
                return image, tag
        raise ImageLoadError(
            f"{ref!r} is image {image.id} but none of its tags ({', '.join(image.tags) or 'none'}) "
            f"names it; give a repository:tag that `docker images` lists, since pods refer to "
            f"images by name"
        )

    def _load(self, client: DockerClient, nodes: KindNodes, ref: str) -> LoadResult:
        started = time.monotonic()
        image, tag = self._image(client, ref)
        name = containerd_name(ref)
        loaded: list[str] = []
        present: list[str] = []
        for node in nodes.containers():
            if image.id in nodes.image_ids(node, name):
                present.append(str(node.name))
                continue
            remaining = self.timeout - (time.monotonic() - started)
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"image {ref} loaded into every node",
                    self.timeout,
                    f"loaded into {loaded or 'no node'}, still to do: {node.name} and later ones",
                )
            nodes.import_image(node, image.save(named=tag), remaining)
            seen = nodes.image_ids(node, name)
            if image.id not in seen:
                raise ImageLoadError(
                    f"imported {ref} into node {node.name}, but its containerd holds {name} as "
                    f"{', '.join(sorted(seen)) or 'nothing'} instead of {image.id}; check "
                    f"`docker exec {node.name} ctr -n k8s.io images ls`"
                )
            loaded.append(str(node.name))
        result = LoadResult(
            ref=ref,
            name=name,
            image_id=image.id,
            loaded=tuple(loaded),
            present=tuple(present),
            seconds=round(time.monotonic() - started, 2),
        )
        log.info("image %s on kind host %s: %s", ref, self.cluster, result.describe())
        return result
