"""``vcluster.port_forward`` on the real stack: HTTP to a workload inside a vcluster.

An inner pytest run (as a user starts it) deploys the stack's HTTP image as a Deployment and a
Service inside its ``vcluster`` and GETs the page through ``port_forward`` to the service
(service port 80 mapped to the named target port), the deployment and one pod. The plugin
creates the kind host itself; it is deleted at the end in any case.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-pf"
INNER_TIMEOUT = 1200

INNER = """
import json, pathlib, time, urllib.request

from kubernetes import client

IMAGE = {image!r}
FACTS = pathlib.Path({facts!r})
LABELS = {{"app": "web"}}


def record(**fields):
    with FACTS.open("a") as f:
        f.write(json.dumps(fields) + "\\n")


def deploy(vcluster):
    container = client.V1Container(
        name="web",
        image=IMAGE,
        image_pull_policy="IfNotPresent",  # preloaded on the host: nothing may be pulled
        ports=[client.V1ContainerPort(name="http", container_port=8080)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1
        ),
    )
    client.AppsV1Api(vcluster.api_client).create_namespaced_deployment(
        "default",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web", labels=LABELS),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=LABELS),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=LABELS),
                    spec=client.V1PodSpec(containers=[container]),
                ),
            ),
        ),
    )
    vcluster.core_v1().create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web", labels=LABELS),
            spec=client.V1ServiceSpec(
                selector=LABELS,
                ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
            ),
        ),
    )


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def test_http_through_port_forward(vcluster):
    deploy(vcluster)
    started = time.monotonic()
    with vcluster.port_forward("svc/web", 80, timeout=180) as web:
        forwarding = time.monotonic() - started
        before = time.monotonic()
        first = get(web.url("/"))
        first_get = time.monotonic() - before
        second = get(f"http://{{web}}/index.html")  # str(web) is 127.0.0.1:PORT
        record(target="svc/web", address=str(web), pod_port=web.pod_port, first=first,
               second=second, forwarding=forwarding, first_get=first_get)
    with vcluster.port_forward("deployment/web", 8080) as web:
        record(target="deployment/web", address=web.address, pod_port=web.pod_port,
               first=get(web.url()))
    [pod] = vcluster.core_v1().list_namespaced_pod("default", label_selector="app=web").items
    with vcluster.port_forward(f"pod/{{pod.metadata.name}}", "http") as web:
        record(target="pod", address=web.address, pod_port=web.pod_port, first=get(web.url()))
"""


@pytest.fixture
def kind_host(stack: Stack) -> Iterator[str]:
    """The kind host name; the plugin creates it, and it is deleted here whatever happens."""
    kind = stack.tool("kind")
    yield HOST
    clusters = stack.run(kind, "get", "clusters", check=False).stdout.split()
    if HOST in clusters:
        stack.run(kind, "delete", "cluster", "--name", HOST, timeout=180, check=False)


def test_http_to_a_workload_through_port_forward(
    pytester: pytest.Pytester, stack: Stack, kind_host: str
) -> None:
    facts_file = pytester.path / "facts.jsonl"
    pytester.makepyfile(
        test_inner=textwrap.dedent(INNER).format(image=stack.workload_image, facts=str(facts_file))
    )
    result = pytester.runpytest_subprocess(
        *stack.plugin_args(),
        f"--vcluster-host-name={kind_host}",
        "-p",
        "no:cacheprovider",
        "-rA",
        timeout=INNER_TIMEOUT,
    )
    try:
        result.assert_outcomes(passed=1)
    except AssertionError:
        print("\n".join(result.outlines[-120:]))
        raise
    facts: dict[str, dict[str, Any]] = {}
    for line in facts_file.read_text().splitlines():
        fact = json.loads(line)
        facts[fact["target"]] = fact
    print(json.dumps(facts, indent=2))
    page = [200, "pytest-vcluster workload\n"]
    assert facts["svc/web"]["first"] == page
    assert facts["svc/web"]["second"] == page
    assert facts["svc/web"]["pod_port"] == 8080  # service port 80 -> targetPort "http" -> 8080
    assert facts["svc/web"]["address"].startswith("127.0.0.1:")
    assert facts["deployment/web"]["first"] == page
    assert facts["pod"]["first"] == page
    assert facts["pod"]["pod_port"] == 8080
