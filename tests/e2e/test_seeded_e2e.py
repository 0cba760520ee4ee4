"""The seeded store on the real stack (``--vcluster-seeded-store``).

One inner run, one test after another on one spec: the first cluster is new and unseeded and
leaves the seed; the second starts from it and must pass the whole behaviour check (RBAC,
tokens, CRDs, webhooks, garbage collection, workloads, Jobs, DNS, finalizers); the third gets
that seeded cluster recycled, so a seeded cluster's baseline holds through a reset and proof.
No control-plane container may restart in any of them: a seed that made the syncer crash once
(and recover) would pass a plain check and still cost every create a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .behaviour import BEHAVIOUR, assert_behaviour
from .inner import RECORDING_CONFTEST, InnerRun, read_facts, removed_kind_host
from .stack import BEARER, Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-seeded"
INNER_TIMEOUT = 1200

CONFTEST = (
    RECORDING_CONFTEST
    + """

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    handle = item.funcargs.get("vcluster")
    if handle is not None:
        record(event="cluster", test=item.name, name=handle.name, seeded=handle.seeded,
               recycled=handle.recycled, tests_before=handle.tests_before,
               ready_seconds=handle.ready_seconds, phases=[list(p) for p in handle.phases])
    yield
"""
)

# Named so that they run in this order around test_what_tests_rely_on (pytest keeps the
# order of the files: test_a..., test_b..., test_c...).
FIRST = """
import pytest

@pytest.mark.vcluster(version={version!r}, recycle=False)
def test_a_new_cluster_leaves_the_seed(vcluster):
    assert vcluster.core_v1().read_namespaced_service_account("default", "default")
"""

AGAIN = """
import pytest

@pytest.mark.vcluster(version={version!r})
def test_c_the_seeded_cluster_recycled(vcluster):
    core = vcluster.core_v1()
    assert core.read_namespaced_service_account("default", "default")
    assert "behaviour" not in [ns.metadata.name for ns in core.list_namespace().items]
"""


@pytest.fixture(scope="module")
def kind_host(stack: Stack) -> Iterator[str]:
    yield from removed_kind_host(stack, HOST)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seeded")


@pytest.fixture(scope="module")
def records(inner_run: InnerRun, run_dir: Path) -> dict[str, Any]:
    """The inner run's records file (``--vcluster-records``)."""
    path = run_dir / "records.json"
    assert path.exists(), inner_run.output[-6000:]
    return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def inner_run(stack: Stack, kind_host: str, run_dir: Path) -> InnerRun:
    directory = run_dir
    facts = directory / "facts.jsonl"
    records = directory / "records.json"
    version = stack.minors[-1]
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST).format(facts=str(facts)))
    (directory / "bearer.py").write_text(BEARER)
    (directory / "test_a.py").write_text(FIRST.format(version=version))
    (directory / "test_b.py").write_text(
        textwrap.dedent(BEHAVIOUR)
        .replace("@VERSION@", version)
        .replace("@IMAGE@", stack.workload_image)
        .replace("@FACTS@", str(facts))
    )
    (directory / "test_c.py").write_text(AGAIN.format(version=version))
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-v",
        *stack.plugin_args(), f"--vcluster-host-name={kind_host}",
        "--vcluster-seeded-store=true", "--vcluster-lookahead=0",
        # Seeds of its own: the first cluster must make one, whatever ran on this machine before.
        f"--vcluster-state-dir={directory / 'state'}",
        f"--vcluster-records={records}",
        "test_a.py", "test_b.py", "test_c.py",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=directory,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (directory / "output.log").write_text(output)
    print(f"\ninner run: exit {proc.returncode} after {seconds:.1f}s")
    return InnerRun(proc.returncode, output, seconds, read_facts(facts))


def test_the_first_new_cluster_leaves_a_seed_and_the_next_starts_from_it(
    inner_run: InnerRun,
) -> None:
    assert inner_run.returncode == 0, inner_run.output[-6000:]
    assert inner_run.outcomes() == {
        "test_a_new_cluster_leaves_the_seed": "passed",
        "test_what_tests_rely_on": "passed",
        "test_c_the_seeded_cluster_recycled": "passed",
    }, inner_run.output[-6000:]
    clusters = inner_run.clusters()
    first = clusters["test_a_new_cluster_leaves_the_seed"]
    seeded = clusters["test_what_tests_rely_on"]
    print(
        f"ready: first {first['ready_seconds']}s (phases {first['phases']}), "
        f"seeded {seeded['ready_seconds']}s (phases {seeded['phases']})"
    )
    assert first["seeded"] is False
    assert "seed" in [phase for phase, _ in first["phases"]]
    assert seeded["seeded"] is True
    assert seeded["tests_before"] == 0
    assert first["name"] != seeded["name"]


def test_a_seeded_cluster_does_what_tests_rely_on(inner_run: InnerRun) -> None:
    facts = inner_run.cases("behaviour")
    assert len(facts) == 1, inner_run.output[-6000:]
    assert_behaviour(facts[0])


def test_a_seeded_cluster_is_recycled_like_any_other(inner_run: InnerRun) -> None:
    clusters = inner_run.clusters()
    again = clusters["test_c_the_seeded_cluster_recycled"]
    assert again["recycled"] is True, again
    assert again["tests_before"] == 1, again
    assert again["name"] == clusters["test_what_tests_rely_on"]["name"]
    assert again["seeded"] is True


def test_no_control_plane_restarted(records: dict[str, Any]) -> None:
    made = records.get("clusters", [])
    assert [record["seeded"] for record in made] == [False, True], made
    restarted = {record["name"]: record["restarts"] for record in made if record["restarts"]}
    assert restarted == {}
