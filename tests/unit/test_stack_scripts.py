"""The offline stack's cache keys: the same inputs name the same images from any checkout.

Two clones of the repository on one machine share the stack cache and Docker's images; a key
that changed with the checkout's folder would make each rebuild the node image (and prune the
other's). The scripts are run from copies of ``.ci/stack`` in two folders with ``docker``
replaced by a stub that makes up an image id per name; nothing is built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[2] / ".ci" / "stack"

DOCKER_STUB = """#!/bin/sh
# docker image inspect -f FORMAT IMAGE...: one made-up id per image name.
[ "$1 $2" = "image inspect" ] || { echo "unexpected: docker $*" >&2; exit 1; }
shift 4
for image in "$@"; do printf 'sha256:%s\\n' "$(printf '%s' "$image" | sha256sum | cut -c1-64)"; done
"""

PRELUDE = """
set -euo pipefail
stack="$1"
source "$stack/lib.sh"
source "$stack/images.sh"
source "$stack/node.sh"
bin="$BIN_CACHE/kubernetes-$HOST_K8S_VERSION"
mkdir -p "$bin"
for cmd in kubeadm kubelet kubectl; do printf '%s binary\\n' "$cmd" >"$bin/$cmd"; done
"""

KEY_FROM_NODE_SH = (
    PRELUDE + 'node_image_key "$bin" pytest-vcluster/kind-base:x registry.k8s.io/pause:3.10 w:1\n'
)

# build_node exactly as `up` defines it, with the steps around the key stubbed out.
NODE_IMAGE_FROM_UP = (
    PRELUDE
    + """
source <(sed -n '/^build_node() {/,/^}/p' "$stack/up")
node_base_image() { echo pytest-vcluster/kind-base:x; }
node_image() { :; }
prune_old_tags() { :; }
PAUSE_IMAGE=p ETCD_IMAGE=e COREDNS_IMAGE=c VCLUSTER_COREDNS_IMAGE=vc WORKLOAD_IMAGE=w
LOCAL_PATH_IMAGE=l SYNCER_IMAGE=s VIRTUAL_IMAGES=(k1 k2) NODE_ROOTFS=r
build_node
echo "$NODE_IMAGE"
"""
)


@pytest.fixture
def checkouts(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of .ci/stack in unrelated folders."""
    first = tmp_path / "src" / "pytest-vcluster" / ".ci" / "stack"
    second = tmp_path / "elsewhere" / "clone-2" / ".ci" / "stack"
    for copy in (first, second):
        shutil.copytree(STACK, copy)
    return first, second


def run_in(stack: Path, script: str, tmp_path: Path) -> str:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    docker = stubs / "docker"
    docker.write_text(DOCKER_STUB)
    docker.chmod(0o755)
    env = {
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        # One cache for both checkouts, as two clones on one machine have.
        "PYTEST_VCLUSTER_STACK_CACHE": str(tmp_path / "cache"),
        "LC_ALL": "C.UTF-8",
    }
    done = subprocess.run(
        ["bash", "-c", script, "bash", str(stack)],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_node_image_key_is_the_same_from_any_checkout(
    checkouts: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = checkouts
    key = run_in(first, KEY_FROM_NODE_SH, tmp_path)
    assert len(key) == 12
    assert run_in(second, KEY_FROM_NODE_SH, tmp_path) == key


def test_node_image_key_follows_the_node_files_contents(
    checkouts: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = checkouts
    with (second / "node" / "egress-guard.sh").open("a") as script:
        script.write("# changed\n")
    assert run_in(first, KEY_FROM_NODE_SH, tmp_path) != run_in(second, KEY_FROM_NODE_SH, tmp_path)


def test_up_names_the_node_image_the_same_from_any_checkout(
    checkouts: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = checkouts
    image = run_in(first, NODE_IMAGE_FROM_UP, tmp_path)
    assert image.startswith("pytest-vcluster/kind-node:")
    assert run_in(second, NODE_IMAGE_FROM_UP, tmp_path) == image
