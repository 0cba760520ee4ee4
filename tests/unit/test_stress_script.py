"""The pure parts of ``benchmarks/stress.py``: statistics, parsing of what inner runs leave,
the verdict and the table. No cluster: the script is imported by path (it runs as a script, not
as part of a package), with ``benchmarks/`` on ``sys.path`` for ``stackkit``, which it shares
with the speed benchmark (``python -m benchmarks.speed``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_vcluster.core.labels import LABEL_MANAGED, LABEL_STATE, WARM_STATE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "stress.py"


def _load() -> ModuleType:
    # Run as a script, stress.py finds ``stackkit`` next to it (benchmarks/ is sys.path[0]);
    # appended, so that nothing in benchmarks/ shadows what the tests import.
    if str(SCRIPT.parent) not in sys.path:
        sys.path.append(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("stress_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


stress = _load()


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="2" failures="1" skipped="1"
  tests="6" time="40.1">
<testcase classname="test_stress" name="test_api[0]" time="12.0">
  <properties><property name="vcluster_name" value="pv-test-api-0-abc"/></properties>
</testcase>
<testcase classname="test_stress" name="test_api[1]" time="3.0">
  <failure message="Failed: vcluster pv-x lists no 'default' namespace: []">trace
  line two</failure>
</testcase>
<testcase classname="test_stress" name="test_api[2]" time="300.0">
  <error message="failed on setup with &quot;pytest_vcluster.core.errors.WaitTimeoutError: timed
  out after 300s waiting for CoreDNS&quot;">long traceback</error>
</testcase>
<testcase classname="test_stress" name="test_api[3]" time="1.0">
  <skipped type="pytest.skip" message="skipped">why</skipped>
</testcase>
<testcase classname="test_stress" name="test_api[4]" time="1.0">
  <error message="">Traceback (most recent call last):
  File "x.py", line 1
ApiError: teardown went wrong
</error>
</testcase>
<testcase classname="test_stress" name="test_api[4]" time="0.5">
  <failure message="AssertionError: boom">...</failure>
</testcase>
</testsuite></testsuites>
"""


def test_percentile_interpolates_between_samples() -> None:
    assert stress.percentile([], 50) is None
    assert stress.percentile([7.0], 95) == 7.0
    assert stress.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert stress.percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)
    assert stress.percentile([1.0, 2.0], 100) == 2.0


def test_ratio_and_spread() -> None:
    assert stress.ratio(3.0, 2.0) == 1.5
    assert stress.ratio(None, 2.0) is None
    assert stress.ratio(1.0, 0.0) is None
    assert stress.spread([]) == {"n": 0, "p50": None, "p95": None, "max": None}
    assert stress.spread([1.0, 3.0]) == {"n": 2, "p50": 2.0, "p95": 2.9, "max": 3.0}


def test_parse_junit_counts_each_test_once_and_keeps_short_texts() -> None:
    counts = stress.parse_junit(JUNIT)
    assert (counts.passed, counts.failed, counts.errors, counts.skipped) == (1, 2, 1, 1)
    assert counts.total == 5
    by_test = {(p.test, p.kind): p.text for p in counts.problems}
    assert by_test[("test_stress::test_api[1]", "failed")] == (
        "Failed: vcluster pv-x lists no 'default' namespace: []"
    )
    # Messages are flattened to one line.
    assert by_test[("test_stress::test_api[2]", "error")] == (
        'failed on setup with "pytest_vcluster.core.errors.WaitTimeoutError: timed out after 300s '
        'waiting for CoreDNS"'
    )
    # Without a message, the last line of the traceback says what was raised.
    assert by_test[("test_stress::test_api[4]", "error")] == "ApiError: teardown went wrong"
    assert ("test_stress::test_api[4]", "failed") in by_test
    assert all(p.test != "test_stress::test_api[3]" for p in counts.problems)


def test_short_cuts_long_text() -> None:
    assert stress.short("a\n  b\tc") == "a b c"
    cut = stress.short("x" * 500, limit=20)
    assert len(cut) == 20
    assert cut.endswith("\u2026")


OUTPUT = """\
..F.E                                                                   [100%]
============================= slowest durations ==============================
14.21s setup    test_stress.py::test_api[0]
1.00s call     test_stress.py::test_api[4]
0.31s setup    test_stress.py::test_api[1]
0.20s teardown test_stress.py::test_api[0]
0.00s setup    test_stress.py::test_api[2]
=========================== short test summary info ===========================
FAILED test_stress.py::test_api[1] - Failed: vcluster pv-x lists no 'default' namespace
ERROR test_stress.py::test_api[2] - pytest_vcluster.core.errors.WaitTimeoutError: timed out
1 failed, 3 passed, 1 error, 2 warnings in 80.12s (0:01:20)
"""


def test_parse_durations_by_phase() -> None:
    assert stress.parse_durations(OUTPUT) == [14.21, 0.31, 0.0]
    assert stress.parse_durations(OUTPUT, "teardown") == [0.2]
    assert stress.parse_durations("no durations here") == []


def test_parse_summary_counts_takes_the_last_summary_line() -> None:
    assert stress.parse_summary_counts(OUTPUT) == {
        "failed": 1,
        "passed": 3,
        "errors": 1,
        "warnings": 2,
    }
    verbose = "=== 200 passed in 1234.5s (0:20:34) ===\n"
    assert stress.parse_summary_counts("2 passed in 3s\n" + verbose) == {"passed": 200}
    assert stress.parse_summary_counts("INTERNALERROR> boom\n") == {}


def test_counts_from_output_without_junit() -> None:
    counts = stress.counts_from_output(OUTPUT)
    assert (counts.passed, counts.failed, counts.errors) == (3, 1, 1)
    assert [(p.test, p.kind) for p in counts.problems] == [
        ("test_stress.py::test_api[1]", "failed"),
        ("test_stress.py::test_api[2]", "error"),
    ]
    assert counts.problems[1].text == "pytest_vcluster.core.errors.WaitTimeoutError: timed out"


def _records(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(
        json.dumps(
            {
                "counts": {"created": 3, "deleted": 2, "failed": 1},
                "ready_seconds": [15.0, 16.5, 30.0],
                "clusters": [
                    {"name": "pv-a", "ready_seconds": 15.0},
                    {"name": "pv-b", "ready_seconds": 16.5},
                    {"name": "pv-c"},
                    "junk",
                ],
                "setups": [{"nodeid": "t[0]", "wait_seconds": 0.4}, {"nodeid": "t[1]"}],
                "teardowns": [
                    {"name": "pv-a", "action": "delete", "seconds": 3.0, "error": None},
                    {
                        "name": "pv-b",
                        "action": "delete",
                        "seconds": 180.0,
                        "error": "WaitTimeoutError: namespace pv-b still there",
                    },
                ],
            }
        )
    )
    return path


def test_records_parsing(tmp_path: Path) -> None:
    records = stress.load_records(_records(tmp_path))
    assert stress.records_ready(records) == [15.0, 16.5]
    assert stress.records_waits(records) == [0.4]
    assert stress.records_counts(records) == {"created": 3, "deleted": 2, "failed": 1}
    [problem] = stress.records_teardown_errors(records)
    assert problem.test == "pv-b"
    assert problem.kind == "teardown"
    assert problem.text == "delete: WaitTimeoutError: namespace pv-b still there"


def test_records_missing_or_unreadable(tmp_path: Path) -> None:
    assert stress.load_records(tmp_path / "absent.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert stress.load_records(bad) is None
    assert stress.records_ready(None) == []
    assert stress.records_teardown_errors(None) == []
    assert stress.records_counts(None) == {}


def test_parse_progress_counts_finished_tests() -> None:
    text = (
        "call passed test_stress.py::test_api[0]\n"
        "call failed test_stress.py::test_api[1]\n"
        "setup failed test_stress.py::test_api[2]\n"
        "setup skipped test_stress.py::test_api[3]\n"
        "teardown failed test_stress.py::test_api[0]\n"
        "garbage\n"
    )
    progress = stress.parse_progress(text)
    assert (progress.done, progress.passed, progress.failed, progress.errors) == (4, 1, 1, 2)
    assert progress.line(10) == "4/10 done: 1 passed, 1 failed, 2 errors"


def test_parse_kind_clusters_and_namespaces() -> None:
    assert stress.parse_kind_clusters("stress-host\nkind\n\n") == ["stress-host", "kind"]
    assert stress.parse_kind_clusters("No kind clusters found.\n") == []
    text = json.dumps(
        {
            "items": [
                {
                    "metadata": {
                        "name": "pv-a",
                        "labels": {LABEL_MANAGED: "true", "pytest-vcluster/state": "active"},
                    },
                    "status": {"phase": "Terminating"},
                },
                {"metadata": {"name": "pv-b"}},
            ]
        }
    )
    assert stress.parse_namespaces(text) == [
        {"name": "pv-a", "phase": "Terminating", "state": "active"},
        {"name": "pv-b", "phase": "", "state": ""},
    ]


def test_managed_label_is_the_plugins() -> None:
    assert stress.MANAGED_LABEL == LABEL_MANAGED
    assert (stress.STATE_LABEL, stress.WARM_STATE) == (LABEL_STATE, WARM_STATE)


def test_warm_namespaces_are_told_apart_and_parks_read_from_a_runs_counts() -> None:
    found = [
        {"name": "vc-a", "phase": "Active", "state": "warm"},
        {"name": "vc-b", "phase": "Active", "state": "running"},
        {"name": "vc-c", "phase": "Terminating", "state": ""},
    ]
    warm, others = stress.split_warm(found)
    assert warm == ["vc-a"]
    assert [ns["name"] for ns in others] == ["vc-b", "vc-c"]
    result = stress.PhaseResult("warm", 12)
    result.details["run_1"] = {"plugin_counts": {"created": 4, "parked": 3}}
    assert stress.outcome_parked(result, 1) == 3
    assert stress.outcome_parked(result, 2) == 0


def test_inner_env_keeps_only_the_stacks_settings() -> None:
    base = {
        "PATH": "/stack/bin:/usr/bin",
        "HOME": "/home/me",
        "PYTEST_VCLUSTER_LOOKAHEAD": "0",
        "PYTEST_VCLUSTER_STACK": "/x/stack.json",
        "PYTEST_ADDOPTS": "-x",
    }
    env = stress.inner_env(base, Path("/x/pytest-vcluster.yaml"), count="4", work_seconds="1.0")
    assert env == {
        "PATH": "/stack/bin:/usr/bin",
        "HOME": "/home/me",
        "PYTEST_VCLUSTER_SETTINGS_FILE": "/x/pytest-vcluster.yaml",
        "STRESS_COUNT": "4",
        "STRESS_WORK_SECONDS": "1.0",
    }
    assert stress.dropped_env(base) == [
        "PYTEST_ADDOPTS",
        "PYTEST_VCLUSTER_LOOKAHEAD",
        "PYTEST_VCLUSTER_STACK",
    ]


def test_pytest_args_name_the_outputs_and_the_host(tmp_path: Path) -> None:
    args = stress.pytest_args(tmp_path, "stress-host", ["-n", "2"])
    assert args[:4] == [sys.executable, "-m", "pytest", "test_stress.py"]
    assert f"--junitxml={tmp_path / 'junit.xml'}" in args
    assert f"--vcluster-records={tmp_path / 'records.json'}" in args
    assert "--vcluster-host-name=stress-host" in args
    assert "--durations=0" in args
    assert args[-2:] == ["-n", "2"]
    # Nothing that changes the plugin's own defaults.
    assert not [a for a in args if a.startswith("--vcluster-lookahead")]


def _outcome(**overrides: object) -> object:
    fields: dict[str, object] = {
        "tag": "fresh",
        "returncode": 0,
        "wall": 100.0,
        "expected": 4,
        "counts": stress.TestCounts(passed=4),
        "setup": [0.1, 0.2, 14.0, 0.4],
        "ready": [15.0, 16.0, 17.0, 31.0],
        "waits": [0.1],
        "teardown_errors": [],
        "plugin_counts": {"created": 4},
        "log": Path("/w/fresh/pytest.log"),
    }
    fields.update(overrides)
    return stress.Outcome(**fields)


def test_outcome_clean_run() -> None:
    outcome = _outcome()
    assert outcome.clean
    assert outcome.failures() == 0
    assert outcome.problems() == []


def test_outcome_counts_failed_missing_and_teardown_errors() -> None:
    failed = stress.Problem("t[1]", "failed", "boom")
    teardown = stress.Problem("pv-b", "teardown", "delete: timed out")
    outcome = _outcome(
        returncode=1,
        counts=stress.TestCounts(passed=2, failed=1, problems=[failed]),
        teardown_errors=[teardown],
    )
    assert outcome.failures() == 3  # two tests that did not pass, one teardown
    kinds = [(p.kind, p.text) for p in outcome.problems()]
    assert kinds == [
        ("failed", "boom"),
        ("teardown", "delete: timed out"),
        ("run", "1 test(s) did not run or pass"),
    ]


def test_outcome_timeout_and_unexplained_exit() -> None:
    timed_out = _outcome(returncode=None, counts=stress.TestCounts(passed=1))
    assert timed_out.failures() == 3
    assert timed_out.problems()[0].text.startswith("stopped at its timeout")
    crashed = _outcome(returncode=3)
    assert crashed.failures() == 1
    assert [p.text for p in crashed.problems()] == ["pytest exited 3"]


def test_phase_json_table_and_exit_code() -> None:
    fresh = stress.from_outcome("fresh", _outcome()).to_json()
    assert fresh["ready"]["p50"] == 16.5
    assert fresh["ready_ratio"] == pytest.approx(fresh["ready"]["p95"] / 16.5)
    assert fresh["details"]["passed"] == 4
    races = stress.PhaseResult(
        "races",
        runs=2,
        failures=1,
        problems=[stress.Problem("stress-race-x-1", "leftover", "host still exists")],
        namespaces_left=1,
        wall=250.0,
        logs=["/w/race-1-a/pytest.log"],
    ).to_json()
    text = stress.table([fresh, races])
    header, row_fresh, row_races = text.splitlines()
    assert header.split()[:3] == ["phase", "runs", "failures"]
    assert row_fresh.split()[:3] == ["fresh", "4", "0"]
    assert "0.3s / 12.0s" in row_fresh  # setup p50 / p95 of [0.1, 0.2, 0.4, 14.0]
    assert "16.5s / 28.9s" in row_fresh
    assert row_fresh.endswith("100.0s")
    assert row_races.split()[:3] == ["races", "2", "1"]
    assert "- / -" in row_races  # no samples
    lines = stress.problem_lines([fresh, races])
    assert lines == [
        "races: 1 problem(s); logs: /w/race-1-a/pytest.log",
        "  leftover stress-race-x-1: host still exists",
    ]
    assert stress.exit_code([fresh], {}) == 0
    assert stress.exit_code([fresh, races], {}) == 1
    assert stress.exit_code([fresh], {"host": "kind create failed"}) == 1
    assert stress.exit_code([{**fresh, "namespaces_left": 2}], {}) == 1


def test_problem_lines_are_capped() -> None:
    phase = {
        "phase": "cycles",
        "problems": [f"failed t[{i}]: x" for i in range(8)],
        "logs": ["/w/cycles/pytest.log"],
    }
    lines = stress.problem_lines([phase], shown=3)
    assert len(lines) == 5
    assert lines[-1] == "  ... and 5 more in the JSON"


def test_arguments_default_and_skip_with_zero() -> None:
    options = stress.parse_args([])
    assert (options.fresh, options.cycles, options.races) == (200, 200, 20)
    assert options.warm == 0  # the warm phase is asked for
    assert options.out == stress.DEFAULT_OUT
    options = stress.parse_args(["--fresh", "0", "--cycles", "0", "--races", "3"])
    assert (options.fresh, options.cycles, options.races) == (0, 0, 3)
    with pytest.raises(SystemExit):
        stress.parse_args(["--fresh", "-1"])
    with pytest.raises(SystemExit):
        stress.parse_args(["--host", "stress-race-1"])  # the race hosts' prefix is reserved


def test_kind_deletes_only_its_own_clusters(tmp_path: Path) -> None:
    kind = stress.Kind("kind", "img", {}, tmp_path, "stress-host")
    with pytest.raises(ValueError, match="refusing"):
        kind.delete("pytest-vcluster")
