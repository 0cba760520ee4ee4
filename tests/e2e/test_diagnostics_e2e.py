"""Diagnostics on the real stack: a failed test's report explains what broke in its vcluster.

One inner pytest run, as a user starts it, on a kind host of its own: a test whose workloads
are broken (an image that is not on the node, a container that exits 1) and fails, and a test
whose control plane crashes at setup with keep-on-failure. The outer test reads the report
(``-rA`` output and JUnit XML) and the bundle directory from the outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-diag"
# Printed by the crashing container: the bundle must hold its log without them.
FAKE_BEARER = "s3cr3tBearerValue123"
FAKE_TOKEN = "s3cr3tTokenValue456"

INNER = """
import json
import pathlib
import time

import pytest
import yaml
from kubernetes import client

FACTS = pathlib.Path(__file__).parent / "facts.jsonl"


def record(**fields):
    with FACTS.open("a") as f:
        f.write(json.dumps(fields) + "\\n")


def pod(name, image, command=None):
    container = client.V1Container(
        name="main", image=image, command=command, image_pull_policy="Never"
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(containers=[container], restart_policy="Never"),
    )


def test_broken_workloads(vcluster):
    user = yaml.safe_load(vcluster.kubeconfig.read_text())["users"][0]["user"]
    secret = user.get("client-key-data") or user.get("token") or ""
    record(name=vcluster.name, namespace=vcluster.namespace, version=vcluster.version,
           secret=secret[20:80])
    core = vcluster.core_v1()
    core.create_namespaced_pod("default", pod("missing-image", "pytest-vcluster/no-such:1"))
    script = "echo 'Authorization: Bearer {bearer}'; echo 'token: {token}'; exit 1"
    core.create_namespaced_pod("default", pod("exits-one", "{workload}", ["sh", "-c", script]))
    deadline = time.monotonic() + 120
    seen = {{}}
    while time.monotonic() < deadline:
        for item in core.list_namespaced_pod("default", _request_timeout=10).items:
            seen[item.metadata.name + " phase"] = item.status.phase if item.status else None
            for cs in (item.status.container_statuses or []) if item.status else []:
                state = cs.state
                if state and state.waiting and state.waiting.reason:
                    seen[item.metadata.name] = state.waiting.reason
                elif state and state.terminated:
                    seen[item.metadata.name] = f"exit {{state.terminated.exit_code}}"
        # The pod's phase follows its container's exit a moment later.
        pulled, exited = seen.get("missing-image"), seen.get("exits-one phase")
        if pulled == "ErrImageNeverPull" and exited == "Failed":
            break
        time.sleep(1)
    assert False, f"the workloads are broken: {{seen}}"


@pytest.mark.vcluster(
    values={{"controlPlane": {{"statefulSet": {{"args": ["--no-such-flag"]}}}}}},
    teardown="keep-on-failure",
)
def test_crashing_start(vcluster):
    pass
"""


def _sections(output: str) -> dict[str, str]:
    """``-- vcluster NAME --`` sections of the output: title -> text (up to the next rule)."""
    found: dict[str, str] = {}
    title: str | None = None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("---") and stripped.endswith("---"):
            middle = stripped.strip("-").strip()
            title = middle if middle.startswith("vcluster ") else None
            if title:
                found[title] = ""
            continue
        if stripped.startswith(("===", "___")):
            title = None
        if title:
            found[title] += line + "\n"
    return found


def _properties(junit: Path, test: str) -> dict[str, str]:
    root = ET.parse(junit).getroot()  # noqa: S314 - our own inner run's file
    for case in root.iter("testcase"):
        if case.get("name") == test:
            return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    raise AssertionError(f"no testcase {test} in {junit}")


def test_failed_tests_get_diagnostics_sections_bundle_and_junit_properties(
    stack: Stack, tmp_path: Path
) -> None:
    kind = stack.tool("kind")
    inner_dir = tmp_path / "inner"
    inner_dir.mkdir()
    body = INNER.format(bearer=FAKE_BEARER, token=FAKE_TOKEN, workload=stack.workload_image)
    (inner_dir / "test_inner.py").write_text(textwrap.dedent(body))
    bundle_root = tmp_path / "bundle"
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
        *stack.plugin_args(), f"--vcluster-host-name={HOST}", "--vcluster-lookahead=0",
        f"--vcluster-diagnostics-dir={bundle_root}", f"--junitxml={junit}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            command,
            cwd=inner_dir,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        left = stack.run(kind, "get", "clusters", check=False).stdout.split()
        if HOST in left:
            stack.run(kind, "delete", "cluster", "--name", HOST, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    (tmp_path / "output.log").write_text(output)
    check_report(proc.returncode, output, inner_dir, bundle_root, junit)


def check_report(
    returncode: int, output: str, inner_dir: Path, bundle_root: Path, junit: Path
) -> None:
    """What the outer test checks of the inner run's output, bundle and JUnit XML."""
    assert returncode == 1, output
    assert (inner_dir / "facts.jsonl").exists(), f"test_broken_workloads did not run:\n{output}"
    facts = [json.loads(line) for line in (inner_dir / "facts.jsonl").read_text().splitlines()]
    name = facts[0]["name"]
    sections = _sections(output)
    print("\n".join(f"--- {title} ---\n{text}" for title, text in sections.items()))

    # The failing call: the cluster's state, with the broken pods and why.
    broken = sections.get(f"vcluster {name}")
    assert broken is not None, output
    assert f"vcluster {name} in host namespace {facts[0]['namespace']}" in broken
    assert "control plane (1 pod(s)" in broken
    assert "default/missing-image Pending" in broken
    assert "ErrImageNeverPull" in broken
    assert "default/exits-one " in broken
    assert "exited 1 Error" in broken
    assert "syncer log (" in broken
    assert len(broken.splitlines()) <= 70
    bundle = bundle_root / "test_inner.py_test_broken_workloads" / name
    assert f"bundle: {bundle} (" in broken
    files = {str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file()}
    for expected in ("summary.txt", "host-pods.yaml", "host-events.txt", "virtual-pods.yaml"):
        assert expected in files, files
    assert any(f.startswith("logs/") and ".syncer." in f for f in files), files
    crash_logs = [f for f in files if f.startswith("logs/exits-one") and f.endswith(".log")]
    assert crash_logs, files
    assert "Bearer <redacted>" in (bundle / crash_logs[0]).read_text()

    # The start that crashed: kept (keep-on-failure), so its host side is shown.
    crashed = [text for text in sections.values() if "failed to start; left in" in text]
    assert len(crashed) == 1, output
    assert "(state kept)" in crashed[0]
    assert "unknown flag: --no-such-flag" in crashed[0]
    assert "\x1b[" not in crashed[0]
    assert "CrashLoopBackOff" in crashed[0] or "exit" in crashed[0], crashed[0]

    # Nothing that grants access, in the sections or in any file of any bundle (pytest's own
    # traceback shows the inner test's source, fake credentials included).
    everything = "".join(sections.values()) + "".join(
        path.read_text(errors="replace") for path in bundle_root.rglob("*") if path.is_file()
    )
    for secret in (FAKE_BEARER, FAKE_TOKEN, facts[0]["secret"], "PRIVATE KEY-----"):
        assert secret
        assert secret not in everything, secret
    assert facts[0]["secret"] not in output
    for line in everything.splitlines():
        if "client-key-data:" in line:
            assert "client-key-data: <redacted>" in line, line

    properties = _properties(junit, "test_broken_workloads")
    assert properties["vcluster_name"] == name
    assert properties["vcluster_namespace"] == facts[0]["namespace"]
    assert properties["vcluster_version"] == facts[0]["version"]
    assert float(properties["vcluster_ready_seconds"]) > 0
    assert properties["vcluster_reused"] == "False"
    assert "vcluster_name" not in _properties(junit, "test_crashing_start")
