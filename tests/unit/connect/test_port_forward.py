"""``VCluster.port_forward``: targets, port mapping, waiting for a pod, errors.

The Kubernetes API is a small HTTP server on 127.0.0.1 answering from a dict of objects, so the
real client code runs; the port-forward stream is a plain connection to a local echo server
(the forwarder itself is tested in ``test_tunnel.py``).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from pytest_vcluster import ConfigError, Forward, PortForwardError, WaitTimeoutError
from pytest_vcluster.connect.port_forward import (
    KINDS,
    Target,
    label_selector,
    parse_target,
    port_forward,
    service_target_port,
)
from pytest_vcluster.connect.tunnel import PodPortForwarder, SocketLike
from pytest_vcluster.core.errors import ApiError

LABELS = {"app": "web"}
CONTAINER = {
    "name": "web",
    "image": "pytest-vcluster/workload:1",
    "ports": [{"name": "http", "containerPort": 8080}],
}


def pod(name: str, *, ready: bool = True, phase: str = "Running", deleting: bool = False) -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": LABELS}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [CONTAINER]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(ports: list[dict], selector: dict | None = LABELS) -> dict:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": LABELS},
        "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [CONTAINER]}},
    },
}


class RecordingClient(client.ApiClient):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class FakeApi:
    """A Kubernetes API answering GETs of the objects in ``objects`` (by URL path)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.pods: list[dict] = []
        self.fail_with: int | None = None
        self.clients: list[RecordingClient] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                status, body = api.answer(url.path, urllib.parse.parse_qs(url.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        if self.fail_with is not None:
            return self.fail_with, {"kind": "Status", "message": "the API is unwell"}
        if path == "/api/v1/namespaces/default/pods":
            wanted = dict(
                part.split("=", 1) for part in query.get("labelSelector", [""])[0].split(",")
            )
            items = [p for p in self.pods if wanted.items() <= p["metadata"]["labels"].items()]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        for p in self.pods:
            if path == f"/api/v1/namespaces/default/pods/{p['metadata']['name']}":
                return 200, p
        if path in self.objects:
            return 200, self.objects[path]
        return 404, {"kind": "Status", "reason": "NotFound", "message": f"{path} not found"}

    def new_client(self) -> client.ApiClient:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        made = RecordingClient(client.Configuration(host=host))
        self.clients.append(made)
        return made

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server standing in for the pod port: echoes the first message of a connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(timeout=2)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, echo_port: int) -> list[tuple[str, int]]:
    """Streams go to the echo server; records the (pod, pod port) of each."""
    seen: list[tuple[str, int]] = []

    def fake_open(self: PodPortForwarder, pod: str) -> tuple[SocketLike, Callable[[], None]]:
        seen.append((pod, self.remote_port))
        return socket.create_connection(("127.0.0.1", echo_port)), lambda: None

    monkeypatch.setattr(PodPortForwarder, "_open", fake_open)
    return seen


def roundtrip(forward: Forward, payload: bytes) -> bytes:
    with socket.create_connection((forward.host, forward.port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(1024)


# -- targets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("pod/web-0", "pod"),
        ("po/web-0", "pod"),
        ("svc/web-0", "service"),
        ("service/web-0", "service"),
        ("deployment/web-0", "deployment"),
        ("deploy/web-0", "deployment"),
        ("Deployments/web-0", "deployment"),
    ],
)
def test_parse_target_accepts_kubectl_spellings(text: str, kind: str) -> None:
    assert parse_target(text) == Target(kind, "web-0", text)
    assert kind in KINDS.values()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("statefulset/db", "'statefulset/db': cannot forward to a 'statefulset'"),
        ("web", "'web' is not TYPE/NAME"),
        ("svc/", "'svc/' is not TYPE/NAME"),
        ("svc/a/b", "'svc/a/b' is not TYPE/NAME"),
        (8080, "8080 is not a string"),
    ],
)
def test_parse_target_names_the_problem_and_the_allowed_forms(text: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert message.startswith(f"port_forward(target=...): {expected}")
    assert "(allowed: pod/NAME, svc/NAME (service/NAME), deployment/NAME" in message


@pytest.mark.parametrize("port", [0, 65536, True, "", 80.0])
def test_bad_ports_are_config_errors(api: FakeApi, port: object) -> None:
    with (
        pytest.raises(ConfigError, match=r"port_forward\(port=\.\.\.\)"),
        port_forward(api.new_client, "svc/web", port),  # type: ignore[arg-type]
    ):
        pass
    assert api.clients == []  # checked before any client is made


def test_label_selector_from_match_labels_and_expressions() -> None:
    selector = client.V1LabelSelector(
        match_labels={"tier": "web", "app": "shop"},
        match_expressions=[
            client.V1LabelSelectorRequirement(key="env", operator="In", values=["a", "b"]),
            client.V1LabelSelectorRequirement(key="zone", operator="NotIn", values=["x"]),
            client.V1LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
            client.V1LabelSelectorRequirement(key="owner", operator="Exists"),
        ],
    )
    assert label_selector(selector) == (
        "app=shop,tier=web,env in (a,b),zone notin (x),!canary,owner"
    )
    assert label_selector(None) == ""


# -- service port mapping -----------------------------------------------------------------


def v1_service(*ports: client.V1ServicePort) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name="web"), spec=client.V1ServiceSpec(ports=list(ports))
    )


@pytest.mark.parametrize(
    ("target_port", "expected"),
    [(8080, 8080), ("http", "http"), ("9090", 9090), (None, 80)],
)
def test_service_port_maps_to_its_target_port(target_port: object, expected: object) -> None:
    svc = v1_service(
        client.V1ServicePort(name="metrics", port=9100, target_port=9100),
        client.V1ServicePort(name="web", port=80, target_port=target_port),
    )
    assert service_target_port(svc, 80) == expected
    assert service_target_port(svc, "web") == expected  # by the service port's name, too


def test_unknown_service_port_lists_the_ports_it_has() -> None:
    svc = v1_service(
        client.V1ServicePort(name="http", port=80, target_port=8080),
        client.V1ServicePort(port=443),
    )
    with pytest.raises(PortForwardError) as caught:
        service_target_port(svc, 8080)
    assert str(caught.value).startswith(
        "service web has no port 8080 (its ports: 80 (http), 443); pass one of its ports"
    )


# -- resolving and forwarding ---------------------------------------------------------------


def test_service_forwards_to_a_ready_pod_on_the_named_target_port(
    api: FakeApi, opened: list[tuple[str, int]]
) -> None:
    api.objects["/api/v1/namespaces/default/services/web"] = service(
        [{"name": "http", "port": 80, "targetPort": "http"}]
    )
    api.pods = [pod("web-old", deleting=True), pod("web-slow", ready=False), pod("web-1")]
    with port_forward(api.new_client, "svc/web", 80, cluster="pv-test") as forward:
        assert str(forward) == f"127.0.0.1:{forward.port}" == forward.address
        assert forward.url("index.html") == f"http://127.0.0.1:{forward.port}/index.html"
        assert (forward.target, forward.namespace, forward.pod_port) == ("svc/web", "default", 8080)
        assert roundtrip(forward, b"GET /") == b"GET /"
    assert opened[0][1] == 8080
    assert opened[0][0] in {"web-slow", "web-1"}  # the forwarder's own choice per connection
    # The lookup client and the forwarder's client are separate, and both closed.
    assert len(api.clients) == 2
    assert all(made.closed for made in api.clients)
    with pytest.raises(OSError):  # noqa: PT011 - refused or reset, depending on timing
        socket.create_connection(("127.0.0.1", forward.port), timeout=2).close()


def test_pod_target_forwards_to_that_pod_only(api: FakeApi, opened: list[tuple[str, int]]) -> None:
    # Both pods carry the same labels: a selector could not tell them apart.
    api.pods = [pod("web-0"), pod("web-1")]
    with port_forward(api.new_client, "pod/web-1", 8080) as forward:
        assert roundtrip(forward, b"one") == b"one"
        assert roundtrip(forward, b"two") == b"two"
    assert opened == [("web-1", 8080), ("web-1", 8080)]


def test_deployment_forwards_to_its_pods_by_container_port_name(
    api: FakeApi, opened: list[tuple[str, int]]
) -> None:
    api.objects["/apis/apps/v1/namespaces/default/deployments/web"] = DEPLOYMENT
    api.pods = [pod("web-abc")]
    with port_forward(api.new_client, "deployment/web", "http") as forward:
        assert forward.pod_port == 8080
        assert roundtrip(forward, b"hi") == b"hi"
    assert opened == [("web-abc", 8080)]


@pytest.mark.parametrize(
    ("target", "what"),
    [("svc/web", "service web"), ("pod/web", "pod web"), ("deploy/web", "deployment web")],
)
def test_missing_object_says_where_it_looked(api: FakeApi, target: str, what: str) -> None:
    with (
        pytest.raises(PortForwardError) as caught,
        port_forward(api.new_client, target, 80, namespace="default", cluster="pv-a"),
    ):
        pass
    assert str(caught.value) == (
        f"no {what} in namespace default of vcluster pv-a; create it first, or pass the "
        "namespace it is in as port_forward(..., namespace=...)"
    )


def test_service_without_selector_points_to_other_targets(api: FakeApi) -> None:
    api.objects["/api/v1/namespaces/default/services/web"] = service([{"port": 80}], selector=None)
    with (
        pytest.raises(PortForwardError, match=r"has no selector, so no pod backs it.*pod/NAME"),
        port_forward(api.new_client, "svc/web", 80),
    ):
        pass


def test_missing_container_port_name_lists_the_names(api: FakeApi) -> None:
    api.objects["/api/v1/namespaces/default/services/web"] = service(
        [{"port": 80, "targetPort": "grpc"}]
    )
    api.pods = [pod("web-1")]
    with pytest.raises(PortForwardError) as caught, port_forward(api.new_client, "svc/web", 80):
        pass
    assert "pod web-1 has no container port named 'grpc' (its named ports: http)" in str(
        caught.value
    )


def test_other_api_failures_keep_the_status(api: FakeApi) -> None:
    api.fail_with = 403
    with pytest.raises(ApiError) as caught, port_forward(api.new_client, "svc/web", 80):
        pass
    assert caught.value.status == 403
    assert caught.value.message == "the API is unwell"
    assert str(caught.value).startswith("reading service web in namespace default: 403")


def test_no_ready_pod_times_out_with_what_it_saw(api: FakeApi) -> None:
    api.objects["/apis/apps/v1/namespaces/default/deployments/web"] = DEPLOYMENT
    api.pods = [pod("web-abc", ready=False, phase="Pending")]
    with (
        pytest.raises(WaitTimeoutError) as caught,
        port_forward(api.new_client, "deployment/web", 8080, timeout=0.3),
    ):
        pass
    message = str(caught.value)
    assert message.startswith(
        "timed out after 0.3s waiting for a Ready pod of deployment/web (pods app=web) in "
        "namespace default; last seen: web-abc Pending not ready; see why with "
        "`kubectl describe pods -n default`"
    )
    assert len(api.clients) == 1  # no forwarder was made
    assert api.clients[0].closed


def test_no_pod_at_all_says_which_selector_matched_nothing(api: FakeApi) -> None:
    api.objects["/apis/apps/v1/namespaces/default/deployments/web"] = DEPLOYMENT
    with (
        pytest.raises(WaitTimeoutError, match="last seen: no pod matches app=web"),
        port_forward(api.new_client, "deployment/web", 8080, timeout=0.1),
    ):
        pass
