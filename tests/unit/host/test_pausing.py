"""Pausing and resuming by the API writes what ``vcluster pause`` writes, and undoes it."""

from __future__ import annotations

from kubernetes import client

from pytest_vcluster.host.pausing import (
    ANNOTATION_PAUSED,
    ANNOTATION_PAUSED_DATE,
    ANNOTATION_PAUSED_REPLICAS,
    _paused_body,
    _resumed_body,
)


def statefulset(replicas: int, annotations: dict[str, str] | None = None) -> client.V1StatefulSet:
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="vc", annotations=annotations),
        spec=client.V1StatefulSetSpec(
            replicas=replicas, selector=client.V1LabelSelector(), service_name="vc",
            template=client.V1PodTemplateSpec(),
        ),
    )  # fmt: skip


def test_pause_scales_to_zero_and_remembers_the_replicas() -> None:
    body = _paused_body(statefulset(1))
    assert body["spec"] == {"replicas": 0}
    annotations = body["metadata"]["annotations"]
    assert annotations[ANNOTATION_PAUSED] == "true"
    assert annotations[ANNOTATION_PAUSED_REPLICAS] == "1"
    assert annotations[ANNOTATION_PAUSED_DATE].endswith("Z")


def test_resume_restores_the_replicas_and_removes_the_annotations() -> None:
    paused = statefulset(0, {ANNOTATION_PAUSED: "true", ANNOTATION_PAUSED_REPLICAS: "3"})
    body = _resumed_body(paused)
    assert body["spec"] == {"replicas": 3}
    assert body["metadata"]["annotations"] == {
        ANNOTATION_PAUSED: None,  # a merge patch with null removes the key
        ANNOTATION_PAUSED_REPLICAS: None,
        ANNOTATION_PAUSED_DATE: None,
    }
    broken = statefulset(0, {ANNOTATION_PAUSED: "true", ANNOTATION_PAUSED_REPLICAS: "x"})
    assert _resumed_body(broken)["spec"] == {"replicas": 1}
