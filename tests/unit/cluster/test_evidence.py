"""Evidence of a crashed control plane: which logs are read, bounded and redacted, and which
crashes are worth a second start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client

from pytest_vcluster.cluster.evidence import ContainerLog, attach, is_transient, read_restarted_logs
from pytest_vcluster.core.errors import StartFailedError, WaitTimeoutError


def status(name: str, restarts: int, exit_code: int | None = None) -> client.V1ContainerStatus:
    state = client.V1ContainerState(
        terminated=client.V1ContainerStateTerminated(exit_code=exit_code)
        if exit_code is not None
        else None,
        running=None if exit_code is not None else client.V1ContainerStateRunning(),
    )
    return client.V1ContainerStatus(
        name=name, image="i", image_id="", ready=False, restart_count=restarts, state=state
    )


@dataclass
class FakeCore:
    statuses: list[client.V1ContainerStatus]
    reads: list[dict[str, Any]] = field(default_factory=list)

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> client.V1PodList:
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="vc-0", namespace=namespace),
            status=client.V1PodStatus(container_statuses=self.statuses),
        )
        return client.V1PodList(items=[pod])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        self.reads.append({"pod": name, **kwargs})
        if kwargs["container"] == "broken":
            raise RuntimeError("410 Gone")
        return "line 1\ntoken: abcdefgh\n\x1b[31mERROR\x1b[0m connect: connection refused\n"


def test_reads_the_previous_run_of_restarted_and_the_last_of_exited_containers() -> None:
    core = FakeCore(
        [
            status("syncer", 2),  # running again after two crashes: the previous run crashed
            status("init", 0, exit_code=1),
            status("ok", 0),
            # Exited just now after an earlier crash: the kubelet kept only this dead run.
            status("again", 1, exit_code=1),
        ]
    )
    logs = read_restarted_logs(cast(client.CoreV1Api, core), "ns", "app=vcluster")
    assert [(entry.container, entry.previous) for entry in logs] == [
        ("syncer", True),
        ("init", False),
        ("again", False),
    ]
    assert all(read["limit_bytes"] and read["tail_lines"] for read in core.reads)
    assert "abcdefgh" not in logs[0].text  # credentials never leave redacted
    assert logs[0].tail(1) == "ERROR connect: connection refused"  # without terminal colours


def test_an_unreadable_log_says_so_instead_of_failing() -> None:
    core = FakeCore([status("broken", 1)])
    [entry] = read_restarted_logs(cast(client.CoreV1Api, core), "ns", "app=vcluster")
    assert entry.text == "(log could not be read: RuntimeError: 410 Gone)"


def test_attach_ends_the_message_with_each_logs_last_lines() -> None:
    error = StartFailedError("control plane in namespace ns: container syncer exited: Error")
    attach(error, [ContainerLog("vc-0", "syncer", 1, True, "a\nb\nc\n")])
    assert str(error) == (
        "control plane in namespace ns: container syncer exited: Error\n"
        "--- pod vc-0 container syncer, previous run (restarted 1x), last lines ---\na\nb\nc"
    )


def test_only_a_crash_for_want_of_an_api_is_transient() -> None:
    refused = [
        ContainerLog("vc-0", "syncer", 1, True, "dial tcp 10.96.0.1:443: connection refused")
    ]
    bad_flag = [ContainerLog("vc-0", "syncer", 1, True, "Error: unknown flag: --x")]
    crash = StartFailedError("pod vc-0 container syncer exited: Error, exit code 1 (2 times)")
    assert is_transient(crash, refused)
    assert not is_transient(crash, bad_flag)
    pull = StartFailedError("pod vc-0 container syncer is ErrImageNeverPull")
    assert not is_transient(pull, refused)
    assert not is_transient(WaitTimeoutError("readyz", 300, "503"), refused)


def test_a_crash_on_the_kubernetes_service_race_is_transient() -> None:
    # vcluster's syncer replaces the virtual default/kubernetes Service (delete, then create
    # with the host's IP); the API server's reconciler, which makes a missing one every 10 s,
    # can make it in between, and the syncer exits. A new start does not meet it again.
    race = [
        ContainerLog(
            "vc-0", "syncer", 2, True,
            'ERROR cmd/root.go:62 error {"error": "start controllers: start controllers: sync '
            'kubernetes service: sync kubernetes service: services \\"kubernetes\\" already '
            'exists"}',
        )
    ]  # fmt: skip
    crash = StartFailedError("pod vc-0 container syncer exited: Error, exit code 1 (2 times)")
    assert is_transient(crash, race)
    other = [ContainerLog("vc-0", "syncer", 2, True, 'secrets "vc-x" already exists')]
    assert not is_transient(crash, other)
