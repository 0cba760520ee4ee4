"""Readiness probes: inside the virtual cluster, and failing fast on pods that will not start.

The first tests run against a local HTTPS stand-in for the virtual API server. It serves a
certificate for ``localhost`` on 127.0.0.1, as the vcluster API does behind the port forward,
so they also check that the rewritten kubeconfig keeps TLS verification on and verifies the
certificate as ``localhost``. The last ones feed :func:`raise_if_stuck` and
:func:`pod_scheduled` pod objects as the host API returns them.
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from kubernetes import client, config

from pytest_vcluster.cluster.connection import rewrite_kubeconfig
from pytest_vcluster.cluster.probes import (
    UNSCHEDULABLE_GRACE,
    PhaseTimer,
    coredns_ready,
    pod_scheduled,
    raise_if_stuck,
    readyz,
    service_account,
    wait_for,
)
from pytest_vcluster.core.errors import StartFailedError, WaitTimeoutError
from pytest_vcluster.core.waits import Deadline

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.4",
    "gitCommit": "abc",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def coredns_pods(ready: bool) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": "coredns-1", "namespace": "kube-system"},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        ],
    }


class FakeAPI(http.server.BaseHTTPRequestHandler):
    state: ClassVar[dict[str, int]] = {}
    missing_sa_answers = 2
    coredns_ready = True
    host_coredns_ready = True

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        self.state[path] = self.state.get(path, 0) + 1
        if path == "/readyz":
            self.reply(200, "ok", "text/plain")
        elif path == "/version":
            self.reply(200, json.dumps(VERSION))
        elif path == "/api/v1/namespaces/default/serviceaccounts/default":
            if self.state[path] <= self.missing_sa_answers:
                self.reply(404, json.dumps({"kind": "Status", "code": 404, "reason": "NotFound"}))
            else:
                self.reply(200, json.dumps({"metadata": {"name": "default"}}))
        elif path == "/api/v1/namespaces/kube-system/pods":
            self.reply(200, json.dumps(coredns_pods(self.coredns_ready)))
        elif path == "/api/v1/namespaces/host-ns/pods":
            # The same stand-in answers as the host: CoreDNS as synced there.
            self.reply(200, json.dumps(coredns_pods(self.host_coredns_ready)))
        else:
            self.reply(404, "{}")

    def reply(self, code: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server(certificate: tuple[Path, Path]) -> Iterator[int]:
    FakeAPI.state = {}
    FakeAPI.coredns_ready = True
    FakeAPI.host_coredns_ready = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def api_client(
    tmp_path: Path, certificate: tuple[Path, Path], port: int, name: str
) -> client.ApiClient:
    ca = base64.b64encode(certificate[0].read_bytes()).decode()
    secret_kubeconfig = f"""
apiVersion: v1
kind: Config
clusters:
- name: vc
  cluster: {{server: "https://localhost:8443", certificate-authority-data: {ca}}}
contexts: [{{name: vc, context: {{cluster: vc, user: vc}}}}]
current-context: vc
users: [{{name: vc, user: {{token: secret}}}}]
"""
    path = tmp_path / "kubeconfig"
    path.write_text(rewrite_kubeconfig(secret_kubeconfig, f"https://127.0.0.1:{port}", name))
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(path), client_configuration=configuration, persist_config=False
    )
    return client.ApiClient(configuration)


def wait_inside(api: client.ApiClient, deadline: Deadline) -> PhaseTimer:
    timer = PhaseTimer()
    host = client.CoreV1Api(api)
    probes = [readyz(api), service_account(api), coredns_ready(api, host, "host-ns", "vc")]
    wait_for(probes, deadline, timer, sleep=lambda _: None)
    return timer


def test_waits_for_service_account_and_times_each_phase(
    tmp_path: Path, certificate: tuple[Path, Path], server: int
) -> None:
    with api_client(tmp_path, certificate, server, "localhost") as api:
        timer = wait_inside(api, Deadline(30))
    assert [phase for phase, _ in timer.phases] == ["readyz", "service-account", "coredns"]
    seconds = [elapsed for _, elapsed in timer.phases]
    assert seconds == sorted(seconds)
    assert FakeAPI.state["/api/v1/namespaces/default/serviceaccounts/default"] == 3


def test_coredns_not_ready_times_out_saying_what_it_saw(
    tmp_path: Path, certificate: tuple[Path, Path], server: int
) -> None:
    FakeAPI.coredns_ready = False
    with (
        api_client(tmp_path, certificate, server, "localhost") as api,
        pytest.raises(WaitTimeoutError) as info,
    ):
        wait_inside(api, Deadline(0.5))
    assert "CoreDNS" in info.value.awaited
    assert info.value.last_seen == "virtual: coredns-1 Running not ready"


def test_certificate_is_verified_against_the_tls_server_name(
    tmp_path: Path, certificate: tuple[Path, Path], server: int
) -> None:
    with (
        api_client(tmp_path, certificate, server, "not-localhost") as api,
        pytest.raises(
            WaitTimeoutError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
        ),
    ):
        wait_inside(api, Deadline(0.5))


def test_coredns_stale_after_resume_is_not_ready_until_its_host_pod_is(
    tmp_path: Path, certificate: tuple[Path, Path], server: int
) -> None:
    FakeAPI.host_coredns_ready = False  # the virtual pod still says Ready from before the pause
    with (
        api_client(tmp_path, certificate, server, "localhost") as api,
        pytest.raises(WaitTimeoutError) as info,
    ):
        wait_inside(api, Deadline(0.5))
    assert info.value.last_seen == "on the host: coredns-1 Running not ready"


# -- failing fast on pods that will not start ------------------------------------------------


def _exited(
    code: int, reason: str, message: str | None = None, ran: float | None = None
) -> client.V1ContainerState:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    return client.V1ContainerState(
        terminated=client.V1ContainerStateTerminated(
            exit_code=code,
            reason=reason,
            message=message,
            started_at=started if ran is not None else None,
            finished_at=started + timedelta(seconds=ran) if ran is not None else None,
        )
    )


def _running() -> client.V1ContainerState:
    return client.V1ContainerState(running=client.V1ContainerStateRunning())


def _waiting(reason: str, message: str | None = None) -> client.V1ContainerState:
    return client.V1ContainerState(
        waiting=client.V1ContainerStateWaiting(reason=reason, message=message)
    )


def _container(
    name: str,
    state: client.V1ContainerState,
    last: client.V1ContainerState | None = None,
    restarts: int = 0,
) -> client.V1ContainerStatus:
    return client.V1ContainerStatus(
        name=name,
        image="img",
        image_id="",
        ready=False,
        restart_count=restarts,
        state=state,
        last_state=last,
    )


def _pod(
    *containers: client.V1ContainerStatus,
    init: list[client.V1ContainerStatus] | None = None,
    deleting: bool = False,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="vc-0",
            namespace="pv-ns",
            deletion_timestamp=datetime(2026, 1, 1, tzinfo=UTC) if deleting else None,
        ),
        status=client.V1PodStatus(
            phase="Running",
            init_container_statuses=init,
            container_statuses=list(containers),
        ),
    )


def test_a_healthy_start_is_not_stuck() -> None:
    # What the offline stack shows once a vcluster is ready: the init container Completed,
    # no restarts; and a container that once exited 0 is no crash either.
    raise_if_stuck(
        [
            _pod(
                _container("syncer", _running()),
                _container("sidecar", _running(), last=_exited(0, "Completed"), restarts=1),
                init=[_container("kubernetes", _exited(0, "Completed"))],
            )
        ],
        "cp",
    )
    raise_if_stuck([_pod(_container("syncer", _waiting("ContainerCreating")))], "cp")


def test_crash_loop_fails_at_the_second_crash_naming_the_last_exit() -> None:
    def pod(restarts: int) -> client.V1Pod:
        return _pod(
            _container(
                "syncer",
                _waiting("CrashLoopBackOff", "back-off 20s restarting failed container"),
                last=_exited(1, "Error", "fatal: no etcd"),
                restarts=restarts,
            )
        )

    # One crash is tolerated: a syncer on a busy host was seen to exit once and then start.
    raise_if_stuck([pod(1)], "control plane in namespace pv-ns")
    with pytest.raises(StartFailedError) as info:
        raise_if_stuck([pod(2)], "control plane in namespace pv-ns")
    assert str(info.value) == (
        "control plane in namespace pv-ns: pod vc-0 container syncer is CrashLoopBackOff "
        "(last exit: Error, exit code 1: fatal: no etcd): back-off 20s restarting failed "
        "container; its output: `kubectl logs -n pv-ns vc-0 -c syncer --previous`"
    )


def test_a_container_that_exited_non_zero_again_fails_before_its_restart() -> None:
    raise_if_stuck([_pod(_container("syncer", _exited(2, "Error")))], "cp")  # the first exit
    pod = _pod(_container("syncer", _exited(2, "Error"), restarts=1))
    with pytest.raises(StartFailedError) as info:
        raise_if_stuck([pod], "cp")
    assert str(info.value) == (
        "cp: pod vc-0 container syncer exited: Error, exit code 2 (2 times); "
        "its output: `kubectl logs -n pv-ns vc-0 -c syncer`"
    )


def test_a_container_running_again_after_crashes_fails() -> None:
    once = _pod(_container("syncer", _running(), last=_exited(137, "OOMKilled"), restarts=1))
    raise_if_stuck([once], "cp")
    twice = _pod(_container("syncer", _running(), last=_exited(137, "OOMKilled"), restarts=2))
    with pytest.raises(
        StartFailedError, match=r"container syncer exited: OOMKilled, exit code 137 .*--previous"
    ):
        raise_if_stuck([twice], "cp")


def test_a_crashing_init_container_is_named() -> None:
    pod = _pod(
        _container("syncer", _waiting("PodInitializing")),
        init=[
            _container(
                "kubernetes", _waiting("CrashLoopBackOff"), last=_exited(1, "Error"), restarts=2
            )
        ],
    )
    with pytest.raises(StartFailedError, match="container kubernetes is CrashLoopBackOff"):
        raise_if_stuck([pod], "cp")


def test_a_crash_after_a_long_run_is_waited_out_longer() -> None:
    # A syncer that ran for a while and then gave up (a starved host), not a bad flag.
    def pod(restarts: int, ran: float) -> client.V1Pod:
        return _pod(_container("syncer", _exited(1, "Error", ran=ran), restarts=restarts))

    raise_if_stuck([pod(1, ran=40)], "cp")  # the second crash, but a slow one
    raise_if_stuck([pod(3, ran=40)], "cp")
    with pytest.raises(StartFailedError, match=r"exited: Error, exit code 1 \(5 times\)"):
        raise_if_stuck([pod(4, ran=40)], "cp")
    with pytest.raises(StartFailedError, match=r"exited: Error, exit code 1 \(2 times\)"):
        raise_if_stuck([pod(1, ran=0.4)], "cp")  # a fast second crash fails as before


def test_containers_killed_while_their_pod_is_deleted_are_no_crash() -> None:
    raise_if_stuck([_pod(_container("coredns", _exited(137, "Error")), deleting=True)], "dns")


def test_image_errors_name_the_container_without_a_logs_hint() -> None:
    pod = _pod(_container("syncer", _waiting("ErrImageNeverPull", "image not present")))
    with pytest.raises(StartFailedError) as info:
        raise_if_stuck([pod], "cp")
    assert str(info.value) == (
        "cp: pod vc-0 container syncer is ErrImageNeverPull: image not present"
    )


def test_an_unschedulable_pod_fails_after_15_seconds_with_the_fix() -> None:
    class Pods:
        def list_namespaced_pod(self, *args: object, **kwargs: object) -> client.V1PodList:
            condition = client.V1PodCondition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/1 nodes: Insufficient memory",
            )
            pod = client.V1Pod(
                metadata=client.V1ObjectMeta(name="vc-0"),
                status=client.V1PodStatus(phase="Pending", conditions=[condition]),
            )
            return client.V1PodList(items=[pod])

    now = [100.0]
    probe = pod_scheduled(Pods(), "ns", "app=vcluster", clock=lambda: now[0])  # type: ignore[arg-type]
    assert UNSCHEDULABLE_GRACE == 15
    assert probe.check()[0] is False
    now[0] = 115.0
    assert probe.check()[0] is False
    now[0] = 115.5
    with pytest.raises(StartFailedError) as info:
        probe.check()
    message = str(info.value)
    assert "cannot be scheduled on the host for 15s: 0/1 nodes: Insufficient memory" in message
    assert "--vcluster-lookahead" in message
