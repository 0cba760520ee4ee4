"""Waiting for objects inside a vcluster and reading logs, against the in-memory API.

Objects change between reads as :meth:`FakeApi.states` scripts them; a fake clock makes
timeouts instant, so a test that would wait out its timeout shows in the clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_manifests import FakeApi, FakeClock, status_body

from pytest_vcluster.cluster.conditions import (
    choose_pod,
    label_selector,
    logs,
    wait_for,
)
from pytest_vcluster.core.errors import (
    ConfigError,
    StartFailedError,
    VClusterError,
    WaitTimeoutError,
    WorkloadFailedError,
)
from pytest_vcluster.core.pods import UNSCHEDULABLE_GRACE
from pytest_vcluster.core.waits import Deadline, wait_until

DEPLOY = "/apis/apps/v1/namespaces/default/deployments/web"
PODS = "/api/v1/namespaces/default/pods"
SELECTOR = {"matchLabels": {"app": "web"}}


def deployment(
    *,
    replicas: int = 2,
    updated: int = 2,
    available: int = 2,
    total: int | None = None,
    generation: int = 1,
    observed: int = 1,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if conditions is None:
        conditions = [{"type": "Available", "status": "True" if available == replicas else "False"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": generation, "uid": "d1",
                     "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": replicas, "selector": SELECTOR},
        "status": {"observedGeneration": observed, "replicas": updated if total is None else total,
                   "updatedReplicas": updated, "availableReplicas": available,
                   "conditions": conditions},
    }  # fmt: skip


def pod(
    name: str,
    *,
    ready: bool = False,
    phase: str = "Running",
    waiting: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
    restarts: int = 0,
    created: str = "2026-01-01T00:00:00Z",
    scheduled: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": created}}
    if waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled is not None:
        conditions.append(scheduled)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "creationTimestamp": created, "labels": labels or {"app": "web"},
                     "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "example/web:1"},
                                {"name": "sidecar", "image": "example/side:1"}]},
        "status": {"phase": phase, "conditions": conditions,
                   "containerStatuses": [{"name": "app", "image": "example/web:1", "imageID": "",
                                          "ready": ready, "restartCount": restarts,
                                          "state": state}]},
    }  # fmt: skip


def replica_set(hash_: str, revision: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"web-{hash_}", "labels": {"app": "web", "pod-template-hash": hash_},
                     "annotations": {"deployment.kubernetes.io/revision": revision},
                     "ownerReferences": [{"uid": "d1"}]},
    }  # fmt: skip


def wait(api: FakeApi, *args: Any, clock: FakeClock | None = None, **kwargs: Any) -> dict[str, Any]:
    clock = clock or FakeClock()
    return wait_for(api, *args, clock=clock, sleep=clock.sleep, **kwargs)


# -- Deployments -------------------------------------------------------------------------


def test_a_deployment_is_awaited_until_rolled_out_and_available() -> None:
    api = FakeApi()
    api.states(
        DEPLOY,
        None,  # not created yet
        deployment(generation=2, observed=1),  # the controller has not seen the new spec
        deployment(updated=1, available=1, total=2),  # half-way
        deployment(updated=2, available=2, total=3),  # an old pod still terminating
        deployment(),
    )
    clock = FakeClock()
    obj = wait(api, "deployment", "web", clock=clock)
    assert obj["status"]["availableReplicas"] == 2
    assert clock.now == pytest.approx(1002.0)  # four polls, 0.5 s apart
    # The pods of a rollout in progress were looked at for hopeless states.
    assert PODS in api.requests("GET")


@pytest.mark.parametrize(
    "spelled",
    ["Deployment", "deploy", "deployments.apps", "deployment.v1.apps", "deployment/web"],
)
def test_kinds_are_spelled_as_in_kubectl(spelled: str) -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment())
    name = None if "/" in spelled else "web"
    assert wait(api, spelled, name)["metadata"]["name"] == "web"


def test_an_object_from_apply_names_kind_name_and_namespace() -> None:
    api = FakeApi()
    api.states("/apis/apps/v1/namespaces/team/deployments/web", deployment())
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "team"}}  # fmt: skip
    assert wait(api, obj, namespace="ignored")["kind"] == "Deployment"


def test_a_deployment_that_does_not_roll_out_times_out_with_the_last_state() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=1, available=1, total=2))
    api.pods[PODS] = [pod("web-a", ready=True), pod("web-b")]
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError) as info:
        wait(api, "deployment", "web", timeout=30, clock=clock)
    error = info.value
    assert error.awaited == "Deployment web in namespace default to be rolled out and Available"
    assert "1/2 updated, 1/2 available" in error.last_seen
    assert "pods: web-a Running ready; web-b Running not ready" in error.last_seen
    assert "`kubectl describe deployments.apps/web -n default`" in error.last_seen
    assert "larger timeout=" in error.last_seen
    assert clock.now == pytest.approx(1030.0)


def test_a_deployment_past_its_progress_deadline_fails_at_once() -> None:
    api = FakeApi()
    stuck = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
              "message": 'ReplicaSet "web-1" has timed out progressing.'}]  # fmt: skip
    api.states(DEPLOY, deployment(updated=1, available=0, conditions=stuck))
    clock = FakeClock()
    with pytest.raises(WorkloadFailedError, match="exceeded its progress deadline: ReplicaSet"):
        wait(api, "deploy", "web", clock=clock)
    assert clock.now == 1000.0


# -- failing fast ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_an_image_that_cannot_be_pulled_fails_within_a_poll(reason: str) -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=1, available=0))
    api.pods[PODS] = [pod("web-a", waiting=(reason, 'pull "example/web:1": not found'))]
    clock = FakeClock()
    with pytest.raises(WorkloadFailedError) as info:
        wait(api, "deployment", "web", clock=clock)
    text = str(info.value)
    assert text.startswith(
        f"Deployment web in namespace default: pod web-a container app is {reason} "
        '(image example/web:1): pull "example/web:1": not found'
    )
    assert "imagePullPolicy IfNotPresent" in text
    assert clock.now == 1000.0


def test_a_crash_loop_fails_with_the_pod_reason() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=1, available=0))
    api.pods[PODS] = [pod("web-a", waiting=("CrashLoopBackOff", "back-off 40s"), restarts=3)]
    with pytest.raises(WorkloadFailedError, match="pod web-a container app is CrashLoopBackOff"):
        wait(api, "deployment", "web")


def test_only_the_pods_of_the_newest_revision_can_fail_the_wait() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=2, available=1, total=3), deployment())
    api.replicasets["/apis/apps/v1/namespaces/default/replicasets"] = [
        replica_set("old", "1"),
        replica_set("new", "2"),
    ]
    # The broken pod of the previous revision is on its way out: no reason to fail.
    api.pods[PODS] = [
        pod("web-old", waiting=("ImagePullBackOff", "nope"),
            labels={"app": "web", "pod-template-hash": "old"}),
        pod("web-new", ready=True, labels={"app": "web", "pod-template-hash": "new"}),
    ]  # fmt: skip
    assert wait(api, "deployment", "web")["metadata"]["name"] == "web"


def test_a_pod_unschedulable_for_longer_than_the_grace_fails() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=1, available=0))
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/1 nodes are available: 1 Insufficient cpu."}  # fmt: skip
    api.pods[PODS] = [pod("web-a", phase="Pending", scheduled=unschedulable)]
    clock = FakeClock()
    with pytest.raises(WorkloadFailedError, match="cannot be scheduled for 15s: 0/1 nodes"):
        wait(api, "deployment", "web", clock=clock)
    assert UNSCHEDULABLE_GRACE < clock.now - 1000.0 < UNSCHEDULABLE_GRACE + 1


# -- Jobs, Pods, CRDs, others ---------------------------------------------------------------

JOB = "/apis/batch/v1/namespaces/default/jobs/migrate"


def job(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"job-name": "migrate"}}},
        "status": {"active": 1, "conditions": list(conditions)},
    }  # fmt: skip


def test_a_job_is_awaited_until_complete() -> None:
    api = FakeApi()
    api.states(JOB, job(), job({"type": "Complete", "status": "True"}))
    assert wait(api, "job", "migrate")["status"]["conditions"][0]["type"] == "Complete"


def test_a_failed_job_fails_at_once_with_its_reason() -> None:
    api = FakeApi()
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit"}  # fmt: skip
    api.states(JOB, job(failed))
    clock = FakeClock()
    with pytest.raises(WorkloadFailedError, match="Job migrate failed: BackoffLimitExceeded: Job"):
        wait(api, "jobs", "migrate", clock=clock)
    assert clock.now == 1000.0
    # Waiting for the failure itself is no failure.
    assert wait(api, "job", "migrate", condition="Failed")["kind"] == "Job"


def test_a_pod_is_awaited_until_ready_or_a_phase() -> None:
    api = FakeApi()
    path = f"{PODS}/one"
    api.states(path, pod("one"), pod("one", ready=True))
    assert wait(api, "pod", "one")["status"]["phase"] == "Running"
    api.states(path, pod("one", ready=True), pod("one", phase="Succeeded"))
    assert wait(api, "po/one", condition="Succeeded")["status"]["phase"] == "Succeeded"
    api.states(path, pod("one", phase="Succeeded"))
    with pytest.raises(
        WorkloadFailedError, match=r"finished \(Succeeded\) and will never be Ready"
    ):
        wait(api, "pod", "one")
    api.states(path, pod("one", waiting=("InvalidImageName", "bad ref")))
    with pytest.raises(WorkloadFailedError, match="pod one container app is InvalidImageName"):
        wait(api, "pod", "one")


CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"


def crd(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "status": {"conditions": list(conditions)}}  # fmt: skip


def test_a_crd_is_awaited_until_established() -> None:
    api = FakeApi()
    api.states(CRD, crd(), crd({"type": "Established", "status": "True"}))
    # Cluster-scoped: the namespace does not matter.
    assert wait(api, "crd", "widgets.example.com", namespace="x")["kind"] == (
        "CustomResourceDefinition"
    )
    api.states(CRD, crd({"type": "NamesAccepted", "status": "False", "message": "taken"}))
    with pytest.raises(WorkloadFailedError, match="names were not accepted: taken"):
        wait(api, "customresourcedefinition", "widgets.example.com")


def test_any_condition_type_and_value() -> None:
    api = FakeApi()
    api.discovery["example.com/v1"] = [
        {"name": "widgets", "kind": "Widget", "namespaced": True, "singularName": "widget"}
    ]
    path = "/apis/example.com/v1/namespaces/default/widgets/w1"
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}}
    ready = {**widget, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    api.states(path, widget, ready)
    with pytest.raises(ConfigError, match="Widget has no default condition to wait for"):
        wait(api, "widget", "w1")
    assert wait(api, "widgets.example.com", "w1", condition="ready")["status"]
    api.states(path, ready)
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError, match="to have condition Ready=False"):
        wait(api, "widget", "w1", condition="Ready=False", timeout=2, clock=clock)
    # A condition that describes an older generation does not count yet.
    stale = {**widget, "metadata": {"name": "w1", "generation": 3},
             "status": {"conditions": [
                 {"type": "Ready", "status": "True", "observedGeneration": 2}]}}  # fmt: skip
    api.states(path, stale)
    with pytest.raises(WaitTimeoutError):
        wait(api, "widget", "w1", condition="Ready", timeout=2)


def test_deleted_waits_until_the_object_is_gone() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(), deployment(), None)
    assert wait(api, "deployment", "web", condition="deleted")["kind"] == "Deployment"
    api.states(DEPLOY, None)
    assert wait(api, "deployment", "web", condition="gone") == {}
    held = deployment()
    held["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x/y"]}
    api.states(DEPLOY, held)
    with pytest.raises(WaitTimeoutError, match=r"being deleted, held by finalizers \['x/y'\]"):
        wait(api, "deployment", "web", condition="deleted", timeout=3)


def test_unknown_kinds_and_missing_names_are_config_errors() -> None:
    api = FakeApi()
    with pytest.raises(ConfigError, match=r"serves no kind 'deplyment' \(did you mean deployment"):
        wait(api, "deplyment", "web")
    with pytest.raises(ConfigError, match="no name for 'deployment'"):
        wait(api, "deployment")


def test_wait_until_passes_the_errors_it_is_told_are_fatal() -> None:
    clock = FakeClock()

    def failing(error: Exception) -> Any:
        def check() -> tuple[bool, str]:
            raise error

        return check

    # Unchanged: StartFailedError ends a wait, anything else is "not yet".
    with pytest.raises(StartFailedError):
        wait_until("x", failing(StartFailedError("s")), Deadline(5, clock=clock), sleep=clock.sleep)
    with pytest.raises(WaitTimeoutError, match="WorkloadFailedError: w"):
        wait_until(
            "x", failing(WorkloadFailedError("w")), Deadline(5, clock=clock), sleep=clock.sleep
        )
    with pytest.raises(WorkloadFailedError):
        wait_until(
            "x", failing(WorkloadFailedError("w")), Deadline(5, clock=clock), sleep=clock.sleep,
            fatal=(WorkloadFailedError,),
        )  # fmt: skip


# -- logs ------------------------------------------------------------------------------------


def test_logs_of_a_workload_read_its_ready_pod_and_default_container() -> None:
    api = FakeApi()
    api.objects[DEPLOY] = deployment()
    api.replicasets["/apis/apps/v1/namespaces/default/replicasets"] = [replica_set("new", "2")]
    labels = {"app": "web", "pod-template-hash": "new"}
    api.pods[PODS] = [
        pod("web-pending", phase="Pending", labels=labels, created="2026-01-02T00:00:00Z"),
        pod("web-ready", ready=True, labels=labels,
            annotations={"kubectl.kubernetes.io/default-container": "sidecar"}),
    ]  # fmt: skip
    api.logs[f"{PODS}/web-ready/log"] = "hello\n"
    assert logs(api, "deployment/web", tail=5, previous=True) == "hello\n"
    method, path, query, _, _ = api.calls[-1]
    assert (method, path) == ("GET", f"{PODS}/web-ready/log")
    assert query == {"container": "sidecar", "tailLines": "5", "previous": "true"}


def test_logs_of_a_pod_by_name_use_its_first_container() -> None:
    api = FakeApi()
    api.objects[f"{PODS}/one"] = pod("one")
    api.logs[f"{PODS}/one/log"] = "out"
    assert logs(api, "one") == "out"
    assert api.calls[-1][2] == {"container": "app"}
    assert logs(api, api.objects[f"{PODS}/one"], container="sidecar") == "out"
    assert api.calls[-1][2] == {"container": "sidecar"}


def test_logs_errors_say_what_is_missing() -> None:
    api = FakeApi()
    with pytest.raises(VClusterError, match="no Pod nope in namespace default in the vcluster"):
        logs(api, "nope")
    api.objects[DEPLOY] = deployment()
    with pytest.raises(VClusterError, match="has no pods yet; wait for it first"):
        logs(api, "deploy/web")
    api.objects[f"{PODS}/one"] = pod("one")
    api.on(
        lambda m, path, q, b: (
            (400, status_body(400, 'container "app" is waiting to start'))
            if path.endswith("/log")
            else None
        )
    )
    with pytest.raises(VClusterError, match='400 Error: container "app" is waiting to start'):
        logs(api, "pod/one")


def test_choose_pod_and_label_selector() -> None:
    api = FakeApi()
    assert choose_pod([]) is None
    pods = api.deserialize(
        json.dumps({"items": [pod("a", phase="Succeeded"), pod("b"), pod("c", ready=True)]}),
        "V1PodList",
        "application/json",
    ).items  # fmt: skip
    assert choose_pod(pods).metadata.name == "c"
    assert choose_pod(pods[:2]).metadata.name == "b"
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["x", "y"]},
            {"key": "gone", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector(selector) == "a=1,b=2,tier in (x,y),!gone"


def test_statefulsets_and_daemonsets_are_awaited_until_rolled_out() -> None:
    api = FakeApi()
    sts_path = "/apis/apps/v1/namespaces/default/statefulsets/db"

    def sts(ready: int, current: str, update: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": ready,
                       "availableReplicas": ready, "updatedReplicas": 2,
                       "currentRevision": current, "updateRevision": update},
        }  # fmt: skip

    api.states(sts_path, sts(1, "db-1", "db-1"), sts(2, "db-1", "db-2"), sts(2, "db-2", "db-2"))
    clock = FakeClock()
    assert wait(api, "sts", "db", clock=clock)["status"]["currentRevision"] == "db-2"
    assert clock.now == pytest.approx(1001.0)
    api.states(sts_path, sts(2, "db-1", "db-2"))
    with pytest.raises(WaitTimeoutError, match="revision db-1 still being replaced by db-2"):
        wait(api, "statefulset", "db", timeout=2)

    ds_path = "/apis/apps/v1/namespaces/default/daemonsets/agent"

    def ds(updated: int, available: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 3,
                       "updatedNumberScheduled": updated, "numberAvailable": available},
        }  # fmt: skip

    api.states(ds_path, ds(2, 3), ds(3, 2), ds(3, 3))
    clock = FakeClock()
    assert wait(api, "ds", "agent", clock=clock)["status"]["numberAvailable"] == 3
    assert clock.now == pytest.approx(1001.0)


def test_a_long_pull_error_keeps_its_end_where_the_cause_is() -> None:
    api = FakeApi()
    api.states(DEPLOY, deployment(updated=1, available=0))
    message = "failed to pull: " + "x" * 1000 + ": lookup registry-1.docker.io: no such host"
    api.pods[PODS] = [pod("web-a", waiting=("ErrImagePull", message))]
    with pytest.raises(WorkloadFailedError) as info:
        wait(api, "deployment", "web")
    assert "failed to pull: xxx" in str(info.value)
    assert "registry-1.docker.io: no such host; check the image name" in str(info.value)
    assert len(str(info.value)) < 1000
