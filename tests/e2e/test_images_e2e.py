"""Local images on the real stack: an image built here, never pushed, runs in a vcluster.

The image is built from the stack's workload image (busybox ``httpd`` serving ``/www`` on
8080) with a page holding a random token, tagged with a name no node has seen, loaded by
``--vcluster-load-images`` when the inner run acquires the host, and reached through the
vcluster API's pod proxy from a Pod with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .stack import Stack
from .test_trust_e2e import Inner

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-img"

INNER_TEST = """
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

TAG = {tag!r}


def test_local_image(vcluster_host, vcluster):
    again = vcluster_host.load_image(TAG)
    core = client.CoreV1Api(vcluster.api_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="local"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="web",
                    image=TAG,
                    image_pull_policy="Never",
                    ports=[client.V1ContainerPort(container_port=8080)],
                )
            ]
        ),
    )
    core.create_namespaced_pod("default", pod)
    deadline = time.monotonic() + 180
    body, seen = None, "no status yet"
    while time.monotonic() < deadline and body is None:
        status = core.read_namespaced_pod("local", "default").status
        seen = str(status.container_statuses)
        if status.phase == "Running":
            try:
                body = core.connect_get_namespaced_pod_proxy_with_path(
                    "local:8080", "default", "token.txt", _request_timeout=10
                )
            except ApiException as exc:
                seen = f"proxy {{exc.status}}"
        if body is None:
            time.sleep(1)
    record(
        body=body,
        seen=seen,
        skipped=again.skipped,
        present=list(again.present),
        image_id=again.image_id,
        check_seconds=again.seconds,
    )
    assert body is not None, seen
"""


@pytest.fixture(scope="module")
def host_kubeconfig(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kind host made with the kind CLI: the plugin reuses it and never deletes it."""
    kubeconfig = tmp_path_factory.mktemp("images-host") / "kubeconfig"
    with stack.kind_host(HOST, kubeconfig):
        yield kubeconfig


@pytest.fixture
def local_image(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """``(tag, token, image id)`` of an image built here under a tag never used before."""
    token = uuid.uuid4().hex
    tag = f"pytest-vcluster/e2e-local:{token[:12]}"
    dockerfile = f"FROM {stack.workload_image}\nCOPY token.txt /www/token.txt\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, data in (("Dockerfile", dockerfile), ("token.txt", token.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker.from_env(timeout=120)
    try:
        # pull=False: the base is the stack's local image and nothing may come off the network.
        image, _ = client.images.build(
            fileobj=context, custom_context=True, tag=tag, pull=False, rm=True
        )
        yield tag, token, image.id
    finally:
        try:
            client.images.remove(tag, force=True)
        finally:
            client.close()


def node_refs(stack: Stack) -> str:
    return stack.run(
        "docker", "exec", f"{HOST}-control-plane", "ctr", "-n", "k8s.io", "images", "ls", "-q"
    ).stdout


def test_local_image_runs_in_a_vcluster_without_a_registry(
    stack: Stack, host_kubeconfig: Path, local_image: tuple[str, str, str], tmp_path: Path
) -> None:
    del host_kubeconfig
    tag, token, image_id = local_image
    assert f"docker.io/{tag}" not in node_refs(stack)

    inner = Inner(
        stack,
        tmp_path,
        INNER_TEST.format(tag=tag),
        f"--vcluster-host-name={HOST}",
        f"--vcluster-load-images={tag}",
    )
    code = inner.wait()
    output = inner.output()
    facts = inner.facts()
    print(json.dumps(facts, indent=1))
    summary = [line for line in output.splitlines() if "images:" in line]
    print("\n".join(summary))
    assert code == 0, output
    [fact] = facts
    assert fact["body"].strip() == token, fact
    # The option loaded it when the host was acquired; the test's own load found it by ID.
    assert fact["skipped"], fact
    assert fact["present"] == [f"{HOST}-control-plane"]
    assert fact["image_id"] == image_id
    assert f"images: {tag} loaded into 1 node(s) in " in output, summary
    assert f"docker.io/{tag}" in node_refs(stack)
