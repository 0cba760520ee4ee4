"""Trust on the real stack: concurrent runs, interrupts, killed runs reaped, failing fast.

Each scenario starts real pytest processes (as a user or a CI runner would), interrupts or
kills them with real signals, and checks from the outside what is left on the kind host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e-trust"
MANAGED = "pytest-vcluster/managed=true"


@pytest.fixture(scope="module")
def host_kubeconfig(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kind host made with the kind CLI: the plugin uses it and never deletes it."""
    kubeconfig = tmp_path_factory.mktemp("trust-host") / "kubeconfig"
    with stack.kind_host(HOST, kubeconfig):
        yield kubeconfig


class Inner:
    """A pytest process on a small suite, started like a user starts it (its own session)."""

    def __init__(self, stack: Stack, directory: Path, body: str, *args: str) -> None:
        self.stack = stack
        self.directory = directory
        self.facts_file = directory / "facts.jsonl"
        directory.mkdir(parents=True, exist_ok=True)
        recorder = (
            "import json, pathlib\n"
            "def record(**fields):\n"
            f"    with pathlib.Path({str(self.facts_file)!r}).open('a') as f:\n"
            "        f.write(json.dumps(fields) + '\\n')\n"
        )
        (directory / "test_inner.py").write_text(recorder + textwrap.dedent(body))
        self.log = directory / "output.log"
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
            *stack.plugin_args(), *args,
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=directory,
                env=stack.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group, as a terminal's Ctrl-C reaches
            )

    def facts(self) -> list[dict[str, Any]]:
        if not self.facts_file.exists():
            return []
        return [json.loads(line) for line in self.facts_file.read_text().splitlines()]

    def wait_for_fact(self, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            facts = self.facts()
            if facts:
                return facts[0]
            assert self.proc.poll() is None, self.output()
            time.sleep(0.5)
        raise AssertionError(f"no fact recorded in {timeout}s:\n{self.output()}")

    def signal_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text()


class Host:
    """kubectl on the trust host."""

    def __init__(self, stack: Stack, kubeconfig: Path) -> None:
        self.stack = stack
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.stack.run(
            self.stack.tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args, check=False
        )

    def managed_namespaces(self) -> dict[str, str]:
        """Namespace -> state label of every vcluster namespace not being deleted."""
        out = self.kubectl("get", "namespaces", "-l", MANAGED, "-o", "json").stdout
        items = json.loads(out)["items"] if out else []
        return {
            item["metadata"]["name"]: item["metadata"]["labels"].get("pytest-vcluster/state", "")
            for item in items
            if not item["metadata"].get("deletionTimestamp")
        }

    def wait_for_namespace(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = self.managed_namespaces()
            if names:
                return sorted(names)[0]
            time.sleep(0.5)
        raise AssertionError("no vcluster namespace appeared")

    def run_namespaces(self) -> list[str]:
        """Every vcluster namespace on the host, those being deleted included."""
        out = self.kubectl("get", "namespaces", "-l", MANAGED, "-o", "name").stdout
        return out.split()

    def gone(self, namespace: str) -> bool:
        return self.kubectl("get", "namespace", namespace).returncode != 0

    def clean(self) -> None:
        names = list(self.managed_namespaces())
        if names:
            self.kubectl("delete", "namespace", "--wait=false", *names)


@pytest.fixture
def host(stack: Stack, host_kubeconfig: Path) -> Iterator[Host]:
    view = Host(stack, host_kubeconfig)
    view.clean()
    yield view
    view.clean()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "--host-name", HOST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=stack.env(),
        check=False,
    )


SLOW_TEST = """
import time

def test_slow(vcluster):
    record(namespace=vcluster.namespace)
    time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_a_test_tears_its_cluster_down(
    stack: Stack, host: Host, tmp_path: Path, signum: signal.Signals
) -> None:
    inner = Inner(stack, tmp_path, SLOW_TEST, f"--vcluster-host-name={HOST}")
    namespace = inner.wait_for_fact()["namespace"]
    sent = time.monotonic()
    inner.signal_group(signum)
    inner.wait(timeout=90)
    took = time.monotonic() - sent
    output = inner.output()
    print(f"{signum.name} during a test: the run ended {took:.1f}s after the signal")
    assert took < 60, output
    assert host.gone(namespace), output
    assert f"interrupted by {signum.name}: tore down every vcluster this run made" in output
    assert "vclusters: created 1, resumed 0, recycled 0, paused 0, deleted 1" in output


def test_ctrl_c_during_create_removes_the_half_made_cluster(
    stack: Stack, host: Host, tmp_path: Path
) -> None:
    inner = Inner(
        stack, tmp_path, "def test_one(vcluster):\n    pass\n", f"--vcluster-host-name={HOST}"
    )
    namespace = host.wait_for_namespace()
    sent = time.monotonic()
    inner.signal_group(signal.SIGINT)
    inner.wait(timeout=90)
    took = time.monotonic() - sent
    output = inner.output()
    print(f"Ctrl-C during a create: the run ended {took:.1f}s after the signal")
    assert took < 60, output
    assert host.gone(namespace), output
    assert "interrupted by SIGINT" in output


XDIST_SLOW = """
import time
import pytest

@pytest.mark.parametrize("i", range(4))
def test_slow(vcluster, i):
    record(namespace=vcluster.namespace)
    time.sleep(120)
"""


@pytest.mark.parametrize("moment", ["while creating", "while tests run"])
def test_one_ctrl_c_under_xdist_is_one(
    stack: Stack, host: Host, tmp_path: Path, moment: str
) -> None:
    # execnet sends a busy worker its own SIGINT 5 s after the controller stops it; taken for
    # the user's second Ctrl-C, it cut the workers' teardown short.
    inner = Inner(stack, tmp_path, XDIST_SLOW, f"--vcluster-host-name={HOST}", "-n", "2")
    if moment == "while creating":
        host.wait_for_namespace()
    else:
        inner.wait_for_fact()
    sent = time.monotonic()
    inner.signal_group(signal.SIGINT)
    inner.wait(timeout=120)
    took = time.monotonic() - sent
    left = host.run_namespaces()  # at the moment the run ended, deleting ones included
    output = inner.output()
    print(f"Ctrl-C {moment} at -n 2: the run ended {took:.1f}s after the signal; left: {left}")
    assert took < 60, output
    assert "SIGINT again" not in output, output
    assert "interrupted by SIGINT" in output, output
    assert left == [], output


def test_ctrl_c_during_teardown_lets_it_finish(stack: Stack, host: Host, tmp_path: Path) -> None:
    body = """
        def test_quick(vcluster):
            record(namespace=vcluster.namespace)
    """
    inner = Inner(stack, tmp_path, body, f"--vcluster-host-name={HOST}")
    namespace = inner.wait_for_fact()["namespace"]
    time.sleep(1.0)  # the test has returned: its cluster is being deleted
    inner.signal_group(signal.SIGINT)
    inner.wait(timeout=90)
    output = inner.output()
    assert host.gone(namespace), output
    assert "vclusters: created 1, resumed 0, recycled 0, paused 0, deleted 1" in output, output


def test_ctrl_c_during_host_creation_removes_the_half_made_host(
    stack: Stack, tmp_path: Path
) -> None:
    name = "pvc-e2e-hostint"
    kind = stack.tool("kind")
    stack.run(kind, "delete", "cluster", "--name", name, timeout=180)
    inner = Inner(
        stack, tmp_path, "def test_one(vcluster):\n    pass\n", f"--vcluster-host-name={name}"
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = stack.run("docker", "ps", "-aq", "--filter", f"name={name}-control-plane")
            if found.stdout.strip():
                break
            time.sleep(0.5)
        else:
            raise AssertionError("kind never started the node container:\n" + inner.output())
        time.sleep(2)  # kind is now booting the node
        sent = time.monotonic()
        inner.signal_group(signal.SIGINT)
        inner.wait(timeout=90)
        took = time.monotonic() - sent
        print(f"Ctrl-C during host creation: the run ended {took:.1f}s after the signal")
        assert took < 60, inner.output()
        containers = stack.run("docker", "ps", "-aq", "--filter", f"name={name}-control-plane")
        assert containers.stdout.strip() == "", inner.output()
        assert name not in stack.run(kind, "get", "clusters").stdout.split()
    finally:
        stack.run(kind, "delete", "cluster", "--name", name, timeout=180, check=False)


def test_second_ctrl_c_stops_waiting_and_says_what_is_left(
    stack: Stack, host: Host, tmp_path: Path
) -> None:
    inner = Inner(stack, tmp_path, SLOW_TEST, f"--vcluster-host-name={HOST}")
    namespace = inner.wait_for_fact()["namespace"]
    inner.signal_group(signal.SIGINT)
    time.sleep(0.5)
    inner.signal_group(signal.SIGINT)
    inner.wait(timeout=90)
    output = inner.output()
    assert "SIGINT again: stopped waiting" in output, output
    assert f"namespace {namespace} (" in output or "nothing is left on the host" in output
    if f"namespace {namespace}" in output:
        assert f"pytest-vcluster reap --host-name {HOST}" in output
    # Whatever the second Ctrl-C left, the command it names removes it.
    deadline = time.monotonic() + 120
    while not host.gone(namespace) and time.monotonic() < deadline:
        reaped = cli(stack, "reap")
        assert reaped.returncode == 0, reaped.stdout + reaped.stderr
        time.sleep(5)
    assert host.gone(namespace)


def test_killed_run_is_reaped_by_the_next_run_and_kept_clusters_stay(
    stack: Stack, host: Host, tmp_path: Path
) -> None:
    kept = Inner(
        stack,
        tmp_path / "kept",
        "def test_keep(vcluster):\n    record(namespace=vcluster.namespace)\n",
        f"--vcluster-host-name={HOST}",
        "--vcluster-teardown=keep",
    )
    assert kept.wait() == 0, kept.output()
    kept_namespace = kept.facts()[0]["namespace"]
    killed = Inner(stack, tmp_path / "killed", SLOW_TEST, f"--vcluster-host-name={HOST}")
    orphan = killed.wait_for_fact()["namespace"]
    killed.signal_group(signal.SIGKILL)
    killed.wait(timeout=30)
    assert host.managed_namespaces() == {kept_namespace: "kept", orphan: "active"}

    listing = cli(stack, "ls")
    assert listing.returncode == 0, listing.stderr
    print(listing.stdout)
    # Until its lease expires the killed run counts as alive, and nothing of it is touched.
    early = Inner(
        stack,
        tmp_path / "early",
        "def test_other(vcluster):\n    pass\n",
        f"--vcluster-host-name={HOST}",
    )
    assert early.wait() == 0, early.output()
    assert orphan in host.managed_namespaces()

    time.sleep(50)  # the killed run's lease: 30 s, plus 15 s of slack (the host's clock)
    dry = cli(stack, "reap", "--dry-run")
    assert f"would delete {orphan} (its run ended" in dry.stdout, dry.stdout
    assert f"left {kept_namespace}: kept on purpose" in dry.stdout, dry.stdout

    later = Inner(
        stack,
        tmp_path / "later",
        "def test_other(vcluster):\n    pass\n",
        f"--vcluster-host-name={HOST}",
    )
    assert later.wait() == 0, later.output()
    output = later.output()
    assert "reaped 1 vcluster(s) of ended runs; 1 paused or kept on purpose left in place" in (
        output
    ), output
    deadline = time.monotonic() + 120
    while not host.gone(orphan) and time.monotonic() < deadline:
        time.sleep(1)
    assert host.gone(orphan)
    assert host.managed_namespaces() == {kept_namespace: "kept"}

    removed = cli(stack, "reap", "--preserved-older-than", "0")
    assert f"deleting {kept_namespace} (kept for too long" in removed.stdout, removed.stdout


def test_two_independent_runs_share_one_new_host(stack: Stack, tmp_path: Path) -> None:
    name = "pvc-e2e-shared"
    kind = stack.tool("kind")
    stack.run(kind, "delete", "cluster", "--name", name, timeout=180)
    body = """
        import time

        def test_a(vcluster):
            time.sleep(5)

        def test_b(vcluster):
            time.sleep(5)
    """
    try:
        runs = [
            Inner(stack, tmp_path / which, body, f"--vcluster-host-name={name}")
            for which in ("one", "two")
        ]
        codes = [run.wait() for run in runs]
    finally:
        left = stack.run(kind, "get", "clusters").stdout.split()
        if name in left:
            stack.run(kind, "delete", "cluster", "--name", name, timeout=180, check=False)
    outputs = [run.output() for run in runs]
    assert codes == [0, 0], "\n".join(outputs)
    combined = "\n".join(outputs)
    assert combined.count(f"kind host '{name}': created by this run") == 1, combined
    assert combined.count("; deleted (last user)") == 1, combined
    assert name not in left


def test_a_crashing_control_plane_fails_within_15_seconds(
    stack: Stack, host: Host, tmp_path: Path
) -> None:
    del host
    inner_body = """
        import time
        import pytest
        from pytest_vcluster import StartFailedError

        def test_crash(vcluster_factory):
            started = time.monotonic()
            broken = {"controlPlane": {"statefulSet": {"args": ["--no-such-flag"]}}}
            with pytest.raises(StartFailedError) as failure:
                vcluster_factory(values=broken)
            record(seconds=time.monotonic() - started, message=str(failure.value))
    """
    inner = Inner(stack, tmp_path, inner_body, f"--vcluster-host-name={HOST}")
    assert inner.wait() == 0, inner.output()
    fact = inner.facts()[0]
    print(f"crashing control plane failed after {fact['seconds']:.1f}s: {fact['message']}")
    assert "syncer" in fact["message"]
    assert "exit code" in fact["message"] or "CrashLoopBackOff" in fact["message"]
    # Scheduling and the init copy take a few seconds before the container can crash.
    assert fact["seconds"] < 45


def test_doctor_finds_the_stack_ready_and_names_what_is_missing(stack: Stack) -> None:
    env = stack.env()
    env["PYTEST_VCLUSTER_SETTINGS_FILE"] = str(stack.plugin_settings_file)
    ready = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "doctor"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    print(ready.stdout)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.splitlines()[-1] == "ready to run vclusters"
    assert "ok   docker: the daemon answers" in ready.stdout
    env["PYTEST_VCLUSTER_SETTINGS_FILE"] = ""
    env["PATH"] = os.pathsep.join(
        part for part in env["PATH"].split(os.pathsep) if part != stack.path_dir
    )
    missing = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "doctor"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "FAIL kind: kind not found" in missing.stdout
    assert missing.stdout.splitlines()[-1].endswith("problem(s) found")
