"""Deploy a small HTTP workload into a fresh vcluster and reach it through the API server.

Nothing but the vcluster's own API client is used: no kubectl, no port-forward. The request
travels through the Kubernetes API's service proxy
(``/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH``).

The image is chosen by environment variables, so the same test runs online and air-gapped:

* ``EXAMPLE_HTTP_IMAGE``: default ``nginx:1.27-alpine``; the offline stack's image is
  ``pytest-vcluster/workload:1`` (busybox ``httpd -f -p 8080 -h /www``);
* ``EXAMPLE_HTTP_PORT``: the port the image serves HTTP on; default 80 (8080 for the offline
  stack's image).
"""

from __future__ import annotations

import os
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster import VCluster

IMAGE = os.environ.get("EXAMPLE_HTTP_IMAGE", "nginx:1.27-alpine")
PORT = int(os.environ.get("EXAMPLE_HTTP_PORT", "80"))
NAMESPACE = "web"
NAME = "web"
LABELS = {"app": NAME}
ROLLOUT_TIMEOUT = 180.0
PROXY_TIMEOUT = 60.0


def deployment(replicas: int = 2) -> client.V1Deployment:
    """A Deployment of the HTTP image, Ready only once it answers on ``/``."""
    probe = client.V1Probe(
        http_get=client.V1HTTPGetAction(path="/", port="http"),
        period_seconds=2,
    )
    container = client.V1Container(
        name=NAME,
        image=IMAGE,
        ports=[client.V1ContainerPort(name="http", container_port=PORT)],
        readiness_probe=probe,
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=NAME, labels=LABELS),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=LABELS),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=LABELS),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def service() -> client.V1Service:
    """A ClusterIP Service named ``web`` with port ``http`` in front of the Deployment."""
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=NAME, labels=LABELS),
        spec=client.V1ServiceSpec(
            selector=LABELS,
            ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
        ),
    )


def pods_seen(core: client.CoreV1Api) -> str:
    """What the workload's pods look like, for a failure message."""
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={NAME}").items
    states = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        phase = pod.status.phase if pod.status else "?"
        waiting = [
            f"{cs.name}:{cs.state.waiting.reason}"
            for cs in (pod.status.container_statuses or [] if pod.status else [])
            if cs.state and cs.state.waiting
        ]
        states.append(f"{name} {phase} {' '.join(waiting)}".strip())
    return "; ".join(states) or "no pods"


def wait_for_rollout(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """Wait until every replica of the newest generation is available."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    seen = "nothing yet"
    while time.monotonic() < deadline:
        current = apps.read_namespaced_deployment_status(NAME, NAMESPACE)
        status = current.status
        wanted = current.spec.replicas if current.spec else None
        generation = current.metadata.generation if current.metadata else None
        if status is not None:
            seen = (
                f"observed generation {status.observed_generation}/{generation}, "
                f"updated {status.updated_replicas}, available {status.available_replicas} "
                f"of {wanted}"
            )
            if (
                status.observed_generation == generation
                and status.updated_replicas == wanted
                and status.available_replicas == wanted
            ):
                return
        time.sleep(2)
    raise AssertionError(
        f"deployment {NAMESPACE}/{NAME} ({IMAGE}) not rolled out after {ROLLOUT_TIMEOUT:g}s: "
        f"{seen}; pods: {pods_seen(core)}"
    )


def get_through_service_proxy(core: client.CoreV1Api, path: str) -> str:
    """GET ``path`` from the Service through the API server's proxy.

    Endpoints follow pod readiness with a short delay, so 503s are retried until a deadline.
    """
    deadline = time.monotonic() + PROXY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            return core.connect_get_namespaced_service_proxy_with_path(
                f"{NAME}:http", NAMESPACE, path, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status not in (502, 503):
                raise
            last = f"{exc.status} {exc.reason}"
        time.sleep(1)
    raise AssertionError(f"service {NAMESPACE}/{NAME} did not answer in time; last: {last}")


def test_deploy_and_reach_workload(vcluster: VCluster) -> None:
    core = client.CoreV1Api(vcluster.api_client)
    apps = client.AppsV1Api(vcluster.api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    core.create_namespaced_service(NAMESPACE, service())

    wait_for_rollout(apps, core)
    page = get_through_service_proxy(core, "index.html")

    assert page.strip(), f"{IMAGE} served an empty index page"
