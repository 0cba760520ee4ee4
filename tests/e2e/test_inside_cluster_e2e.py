"""Working inside a vcluster on the real stack: Helm charts, manifests, waits, versions.

One inner pytest run (a subprocess, as a user starts it) carries every case that needs clusters,
so the tier pays for one kind host and one run: the chart example (``examples/test_chart.py``
and ``examples/charts/hello``, copied unchanged) once per served Kubernetes version through
``--vcluster-versions=all``, next to three small tests pinned to the default version: ``apply``
of a directory holding a CRD and an object of it, ``wait_for`` giving up at once on an image
that cannot be pulled, and the marker's ``manifests=`` applied before the test. A conftest in
the inner run records each test's outcome and its cluster's ``/version`` as JSON lines, and the
tests here check those facts case by case. Versions the stack does not serve are refused at
startup: those runs make no cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .behaviour import BEHAVIOUR, assert_behaviour
from .inner import RECORDING_CONFTEST, InnerRun, read_facts, removed_kind_host
from .stack import BEARER, Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-inside"
ROOT = Path(__file__).resolve().parents[2]
INNER_TIMEOUT = 1800
BAD_IMAGE = "pytest-vcluster/no-such-image:1"
#: The timeout given to the failing waits; the failure must come well before it.
FAIL_FAST_TIMEOUT = 120.0

CONFTEST = (
    RECORDING_CONFTEST
    + """

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    handle = item.funcargs.get("vcluster")
    if handle is not None:
        record(event="cluster", test=item.name, version=handle.version,
               requested=str(handle.requested_version))
    yield
"""
)

INNER = """
import json, pathlib, time

import pytest
from kubernetes import client

from pytest_vcluster.core.errors import WorkloadFailedError

HERE = pathlib.Path(__file__).parent
VERSION = {version!r}
BAD_IMAGE = {bad_image!r}
TIMEOUT = {timeout!r}
FACTS = pathlib.Path({facts!r})


def record(**fields):
    with FACTS.open("a") as f:
        f.write(json.dumps(fields) + "\\n")


@pytest.mark.vcluster(version=VERSION)
def test_apply_crd_directory(vcluster):
    applied = vcluster.apply(HERE / "crd")
    custom = client.CustomObjectsApi(vcluster.api_client)
    widget = custom.get_namespaced_custom_object(
        "examples.pytest-vcluster.dev", "v1", "default", "widgets", "blue-one"
    )
    again = vcluster.apply(HERE / "crd")

    def versions(objects):
        return {{f"{{o['kind']}}/{{o['metadata']['name']}}": [o["metadata"]["uid"],
                 o["metadata"].get("generation")] for o in objects}}

    record(case="apply", applied=[f"{{o['kind']}}/{{o['metadata']['name']}}" for o in applied],
           first=versions(applied), again=versions(again), spec=widget["spec"])


@pytest.mark.vcluster(version=VERSION)
def test_wait_for_fails_fast(vcluster):
    container = {{"name": "app", "image": BAD_IMAGE, "imagePullPolicy": "IfNotPresent"}}
    vcluster.apply([
        {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "broken"}},
          "spec": {{"containers": [container]}}}},
        {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "broken"}},
          "spec": {{"replicas": 1, "selector": {{"matchLabels": {{"app": "broken"}}}},
                   "template": {{"metadata": {{"labels": {{"app": "broken"}}}},
                                "spec": {{"containers": [container]}}}}}}}},
    ])
    for kind in ("pod", "deployment"):
        started = time.monotonic()
        with pytest.raises(WorkloadFailedError) as failed:
            vcluster.wait_for(kind, "broken", timeout=TIMEOUT)
        record(case="fail-fast", kind=kind, seconds=time.monotonic() - started,
               message=str(failed.value))


@pytest.mark.vcluster(version=VERSION, manifests=["deploy/"])
def test_manifests_marker(vcluster):
    # Applied during setup: here they are already in the cluster.
    settings = vcluster.core_v1().read_namespaced_config_map("settings", "team")
    deployment = vcluster.wait_for("deployment", "web", namespace="team")
    record(case="manifests", data=settings.data,
           available=deployment["status"].get("availableReplicas"))
"""

# Named so that a plain sort would apply the object before its CRD.
CRD_DIR = {
    "a-widget.yaml": """
        apiVersion: examples.pytest-vcluster.dev/v1
        kind: Widget
        metadata:
          name: blue-one
          namespace: default
        spec:
          size: 3
          color: blue
    """,
    "b-crd.yaml": """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: widgets.examples.pytest-vcluster.dev
        spec:
          group: examples.pytest-vcluster.dev
          scope: Namespaced
          names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  properties:
                    spec:
                      type: object
                      required: [size]
                      properties:
                        size: {type: integer, minimum: 1}
                        color: {type: string}
    """,
}

DEPLOY_DIR = {
    "00-namespace.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: team
    """,
    "10-app.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: settings
          namespace: team
        data:
          mode: test
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          namespace: team
        spec:
          replicas: 1
          selector:
            matchLabels: {{app: web}}
          template:
            metadata:
              labels: {{app: web}}
            spec:
              containers:
                - name: web
                  image: {image}
                  imagePullPolicy: IfNotPresent
    """,
}


def write_tree(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(scope="module")
def kind_host(stack: Stack) -> Iterator[str]:
    """The kind host name; the inner run creates the host, and it is deleted here in any case."""
    yield from removed_kind_host(stack, HOST)


@pytest.fixture(scope="module")
def inner_run(stack: Stack, kind_host: str, tmp_path_factory: pytest.TempPathFactory) -> InnerRun:
    directory = tmp_path_factory.mktemp("inside")
    facts = directory / "facts.jsonl"
    shutil.copy(ROOT / "examples" / "test_chart.py", directory / "test_chart.py")
    shutil.copytree(ROOT / "examples" / "charts", directory / "charts")
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST).format(facts=str(facts)))
    (directory / "test_inside.py").write_text(
        textwrap.dedent(INNER).format(
            version=stack.minors[0],
            bad_image=BAD_IMAGE,
            timeout=FAIL_FAST_TIMEOUT,
            facts=str(facts),
        )
    )
    (directory / "bearer.py").write_text(BEARER)
    (directory / "test_behaviour.py").write_text(
        textwrap.dedent(BEHAVIOUR)
        .replace("@VERSION@", stack.minors[-1])
        .replace("@IMAGE@", stack.workload_image)
        .replace("@FACTS@", str(facts))
    )
    write_tree(directory / "crd", CRD_DIR)
    write_tree(
        directory / "deploy",
        {name: text.format(image=stack.workload_image) for name, text in DEPLOY_DIR.items()},
    )
    env = stack.env()
    env.update(EXAMPLE_HTTP_IMAGE=stack.workload_image, EXAMPLE_HTTP_PORT="8080")
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-v", "--durations=0",
        *stack.plugin_args(), f"--vcluster-host-name={kind_host}", "--vcluster-versions=all",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (directory / "output.log").write_text(output)
    print(f"\ninner run: exit {proc.returncode} after {seconds:.1f}s ({directory / 'output.log'})")
    return InnerRun(proc.returncode, output, seconds, read_facts(facts))


def test_chart_example_passes_on_every_served_version(inner_run: InnerRun, stack: Stack) -> None:
    chart_tests = {
        test: outcome
        for test, outcome in inner_run.outcomes().items()
        if test.startswith("test_install_serve_and_upgrade")
    }
    expected = {f"test_install_serve_and_upgrade[k8s-{minor}]" for minor in stack.minors}
    assert set(chart_tests) == expected, inner_run.output[-6000:]
    for test in sorted(expected):
        inner_run.assert_passed(test)
    assert len(expected) == 4  # the stack serves 1.33 to 1.36
    # Each ran in a cluster of its own version, as /version reports it.
    served = {
        fact["test"]: fact["version"]
        for fact in inner_run.facts
        if fact.get("event") == "cluster" and fact["test"] in expected
    }
    assert served == {
        f"test_install_serve_and_upgrade[k8s-{minor}]": tag
        for minor, tag in stack.version_map.items()
    }


def test_apply_directory_with_a_crd_and_an_object_of_it(inner_run: InnerRun) -> None:
    inner_run.assert_passed("test_apply_crd_directory")
    [fact] = inner_run.cases("apply")
    assert sorted(fact["applied"]) == [
        "CustomResourceDefinition/widgets.examples.pytest-vcluster.dev",
        "Widget/blue-one",
    ]
    assert fact["spec"] == {"size": 3, "color": "blue"}
    # Applying the same manifests again updates the same objects (same uid), not new ones, and
    # changes no spec (same generation).
    first, again = fact["first"], fact["again"]
    assert set(first) == set(again) == set(fact["applied"])
    for name in first:
        assert again[name] == first[name], (name, first, again)


def test_wait_for_fails_fast_on_an_image_that_cannot_be_pulled(inner_run: InnerRun) -> None:
    inner_run.assert_passed("test_wait_for_fails_fast")
    facts = {fact["kind"]: fact for fact in inner_run.cases("fail-fast")}
    assert set(facts) == {"pod", "deployment"}
    for kind, fact in facts.items():
        print(f"wait_for({kind!r}) failed after {fact['seconds']:.1f}s: {fact['message']}")
        assert fact["seconds"] < FAIL_FAST_TIMEOUT / 3, fact
        assert BAD_IMAGE in fact["message"], fact
        assert "ErrImagePull" in fact["message"] or "ImagePullBackOff" in fact["message"], fact


def test_marker_manifests_are_applied_before_the_test(inner_run: InnerRun) -> None:
    inner_run.assert_passed("test_manifests_marker")
    [fact] = inner_run.cases("manifests")
    assert fact["data"] == {"mode": "test"}
    assert fact["available"] == 1


def test_the_cluster_does_what_tests_rely_on(inner_run: InnerRun) -> None:
    """RBAC, ServiceAccount tokens, CRDs, admission webhooks, garbage collection, Deployment ->
    ReplicaSet -> Pod, Job completion, DNS and namespace finalizers, on a cluster made with
    the plugin's defaults (fast start: the controller-manager's trimmed start among them)."""
    inner_run.assert_passed("test_what_tests_rely_on")
    [fact] = inner_run.cases("behaviour")
    assert_behaviour(fact)


def test_inner_run_passed_as_a_whole(inner_run: InnerRun) -> None:
    print(f"inner run: {inner_run.seconds:.1f}s")
    assert inner_run.returncode == 0, inner_run.output[-6000:]
    assert "8 passed" in inner_run.output.splitlines()[-1], inner_run.output[-3000:]


@pytest.mark.parametrize("version", ["1.30", "1.29"])
def test_a_version_the_stack_does_not_serve_is_a_usage_error(
    pytester: pytest.Pytester, stack: Stack, version: str
) -> None:
    pytester.makepyfile(test_never="def test_never(vcluster):\n    raise AssertionError\n")
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        *stack.plugin_args(),
        f"--vcluster-host-name={HOST}-unused",
        "-p",
        "no:cacheprovider",
        f"--vcluster-versions={version}",
        timeout=120,
    )
    took = time.monotonic() - started
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert version in output, output
    for minor, tag in stack.version_map.items():
        # The tag, not just the minor: only the stack's own version map names v1.33.13.
        assert tag in output, f"served version {minor} ({tag}) is not named:\n{output}"
    assert took < 60, output  # refused at startup, before any host or cluster
