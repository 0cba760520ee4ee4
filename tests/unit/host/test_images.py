"""Loading local images into kind nodes, with a fake Docker SDK and a fake ``docker exec -i``."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import docker.errors
import pytest
from conftest import FakeTool
from test_kind import FakeKind, leases, shared

from pytest_vcluster.core.errors import CommandError, ConfigError, HostError, WaitTimeoutError
from pytest_vcluster.host import acquire as hosts
from pytest_vcluster.host.images import (
    ImageLoader,
    ImageLoadError,
    KindNodes,
    LoadResult,
    containerd_name,
    pipe_into,
)
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.settings.config import resolve_settings

IMAGE_ID = "sha256:" + "a" * 64
OTHER_ID = "sha256:" + "b" * 64
MANIFEST = "sha256:" + "c" * 64
NAME = "docker.io/library/myapp:dev"
CONFIG_DUMP = '[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "native"\n'


@dataclass
class Exec:
    exit_code: int
    output: tuple[bytes | None, bytes | None]


@dataclass
class FakeNode:
    """A kind node container whose containerd holds ``images`` (name -> config digest)."""

    name: str
    images: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    hang: threading.Event | None = None

    def exec_run(self, cmd: list[str], *, demux: bool) -> Exec:
        assert demux
        self.calls.append(cmd)
        if self.hang is not None:
            self.hang.wait(5)
        if cmd[:3] == ["containerd", "config", "dump"]:
            return Exec(0, (CONFIG_DUMP.encode(), None))
        assert cmd[:3] == ["ctr", "--namespace", "k8s.io"], cmd
        if cmd[3:5] == ["images", "ls"]:
            name = cmd[5].removeprefix("name==")
            rows = ["REF TYPE DIGEST SIZE PLATFORMS LABELS"]
            if name in self.images:
                rows.append(f"{name} application/x {MANIFEST} 2.0 MiB linux/amd64 -")
            return Exec(0, ("\n".join(rows).encode(), None))
        if cmd[3:5] == ["content", "get"]:
            config = next(iter(self.images.values()))
            return Exec(0, (json.dumps({"config": {"digest": config}}).encode(), None))
        return Exec(1, (None, b"unknown command"))


@dataclass
class FakeImage:
    id: str
    tags: list[str]
    saved: list[str] = field(default_factory=list)

    def save(self, *, named: str) -> Iterator[bytes]:
        self.saved.append(named)
        yield b"tar-"
        yield b"stream"


class FakeImages:
    def __init__(self, images: dict[str, FakeImage]) -> None:
        self.images = images

    def get(self, name: str) -> FakeImage:
        if name not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return self.images[name]


class FakeContainers:
    def __init__(self, nodes: list[FakeNode]) -> None:
        self.nodes = nodes
        self.filters: list[dict[str, str]] = []

    def list(self, *, filters: dict[str, str]) -> list[FakeNode]:
        self.filters.append(filters)
        return self.nodes


class FakeClient:
    def __init__(self, nodes: list[FakeNode], images: dict[str, FakeImage]) -> None:
        self.containers = FakeContainers(nodes)
        self.images = FakeImages(images)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakePipe:
    """Stands in for ``docker exec -i NODE ctr images import -``: the node gets the image."""

    def __init__(self, nodes: list[FakeNode], image_id: str = IMAGE_ID) -> None:
        self.nodes = {node.name: node for node in nodes}
        self.image_id = image_id
        self.calls: list[tuple[list[str], bytes, float]] = []

    def __call__(self, argv: Sequence[str], chunks: Iterable[bytes], timeout: float) -> str:
        self.calls.append((list(argv), b"".join(chunks), timeout))
        self.nodes[argv[3]].images[NAME] = self.image_id
        return "unpacking ... done\n"


def loader(client: FakeClient, pipe: FakePipe) -> ImageLoader:
    return ImageLoader(
        "pvc", client_factory=lambda timeout: client, docker_binary="docker", pipe=pipe
    )


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("myapp", "docker.io/library/myapp:latest"),
        ("myapp:dev", "docker.io/library/myapp:dev"),
        ("team/app:1", "docker.io/team/app:1"),
        ("docker.io/app:1", "docker.io/library/app:1"),
        ("docker.io/team/app:1", "docker.io/team/app:1"),
        ("localhost/app:1", "localhost/app:1"),
        ("registry.local:5000/app", "registry.local:5000/app:latest"),
        ("ghcr.io/org/app:v2", "ghcr.io/org/app:v2"),
    ],
)
def test_containerd_name_spells_out_registry_and_tag(ref: str, name: str) -> None:
    assert containerd_name(ref) == name


def test_containerd_name_refuses_a_digest() -> None:
    with pytest.raises(ImageLoadError, match="repo:tag"):
        containerd_name("myapp@sha256:" + "a" * 64)


def test_load_imports_into_nodes_that_lack_the_image_and_verifies_by_id() -> None:
    nodes = [
        FakeNode("pvc-control-plane"),
        FakeNode("pvc-worker", images={NAME: IMAGE_ID}),
        FakeNode("pvc-lb", labels={"io.x-k8s.kind.role": "external-load-balancer"}),
    ]
    image = FakeImage(IMAGE_ID, ["myapp:dev"])
    client = FakeClient(nodes, {"myapp:dev": image})
    pipe = FakePipe(nodes)

    result = loader(client, pipe).load("myapp:dev")

    assert result.loaded == ("pvc-control-plane",)
    assert result.present == ("pvc-worker",)
    assert result.name == NAME
    assert result.image_id == IMAGE_ID
    assert not result.skipped
    assert "loaded into 1 node(s)" in result.describe()
    argv, data, timeout = pipe.calls[0]
    assert argv == [
        "docker", "exec", "-i", "pvc-control-plane", "ctr", "--namespace", "k8s.io",
        "images", "import", "--all-platforms", "--snapshotter", "native", "-",
    ]  # fmt: skip
    assert data == b"tar-stream"
    assert 0 < timeout <= 600
    assert image.saved == ["myapp:dev"]
    assert client.containers.filters == [{"label": "io.x-k8s.kind.cluster=pvc"}]
    assert nodes[2].calls == []  # the load balancer has no containerd
    assert client.closed


def test_second_load_skips_every_node_by_id() -> None:
    nodes = [FakeNode("pvc-control-plane")]
    client = FakeClient(nodes, {"myapp:dev": FakeImage(IMAGE_ID, ["myapp:dev"])})
    pipe = FakePipe(nodes)
    first, second = loader(client, pipe).load_all(["myapp:dev", "myapp:dev"])
    assert first.loaded == ("pvc-control-plane",)
    assert second.skipped
    assert second.present == ("pvc-control-plane",)
    assert "already on 1 node(s)" in second.describe()
    assert len(pipe.calls) == 1


def test_same_name_with_another_id_is_imported_again() -> None:
    nodes = [FakeNode("pvc-control-plane", images={NAME: OTHER_ID})]
    client = FakeClient(nodes, {"myapp:dev": FakeImage(IMAGE_ID, ["myapp:dev"])})
    pipe = FakePipe(nodes)
    result = loader(client, pipe).load("myapp:dev")
    assert result.loaded == ("pvc-control-plane",)


def test_image_missing_from_docker_names_the_commands_that_fix_it() -> None:
    client = FakeClient([FakeNode("pvc-control-plane")], {})
    with pytest.raises(ImageLoadError) as failure:
        loader(client, FakePipe([])).load("myapp:dev")
    assert "`docker images`" in str(failure.value)
    assert "docker build -t myapp:dev" in str(failure.value)


def test_image_asked_by_id_is_refused_because_pods_need_a_name() -> None:
    client = FakeClient([FakeNode("n")], {IMAGE_ID: FakeImage(IMAGE_ID, ["myapp:dev"])})
    with pytest.raises(ImageLoadError, match="repository:tag"):
        loader(client, FakePipe([])).load(IMAGE_ID)


def test_no_running_nodes_is_an_error_naming_the_cluster() -> None:
    client = FakeClient([], {"myapp:dev": FakeImage(IMAGE_ID, ["myapp:dev"])})
    with pytest.raises(ImageLoadError, match=r"kind cluster 'pvc' has no running node"):
        loader(client, FakePipe([])).load("myapp:dev")


def test_import_that_leaves_another_id_fails_with_what_containerd_holds() -> None:
    nodes = [FakeNode("pvc-control-plane")]
    client = FakeClient(nodes, {"myapp:dev": FakeImage(IMAGE_ID, ["myapp:dev"])})
    with pytest.raises(ImageLoadError, match=OTHER_ID):
        loader(client, FakePipe(nodes, image_id=OTHER_ID)).load("myapp:dev")


def test_failing_query_in_a_node_raises_command_error() -> None:
    node = FakeNode("pvc-control-plane")
    nodes = KindNodes("pvc", FakeClient([node], {}), pipe=FakePipe([node]))
    with pytest.raises(CommandError, match="exit code 1: docker exec pvc-control-plane ctr"):
        nodes.query(node, ["ctr", "--namespace", "k8s.io", "bogus"])


def test_query_that_hangs_is_given_up_at_its_deadline() -> None:
    release = threading.Event()
    node = FakeNode("pvc-control-plane", hang=release)
    nodes = KindNodes("pvc", FakeClient([node], {}), query_timeout=0.2)
    try:
        with pytest.raises(WaitTimeoutError, match="no answer from the Docker daemon"):
            nodes.image_ids(node, NAME)
    finally:
        release.set()


def test_pipe_into_streams_chunks_to_stdin() -> None:
    script = "import sys; data = sys.stdin.buffer.read(); print(len(data))"
    out = pipe_into([sys.executable, "-c", script], iter([b"ab", b"cde"]), timeout=30)
    assert out.strip() == "5"


def test_pipe_into_reports_the_exit_code_and_stderr() -> None:
    script = "import sys; sys.stdin.buffer.read(); sys.exit('ctr: unexpected EOF')"
    with pytest.raises(CommandError, match="unexpected EOF") as failure:
        pipe_into([sys.executable, "-c", script], iter([b"x"]), timeout=30)
    assert failure.value.exit_code == 1


def test_pipe_into_kills_a_command_past_its_timeout() -> None:
    script = "import time; time.sleep(30)"
    with pytest.raises(CommandError, match=r"timed out after 0\.5s"):
        pipe_into([sys.executable, "-c", script], iter([b"x"]), timeout=0.5)


def test_pipe_into_names_a_failed_export() -> None:
    def broken() -> Iterator[bytes]:
        yield b"x"
        raise docker.errors.APIError("daemon went away")

    script = "import sys; sys.stdin.buffer.read()"
    with pytest.raises(ImageLoadError, match="exporting the image from Docker failed"):
        pipe_into([sys.executable, "-c", script], broken(), timeout=30)


def test_existing_host_cannot_load_images() -> None:
    info = HostInfo("existing", "ctx", Path("/k/config"), "ctx", False)
    with pytest.raises(HostError, match="needs a kind host") as failure:
        info.load_image("myapp:dev")
    assert "registry" in str(failure.value)


def test_load_images_option_takes_commas_and_lines(tmp_path: Path) -> None:
    settings = resolve_settings(
        {"vcluster_load_images": "a:1, b:2"}, {}, {}, cli_dir=tmp_path, ini_dir=tmp_path
    )
    assert settings.load_images == ("a:1", "b:2")
    from_ini = resolve_settings(
        {}, {"vcluster_load_images": "\na:1\nb:2\n"}, {}, cli_dir=tmp_path, ini_dir=tmp_path
    )
    assert from_ini.load_images == ("a:1", "b:2")


def test_load_images_with_an_existing_host_is_a_usage_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    with pytest.raises(ConfigError, match="--vcluster-load-images: needs a kind host"):
        resolve_settings(
            {"vcluster_load_images": "a:1", "vcluster_host_kubeconfig": str(kubeconfig)},
            {},
            {},
            cli_dir=tmp_path,
            ini_dir=tmp_path,
        )


class RecordingLoader:
    """Stands in for :class:`ImageLoader` in the kind host's acquire."""

    made: ClassVar[list[tuple[str, float]]] = []
    failure: ClassVar[Exception | None] = None

    def __init__(self, cluster: str, *, timeout: float) -> None:
        self.made.append((cluster, timeout))

    def load_all(self, refs: Sequence[str]) -> list[LoadResult]:
        if self.failure is not None:
            raise self.failure
        return [LoadResult(ref, ref, IMAGE_ID, ("t-control-plane",), (), 0.5) for ref in refs]


@pytest.fixture
def fake_kind(fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKind:
    return FakeKind(fake_tool, tmp_path, monkeypatch)


@pytest.fixture
def recording_loader(monkeypatch: pytest.MonkeyPatch) -> type[RecordingLoader]:
    monkeypatch.setattr(RecordingLoader, "made", [])
    monkeypatch.setattr(RecordingLoader, "failure", None)
    monkeypatch.setattr(hosts, "ImageLoader", RecordingLoader)
    return RecordingLoader


def test_kind_host_loads_the_option_images_at_acquire(
    fake_kind: FakeKind, tmp_path: Path, recording_loader: type[RecordingLoader]
) -> None:
    host = shared(fake_kind, tmp_path, load_images=("a:1",), host_timeout=90.0)
    assert "loads 1 local image(s)" in host.header_line()
    host.acquire()
    assert recording_loader.made == [("t", 90.0)]
    host.release()
    assert "; images: a:1 loaded into 1 node(s) in 0.5s" in (host.summary_line() or "")


def test_failed_image_load_gives_the_host_back(
    fake_kind: FakeKind, tmp_path: Path, recording_loader: type[RecordingLoader]
) -> None:
    recording_loader.failure = ImageLoadError("image 'a:1' is not in the local Docker engine")
    host = shared(fake_kind, tmp_path, load_images=("a:1",))
    with pytest.raises(ImageLoadError):
        host.acquire()
    assert leases(tmp_path)["leases"] == {}
    assert fake_kind.clusters == []  # this run created it and nobody else uses it
