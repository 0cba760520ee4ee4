"""Fixtures and teardown decisions through pytester, with the cluster manager faked.

The conftest written into each pytester directory overrides the private ``_vcluster_manager``
fixture with a fake that records what would have been created and how it would have been torn
down, so no host or cluster is touched. Errors that must come before anything is created
(missing tool, unreachable host) run against the real fixtures.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

FAKE_MANAGER_CONFTEST = """
import json
import threading
from pathlib import Path

import pytest

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.plugin import STATS_KEY

LOG = Path(__file__).parent / "events.jsonl"


class FakeManager:
    def __init__(self, stats, worker):
        self.stats = stats
        self.worker = worker
        self.count = 0
        self.lock = threading.Lock()

    def _log(self, **event):
        with self.lock, LOG.open("a") as f:
            f.write(json.dumps(event) + "\\n")

    def create(self, spec, *, teardown_on_error, prepared=False):
        with self.lock:
            self.count += 1
            name = f"{self.worker}-vc{self.count}"
        self.stats.record("created", 1.0 + self.count)
        self._log(event="create", name=name, slot=spec.slot, test=spec.test,
                  version=str(spec.version) if spec.version else None,
                  values=spec.values, on_error=teardown_on_error.value, prepared=prepared,
                  manifests=[str(path) for path in spec.manifests])
        return VCluster(name=name, namespace=name, version="v1.33.4",
                        requested_version=spec.version, kubeconfig=Path("/dev/null"),
                        api_client=None, spec_hash=spec.spec_hash)

    def finish(self, handle, action):
        self.stats.record({"delete": "deleted", "pause": "paused", "keep": "kept"}[action.value])
        self._log(event="finish", name=handle.name, action=action.value)

    def hand_over(self, handle, test):
        self._log(event="hand_over", name=handle.name, test=test)

    def can_recycle(self, handle):
        return False

    def parks(self, spec):
        return False


@pytest.fixture(autouse=True)
def _preparations_settle(request):
    yield
    # Preparing runs in threads: wait for the ones this test set off, so which later test
    # finds its cluster prepared does not depend on how the threads were scheduled.
    if "_vcluster_pool" in request.fixturenames:
        pool = request.getfixturevalue("_vcluster_pool")
        with pool._lock:
            futures = [p.future for p in pool._preparations.values()]
        for future in futures:
            if not future.cancelled():
                future.exception(timeout=30)


@pytest.fixture(scope="session")
def _vcluster_manager(pytestconfig):
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "master")
    return FakeManager(pytestconfig.stash[STATS_KEY], worker)
"""


def events(pytester: pytest.Pytester) -> list[dict[str, object]]:
    path = Path(pytester.path) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished(pytester: pytest.Pytester) -> dict[str, str]:
    created = {e["name"]: e["test"] for e in events(pytester) if e["event"] == "create"}
    return {
        str(created[e["name"]]).split("::")[-1]: str(e["action"])
        for e in events(pytester)
        if e["event"] == "finish"
    }


def test_keep_on_failure_keeps_only_the_failing_tests_cluster(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        def test_passes(vcluster):
            assert vcluster.name

        def test_fails(vcluster):
            assert False, "boom"
        """
    )
    result = pytester.runpytest("--vcluster-teardown=keep-on-failure")
    result.assert_outcomes(passed=1, failed=1)
    assert finished(pytester) == {"test_passes": "delete", "test_fails": "keep"}


def test_marker_teardown_overrides_the_option(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(teardown="pause")
        def test_paused(vcluster):
            pass

        def test_default(vcluster):
            pass

        @pytest.mark.vcluster(teardown="pause-on-failure")
        def test_pause_on_failure_passing(vcluster):
            pass
        """
    )
    result = pytester.runpytest("--vcluster-teardown=delete")
    result.assert_outcomes(passed=3)
    assert finished(pytester) == {
        "test_paused": "pause",
        "test_default": "delete",
        "test_pause_on_failure_passing": "delete",
    }


def test_fixture_error_after_create_counts_as_failure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken(vcluster):
            raise RuntimeError("setup failed after the cluster was made")

        def test_uses_broken(broken):
            pass
        """
    )
    result = pytester.runpytest("--vcluster-teardown=keep-on-failure")
    result.assert_outcomes(errors=1)
    assert finished(pytester) == {"test_uses_broken": "keep"}


def test_factory_and_matrix(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(values={"sync": {"toHost": {"ingresses": {"enabled": True}}}})
        def test_two_clusters(vcluster, vcluster_factory):
            other = vcluster_factory(version="1.34")
            assert other.name != vcluster.name
            assert str(other.requested_version) == "1.34"
        """
    )
    result = pytester.runpytest("--vcluster-versions=1.33,1.35")
    result.assert_outcomes(passed=2)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    # The 1.35 run's first cluster is prepared while the 1.33 run's test runs.
    assert sorted(c["version"] for c in creates) == ["1.33", "1.34", "1.34", "1.35"]
    assert [c["version"] for c in creates if c["prepared"]] == ["1.35"]
    for create in creates:
        values = create["values"]
        assert isinstance(values, dict)
        assert values["telemetry"] == {"enabled": False}
        assert values["sync"]["toHost"]["ingresses"]["enabled"] is True
    finishes = [e for e in events(pytester) if e["event"] == "finish"]
    assert len(finishes) == 4
    assert {f["action"] for f in finishes} == {"delete"}


def test_worker_cluster_is_shared_and_torn_down_at_session_end(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        seen = []

        def test_one(vcluster_worker):
            seen.append(vcluster_worker.name)

        def test_two(vcluster_worker):
            seen.append(vcluster_worker.name)
            assert seen[0] == seen[1]

        def test_fails():
            assert False
        """
    )
    result = pytester.runpytest("--vcluster-teardown=pause-on-failure")
    result.assert_outcomes(passed=2, failed=1)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    assert len(creates) == 1
    assert creates[0]["slot"] == "worker:master"
    assert [e["action"] for e in events(pytester) if e["event"] == "finish"] == ["pause"]


def test_terminal_summary(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        def test_a(vcluster):
            pass

        def test_b(vcluster):
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "*- pytest-vcluster -*",
            "vclusters: created 2, resumed 0, recycled 0, paused 0, deleted 2, kept 0, failed 0",
            "create/resume to ready: median 2.5s, max 3.0s over 2",
        ]
    )


def test_no_summary_without_vclusters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest()
    result.stdout.no_fnmatch_line("*- pytest-vcluster -*")
    result.stdout.no_fnmatch_line("vclusters: *")


def test_xdist_workers_report_to_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_fresh(vcluster, i):
            pass

        def test_shared(vcluster_worker):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=5)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    assert len(creates) == 5
    assert {str(e["name"]).split("-")[0] for e in creates} <= {"gw0", "gw1"}
    result.stdout.fnmatch_lines(
        ["vclusters: created 5, resumed 0, recycled 0, paused 0, deleted 5, *"]
    )


def test_missing_tool_fails_before_anything_is_created(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Path(pytester.mkdir("empty-path"))
    monkeypatch.setenv("PATH", str(empty))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_needs_cluster(vcluster, i):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=3)
    # One line per test, the same each time, and no traceback.
    line = "pytest-vcluster: kind not found ('kind' is not on PATH=*). Install kind*"
    assert len([x for x in result.outlines if fnmatch.fnmatch(x, line)]) == 3
    assert not any("Traceback" in x or "host.py" in x for x in result.outlines)


def test_unreachable_existing_host_is_a_clear_error(pytester: pytest.Pytester) -> None:
    kubeconfig = pytester.makefile(
        ".yaml",
        kubeconfig="""
        apiVersion: v1
        kind: Config
        clusters:
        - name: gone
          cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
        contexts:
        - name: gone
          context: {cluster: gone, user: gone}
        current-context: gone
        users:
        - name: gone
          user: {token: abc}
        """,
    )
    pytester.makepyfile(
        """
        def test_needs_cluster(vcluster):
            pass
        """
    )
    result = pytester.runpytest(
        f"--vcluster-host-kubeconfig={kubeconfig}", "--vcluster-host-context=gone"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"pytest-vcluster: host cluster from {kubeconfig} (context gone) is unreachable: *"]
    )


LOOKAHEAD_SUITE = """
import pytest

@pytest.mark.parametrize("i", range(5))
def test_fresh(vcluster, i):
    assert vcluster.name

@pytest.mark.skip(reason="does not need its cluster after all")
def test_skipped(vcluster):
    pass

def test_after_skip(vcluster):
    assert vcluster.name
"""


def test_lookahead_prepares_clusters_and_leaves_none_behind(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(LOOKAHEAD_SUITE)
    records = pytester.path / "records.json"
    result = pytester.runpytest(f"--vcluster-records={records}")
    result.assert_outcomes(passed=6, skipped=1)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    finishes = [e for e in events(pytester) if e["event"] == "finish"]
    # Only the first test makes its own cluster; the skipped test's one serves the next test.
    assert [c["prepared"] for c in creates].count(False) == 1
    assert len(creates) == 6
    assert sorted(f["name"] for f in finishes) == sorted(c["name"] for c in creates)
    data = json.loads(records.read_text())
    sources = [setup["source"] for setup in data["setups"]]
    assert sources == ["created"] + ["prepared"] * 5
    result.stdout.fnmatch_lines(
        ["*tests waited for their vcluster: p50 *s, p95 *s over 6 (5 prepared ahead, 0 recycled)"]
    )


def test_lookahead_zero_creates_each_cluster_in_its_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(LOOKAHEAD_SUITE)
    result = pytester.runpytest("--vcluster-lookahead=0")
    result.assert_outcomes(passed=6, skipped=1)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    assert [c["prepared"] for c in creates] == [False] * 6


def test_lookahead_under_xdist_prepares_only_for_each_workers_own_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(LOOKAHEAD_SUITE)
    records = pytester.path / "records.json"
    result = pytester.runpytest("-n", "2", f"--vcluster-records={records}")
    result.assert_outcomes(passed=6, skipped=1)
    creates = [e for e in events(pytester) if e["event"] == "create"]
    finishes = [e for e in events(pytester) if e["event"] == "finish"]
    assert len(creates) <= 6 + 2  # at most one spare per worker
    assert sorted(f["name"] for f in finishes) == sorted(c["name"] for c in creates)
    data = json.loads(records.read_text())
    assert {setup["worker"] for setup in data["setups"]} == {"gw0", "gw1"}
    assert len(data["setups"]) == 6


def test_predicted_values_fixture_is_prepared_and_a_mismatch_is_not_used(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        FAKE_MANAGER_CONFTEST
        + """
@pytest.fixture
def vcluster_values():
    return {"sync": {"fromHost": {"nodes": {"enabled": True}}}}
"""
    )
    pytester.makepyfile(
        test_1="""
        def test_a(vcluster):
            pass

        def test_b(vcluster):
            pass
        """,
        test_2="""
        import pytest

        @pytest.fixture
        def vcluster_values(request):
            return {"per-test": request.node.name}

        def test_c(vcluster):
            pass
        """,
    )
    records = pytester.path / "records.json"
    result = pytester.runpytest(f"--vcluster-records={records}", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    sources = [s["source"] for s in json.loads(records.read_text())["setups"]]
    # test_b's values were known at collection; test_c's fixture needs its request.
    assert sources == ["created", "prepared", "created"]
    creates = [e for e in events(pytester) if e["event"] == "create"]
    assert all(c["values"]["sync"]["fromHost"]["nodes"]["enabled"] for c in creates[:2])


SLOW_CREATE_CONFTEST = FAKE_MANAGER_CONFTEST.replace(
    "    def create(self, spec, *, teardown_on_error, prepared=False):\n",
    "    def create(self, spec, *, teardown_on_error, prepared=False):\n"
    "        import time; time.sleep(4.5)\n",  # well past the 3 s after which a wait is shown
)


@pytest.mark.parametrize("quiet", [False, True])
def test_a_long_wait_for_a_cluster_is_shown_unless_quiet(
    pytester: pytest.Pytester, quiet: bool
) -> None:
    pytester.makeconftest(SLOW_CREATE_CONFTEST)
    pytester.makepyfile("def test_one(vcluster):\n    pass\n")
    # In a subprocess: fd capture is on there, as in a real run (once it swallowed the lines).
    result = pytester.runpytest_subprocess(*(["-q"] if quiet else []))
    result.assert_outcomes(passed=1)
    shown = [
        line for line in result.outlines if line.startswith("vcluster: the") or "waiting" in line
    ]
    if quiet:
        assert shown == []
    else:
        test = "test_a_long_wait_for_a_cluster_is_shown_unless_quiet.py::test_one"
        assert shown[0] == f"vcluster: waiting for the vcluster of {test} ..."
        assert re.fullmatch(
            rf"vcluster: the vcluster of {re.escape(test)}: done after \d+\.\ds", shown[1]
        )
