"""Diagnostics of failed tests: section text, bundle, redaction and failures reported inline.

The Kubernetes API is a local HTTP stand-in serving canned JSON per path, so the real client
(its requests, timeouts and models) is what :class:`Diagnostics` talks to.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pytest
from kubernetes import client

from pytest_vcluster.cluster.evidence import ContainerLog, attach
from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.core.errors import ConfigError, StartFailedError
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.diagnostics.bundle import (
    Diagnostics,
    DiagnosticsCollector,
    junit_properties,
    pick_events,
    redact,
)

NAME = "pv-test-x-1a2b3c"
NS = NAME
CONTROL_PLANE = f"{NAME}-0"
KEY = "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo" * 8  # 344 base64 characters


def pod(
    name: str,
    *,
    namespace: str = NS,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "containers": [
                {"name": c["name"], "image": "img", "env": [{"name": "TOKEN", "value": "xyz"}]}
                for c in containers or []
            ]
        },
        "status": {"phase": phase, "containerStatuses": containers or []},
    }


def container(
    name: str, *, ready: bool = True, restarts: int = 0, **state: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": "img",
        "imageID": "",
        "ready": ready,
        "restartCount": restarts,
        "state": state.get("state", {"running": {}}),
        **({"lastState": state["last"]} if "last" in state else {}),
    }


def event(reason: str, message: str, when: str, kind: str = "Pod", name: str = "p") -> dict:
    return {
        "metadata": {"name": f"e-{reason}-{when}", "namespace": NS},
        "involvedObject": {"kind": kind, "name": name, "namespace": "default"},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "lastTimestamp": when,
        "count": 3,
    }


def listing(kind: str, items: list[dict[str, Any]]) -> str:
    return json.dumps({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})


HOST_PODS = [
    pod(
        CONTROL_PLANE,
        labels={"app": "vcluster", "release": NAME},
        containers=[
            container(
                "syncer",
                restarts=2,
                last={"terminated": {"exitCode": 1, "reason": "Error"}},
            )
        ],
    ),
    pod(
        f"exits-one-x-default-x-{NAME}",
        phase="Failed",
        containers=[
            container("main", ready=False, state={"terminated": {"exitCode": 1, "reason": "Error"}})
        ],
    ),
]
VIRTUAL_PODS = [
    pod(
        "missing-image",
        namespace="default",
        phase="Pending",
        containers=[
            container(
                "main",
                ready=False,
                state={"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}},
            )
        ],
    ),
    pod(
        "exits-one",
        namespace="default",
        phase="Failed",
        containers=[
            container("main", ready=False, state={"terminated": {"exitCode": 1, "reason": "Error"}})
        ],
    ),
    pod("coredns-1", namespace="kube-system", containers=[container("coredns")]),
]
SYNCER_LOG = "\n".join(f"\x1b[34mINFO\x1b[0m syncer line {i}" for i in range(30)) + (
    "\nAuthorization: Bearer abcdefghijkl\nclient-key-data: " + KEY + "\n"
)


class FakeAPI(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, str]]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.requests.append(self.path)
        code, body = self.routes.get(path, (404, json.dumps({"kind": "Status", "code": 404})))
        data = body.encode()
        self.send_response(code)
        content = "application/json" if body.startswith("{") else "text/plain"
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def default_routes() -> dict[str, tuple[int, str]]:
    base = f"/api/v1/namespaces/{NS}"
    events = [event(f"Reason{i}", f"message {i}", f"2026-01-01T00:00:{i:02d}Z") for i in range(12)]
    return {
        f"{base}/pods": (200, listing("PodList", HOST_PODS)),
        f"{base}/events": (200, listing("EventList", events)),
        f"{base}/pods/{CONTROL_PLANE}/log": (200, SYNCER_LOG),
        f"{base}/pods/exits-one-x-default-x-{NAME}/log": (200, "echo\ntoken: hunter2\n"),
        "/api/v1/pods": (200, listing("PodList", VIRTUAL_PODS)),
        "/api/v1/events": (
            200,
            listing("EventList", [event("Failed", "ErrImageNeverPull", "2026-01-01T00:01:00Z")]),
        ),
    }


@pytest.fixture
def api() -> Iterator[client.ApiClient]:
    FakeAPI.routes = default_routes()
    FakeAPI.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{httpd.server_address[1]}")
    api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]
    httpd.shutdown()
    httpd.server_close()


def handle(api_client: client.ApiClient) -> VCluster:
    return VCluster(
        name=NAME,
        namespace=NS,
        version="v1.34.4",
        requested_version=None,
        kubeconfig=Path("/dev/null"),
        api_client=api_client,
        spec_hash="abc",
        ready_seconds=12.345,
    )


# -- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("client-key-data: " + KEY, "client-key-data: <redacted>", KEY[:20]),
        ('{"token": "abc.def"}', '"token": "<redacted>', "abc.def"),
        ("  token: s3cr3t", "token: <redacted>", "s3cr3t"),
        ("--token=s3cr3t --v=2", "--token=<redacted> --v=2", "s3cr3t"),
        ("Authorization: Bearer abcdefghij", "Bearer <redacted>", "abcdefghij"),
        ("password=hunter22 user=me", "user=me", "hunter22"),
        ("x eyJhbGciOi.eyJzdWIiOiJ.sig y", "x <redacted> y", "eyJhbG"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "<redacted rsa private key>",
            "MIIE",
        ),
        ("data " + "A" * 250, "<redacted 250 characters>", "A" * 200),
    ],
)
def test_redact_removes_credentials(text: str, kept: str, gone: str) -> None:
    redacted = redact(text)
    assert kept in redacted
    assert gone not in redacted


def test_redact_keeps_ordinary_text() -> None:
    text = (
        "automountServiceAccountToken: false\nserviceAccountToken:\n  expirationSeconds: 3607\n"
        "reason: ErrImageNeverPull, exit code 1"
    )
    assert redact(text) == text


def test_pick_events_keeps_the_last_warnings_then_the_latest_others() -> None:
    events = [
        client.CoreV1Event.from_dict(
            {
                "metadata": {"name": f"e{i}"},
                "involvedObject": {},
                "type": "Warning" if i in (1, 3) else "Normal",
            }
        )
        for i in range(10)
    ]
    picked = pick_events(events, limit=4)
    assert [event.metadata.name for event in picked if event.metadata] == ["e1", "e3", "e8", "e9"]


# -- one cluster -----------------------------------------------------------------------------


def test_section_shows_control_plane_events_virtual_pods_and_syncer_tail(
    api: client.ApiClient, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    text = Diagnostics(api, NAME, NS, virtual=api, bundle=bundle, headline="head").collect()
    lines = text.splitlines()
    assert lines[0] == "head"
    assert len(lines) <= 60
    assert f"  {CONTROL_PLANE} Running 1/1 ready, restarts 2: syncer: last exit 1 Error" in lines
    assert "  synced pods on the host: 1, 1 failing" in lines
    assert "host events (8 of 12, warnings first):" in lines
    assert "  00:00:11 Warning Reason11 pod/p: message 11 (x3)" in lines
    assert "virtual pods: 3, 2 failing:" in lines
    assert (
        "  default/missing-image Pending 0/1 ready, restarts 0: main: ErrImageNeverPull "
        "(not present)" in lines
    )
    assert "  default/exits-one Failed 0/1 ready, restarts 0: main: exited 1 Error" in lines
    assert "  00:01:00 Warning Failed pod/default/p: ErrImageNeverPull (x3)" in lines
    assert "syncer log (10 last lines):" in lines
    assert "  INFO syncer line 29" in lines
    assert "  Authorization: Bearer <redacted>" in lines
    assert KEY[:20] not in text
    assert f"bundle: {bundle} (" in text

    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert files == {
        "summary.txt",
        "host-pods.yaml",
        "host-events.txt",
        "virtual-pods.yaml",
        "virtual-pods.txt",
        "virtual-events.txt",
        f"logs/{CONTROL_PLANE}.syncer.log",
        f"logs/{CONTROL_PLANE}.syncer.previous.log",
        f"logs/exits-one-x-default-x-{NAME}.main.log",
    }
    assert (bundle / "summary.txt").read_text() == text
    assert len((bundle / "host-events.txt").read_text().splitlines()) == 12
    syncer = (bundle / f"logs/{CONTROL_PLANE}.syncer.log").read_text()
    assert "syncer line 0" in syncer
    assert KEY[:20] not in syncer
    assert (
        "token: <redacted>" in (bundle / f"logs/exits-one-x-default-x-{NAME}.main.log").read_text()
    )
    host_yaml = (bundle / "host-pods.yaml").read_text()
    assert "managedFields" not in host_yaml
    assert "- name: TOKEN\n      value: <redacted>\n" in host_yaml
    assert "xyz" not in host_yaml
    virtual_yaml = (bundle / "virtual-pods.yaml").read_text()
    assert "missing-image" in virtual_yaml
    assert "coredns" not in virtual_yaml
    # The restarted container's previous log was asked for too.
    assert any("previous=true" in r for r in FakeAPI.requests)


def test_failures_are_reported_inline_and_the_rest_is_still_collected(
    api: client.ApiClient, tmp_path: Path
) -> None:
    FakeAPI.routes["/api/v1/pods"] = (500, json.dumps({"kind": "Status", "code": 500}))
    del FakeAPI.routes[f"/api/v1/namespaces/{NS}/events"]
    unreachable = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    try:
        text = Diagnostics(api, NAME, NS, virtual=api, bundle=tmp_path).collect()
        other = Diagnostics(unreachable, NAME, NS, virtual=None, bundle=None).collect()
    finally:
        unreachable.close()  # type: ignore[no-untyped-call]
    assert f"  (listing events in host namespace {NS} failed: 404" in text
    assert "  (listing pods in the virtual cluster failed: 500" in text
    assert "virtual events (1 of 1, warnings first):" in text
    assert "syncer log (10 last lines):" in text
    assert f"  (listing pods in host namespace {NS} failed: MaxRetryError" in other
    assert "virtual cluster: not reachable" in other
    assert "bundle:" not in other


def test_a_spent_budget_skips_the_remaining_calls(api: client.ApiClient) -> None:
    text = Diagnostics(api, NAME, NS, virtual=api, deadline=Deadline(0)).collect()
    assert f"  (listing pods in host namespace {NS}: skipped, the 0s budget is spent)" in text
    assert FakeAPI.requests == []


# -- the collector: per test, failed starts ---------------------------------------------------


def collector(api: client.ApiClient, root: Path) -> DiagnosticsCollector:
    return DiagnosticsCollector(host_api=lambda: api, root=root, run_id="run1", worker="gw0")


def test_one_section_per_cluster_with_headline(api: client.ApiClient, tmp_path: Path) -> None:
    sections = collector(api, tmp_path).sections("tests/test_a.py::test_x[1]", [handle(api)])
    assert [title for title, _ in sections] == [f"vcluster {NAME}"]
    text = sections[0][1]
    assert text.startswith(
        f"vcluster {NAME} in host namespace {NS}: server v1.34.4, created, ready in 12.3s\n"
    )
    assert (tmp_path / "tests_test_a.py_test_x_1" / NAME / "summary.txt").exists()


def test_a_kept_failed_start_gets_its_host_side(api: client.ApiClient, tmp_path: Path) -> None:
    nodeid = "test_a.py::test_x"
    namespaces = [
        {
            "metadata": {
                "name": NS,
                "labels": {"pytest-vcluster/name": NAME, "pytest-vcluster/state": "kept"},
                "annotations": {"pytest-vcluster/test": nodeid},
            }
        },
        {
            "metadata": {
                "name": "pv-other",
                "labels": {"pytest-vcluster/name": "pv-other"},
                "annotations": {"pytest-vcluster/test": "test_a.py::test_other"},
            }
        },
    ]
    FakeAPI.routes["/api/v1/namespaces"] = (200, listing("NamespaceList", namespaces))
    error = StartFailedError(f"control plane in namespace {NS}: pod crashed")
    sections = collector(api, tmp_path).sections(nodeid, [], error)
    assert len(sections) == 1
    title, text = sections[0]
    assert title == f"vcluster {NAME}"
    assert text.startswith(f"vcluster {NAME} failed to start; left in host namespace {NS}")
    assert "(state kept)" in text
    assert "virtual cluster: not reachable" in text
    assert "syncer log (10 last lines):" in text
    selector = unquote(next(r for r in FakeAPI.requests if r.startswith("/api/v1/namespaces?")))
    assert "pytest-vcluster/run-id=run1,pytest-vcluster/worker=gw0" in selector


def test_a_deleted_failed_start_says_so(api: client.ApiClient, tmp_path: Path) -> None:
    FakeAPI.routes["/api/v1/namespaces"] = (200, listing("NamespaceList", []))
    error = StartFailedError(f"control plane in namespace {NS}: pod {NS}-0 crashed")
    sections = collector(api, tmp_path).sections("t.py::t", [], error)
    assert [title for title, _ in sections] == [f"vcluster {NS}"]
    assert f"its namespace {NS} is no longer on the host" in sections[0][1]
    assert "--vcluster-teardown=keep-on-failure" in sections[0][1]


def test_a_deleted_failed_start_keeps_its_crashed_containers_words(
    api: client.ApiClient, tmp_path: Path
) -> None:
    # The syncer's log was lost with its namespace: the error now carries it to the bundle.
    FakeAPI.routes["/api/v1/namespaces"] = (200, listing("NamespaceList", []))
    error = StartFailedError(f"control plane in namespace {NS}: container syncer exited")
    said = "dial tcp 10.96.0.1:443: connect: connection refused\n"
    attach(error, [ContainerLog(f"{NS}-0", "syncer", 1, True, said)])
    [(_, text)] = collector(api, tmp_path).sections("t.py::t", [], error)
    bundle = tmp_path / "t.py_t" / NS
    assert f"bundle: {bundle} (1 crashed container log(s)" in text
    assert (bundle / f"{NS}-0.syncer.crashed.log").read_text() == said


def test_errors_that_are_no_failed_start_add_nothing(api: client.ApiClient, tmp_path: Path) -> None:
    assert collector(api, tmp_path).sections("t.py::t", [], AssertionError("x")) == []
    assert collector(api, tmp_path).sections("t.py::t", [], ConfigError("o", "bad")) == []
    assert FakeAPI.requests == []


def test_no_host_client_is_said_and_nothing_raises(tmp_path: Path) -> None:
    def broken() -> client.ApiClient:
        raise RuntimeError("no kubeconfig")

    target = DiagnosticsCollector(host_api=broken, root=tmp_path, run_id="r", worker="w")
    fake = VCluster(
        name=NAME,
        namespace=NS,
        version="v1",
        requested_version=None,
        kubeconfig=Path("/dev/null"),
        api_client=None,  # type: ignore[arg-type]
        spec_hash="h",
    )
    sections = target.sections("t.py::t", [fake], StartFailedError("boom"))
    assert "(no host API client: RuntimeError: no kubeconfig)" in sections[0][1]
    assert "whether its namespace is still on the host could not be checked" in sections[1][1]


def test_junit_properties_are_prefixed_and_indexed(api: client.ApiClient) -> None:
    assert junit_properties(handle(api), 0) == [
        ("vcluster_name", NAME),
        ("vcluster_namespace", NS),
        ("vcluster_version", "v1.34.4"),
        ("vcluster_ready_seconds", 12.345),
        ("vcluster_reused", False),
    ]
    assert junit_properties(handle(api), 1)[0] == ("vcluster_1_name", NAME)
