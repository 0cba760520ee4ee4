"""The pure parts of the speed benchmark (``python -m benchmarks.speed``): statistics, what inner
runs leave, memory figures, the verdicts and the options. No cluster, no stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# The benchmark runs with -m from the repository root, which the ``pytest`` command does not put
# on sys.path; appended, so that the installed plugin still wins over the source tree.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from benchmarks.speed import cli, memory, records, report, stats  # noqa: E402


def test_median_and_percentile() -> None:
    assert stats.median([]) is None
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.percentile([], 50) is None
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert stats.percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


def test_spread_names_no_source_without_samples() -> None:
    assert stats.spread([], "records") == {
        "n": 0, "p50": None, "p95": None, "max": None, "source": "none", "samples": [],
    }  # fmt: skip
    assert stats.spread([1.0, 3.0], "fixture") == {
        "n": 2, "p50": 2.0, "p95": 2.9, "max": 3.0, "source": "fixture", "samples": [1.0, 3.0],
    }  # fmt: skip


def test_pick_takes_the_first_source_with_samples() -> None:
    assert stats.pick(("records", []), ("wall", [2.0, 4.0])) == (3.0, "wall")
    assert stats.pick(("records", [])) == (None, "none")
    assert stats.pick(("records", []), ("summary", stats.listed(5.0))) == (5.0, "summary")
    assert stats.listed(None) == []
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, 0.0) is None


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("1.5GiB / 23.4GiB", 1536.0),
        ("512MiB", 512.0),
        ("2048KiB / 1GiB", 2.0),
        ("1MB", 1e6 / 2**20),
        ("--", None),
        ("3PiB", None),
    ],
)
def test_parse_mib(text: str, mib: float | None) -> None:
    assert memory.parse_mib(text) == (pytest.approx(mib) if mib is not None else None)


def test_phase_breakdown_adds_the_step_to_ready() -> None:
    clusters = [
        {"phases": [["helm", 2.0], {"name": "pods", "seconds": 6.0}], "ready_seconds": 7.0},
        {"phases": [["helm", 4.0], ["pods", 8.0], "junk"], "ready_seconds": 10.0},
        {"phases": [], "ready_seconds": 1.0},
    ]
    assert records.phase_breakdown(clusters) == [
        {"phase": "helm", "cumulative": 3.0, "delta": 3.0, "n": 2},
        {"phase": "pods", "cumulative": 7.0, "delta": 4.0, "n": 2},
        {"phase": "ready", "cumulative": 8.5, "delta": 1.5, "n": 2},
    ]
    assert records.ready_seconds([*clusters, {"ready_seconds": None}]) == [7.0, 10.0, 1.0]


def test_read_timings_skips_partial_lines(tmp_path: Path) -> None:
    (tmp_path / "gw0.jsonl").write_text('{"kind": "create", "seconds": 1}\n[1]\n{"kind": "cr')
    (tmp_path / "gw1.jsonl").write_text('{"kind": "work", "seconds": 2.5, "backend": "kind"}\n')
    assert records.read_timings(tmp_path) == [
        {"kind": "create", "seconds": 1},
        {"kind": "work", "seconds": 2.5, "backend": "kind"},
    ]
    assert records.read_records(tmp_path / "absent.json") is None
    (tmp_path / "records.json").write_text(json.dumps({"clusters": []}))
    assert records.read_records(tmp_path / "records.json") == {"clusters": []}


OUTPUT = """\
..                                                                       [100%]
============================= slowest durations ==============================
12.50s setup    test_speed.py::test_work[0]
10.02s call     test_speed.py::test_work[0]
0.30s teardown test_speed.py::test_work[0]
1.50s setup    test_speed.py::test_work[1]
vclusters: 2 created, 0 resumed
create/resume to ready: median 14.2s, p95 15.0s
2 passed in 40.00s
"""


def test_inner_run_reads_durations_summary_and_timings(tmp_path: Path) -> None:
    inner = records.InnerRun(
        tag="S",
        returncode=0,
        wall=40.0,
        log=tmp_path / "pytest.log",
        output=OUTPUT,
        timings=[
            {"kind": "work", "seconds": 10.0, "backend": "vcluster"},
            {"kind": "work", "seconds": 9.0, "backend": "kind"},
            {"kind": "work", "backend": "vcluster"},
        ],
        records={"clusters": [{"event": "created"}, {"event": "resumed"}, "junk"]},
    )
    assert inner.durations("setup") == [12.5, 1.5]
    assert inner.durations("teardown") == [0.3]
    assert inner.summary_median() == 14.2
    assert inner.summary() == [
        "vclusters: 2 created, 0 resumed",
        "create/resume to ready: median 14.2s, p95 15.0s",
    ]
    assert inner.seconds("work", backend="vcluster") == [10.0]
    assert inner.clusters("resumed") == [{"event": "resumed"}]


def test_verdicts_and_table() -> None:
    results = {
        "K": {"samples": [20.0], "median": 20.0},
        "C": {
            "1.9": {"median": 12.0, "samples": [12.0], "source": "records", "wall_median": 12.5,
                    "phases": []},
            "1.10": {"median": 16.0, "samples": [16.0], "source": "wall", "wall_median": 16.0,
                     "phases": [{"phase": "helm", "cumulative": 3.0, "delta": 3.0, "n": 1}]},
        },
    }  # fmt: skip
    found = report.verdicts(results, "1.10")
    assert [(v["name"], v["met"]) for v in found[:3]] == [
        ("C/K 1.9", True),  # 0.6: versions in numeric order, not as text
        ("C/K 1.10", False),  # 0.8
        ("R/C 1.10", None),
    ]
    text = report.table({"results": results, "verdicts": found, "errors": {"D": "boom\nmore"}})
    assert "C/K 1.10" in text
    assert "C phases, 1.10" in text
    assert "C phases, 1.9" not in text  # no phases recorded
    assert text.endswith("error in D: boom")


def test_the_table_shows_what_each_lever_saves() -> None:
    results = {
        "L": {
            "version": "1.36",
            "variants": {
                "all levers": {"median": 10.0, "samples": [10.0, 10.2], "saves": 0.0},
                "without certificates made ahead": {
                    "median": 11.5, "samples": [11.5, 11.4], "saves": 1.5},
            },
        }
    }  # fmt: skip
    text = report.table({"results": results, "verdicts": [], "errors": {}})
    [lever] = [line for line in text.splitlines() if "without certificates" in line]
    assert "(n=2)" in lever
    assert "the lever saves 1.5" in lever
    [base] = [line for line in text.splitlines() if "all levers" in line]
    assert "saves" not in base


def test_only_takes_phases_in_any_case_and_runs_them_in_order() -> None:
    assert cli.parse_args(["--only", "sk,k", "--stack", "s.json"]).only == ["K", "Sk"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "K,X"])


def test_the_warm_pool_run_is_judged_on_its_setup_waits_next_to_s() -> None:
    def suite(wall: float, p50: float, p95: float) -> dict[str, Any]:
        spread = {"n": 24, "p50": p50, "p95": p95, "max": p95, "source": "records"}
        return {"wall": wall, "tests": 24, "workers": 2, "setup": spread,
                "setup_durations": spread, "teardown_durations": spread}  # fmt: skip

    results = {"S": suite(160.0, 0.0, 17.0), "Sw": suite(130.0, 0.0, 0.9),
               "Sn": suite(144.0, 0.1, 9.0)}  # fmt: skip
    found = {v["name"]: v["met"] for v in report.verdicts(results, "1.36")}
    assert found["setup p95 (S)"] is False
    assert found["setup p95 (Sw: S again, warm pool)"] is True
    text = report.table({"results": results, "verdicts": report.verdicts(results, "1.36"),
                         "errors": {}})  # fmt: skip
    assert "Sw  24 tests, -n 2, vcluster, warm pool, run 2 (adopts)" in text
    assert "Sw/Sn (a second run, warm pool), for info" in text


def test_a_seeded_create_is_judged_against_kind_like_any_create() -> None:
    results = {
        "K": {"samples": [12.0], "median": 12.0},
        "C": {"1.36": {"median": 10.0, "samples": [10.0], "source": "records",
                       "wall_median": 10.2, "phases": []}},
        "Cs": {"version": "1.36", "median": 8.4, "samples": [8.4, 8.1], "source": "records",
               "wall_median": 8.6, "phases": []},
    }  # fmt: skip
    found = {v["name"]: (v["value"], v["met"]) for v in report.verdicts(results, "1.36")}
    assert found["C/K 1.36"] == (pytest.approx(0.83, abs=0.01), False)
    assert found["C/K 1.36, seeded (Cs)"] == (pytest.approx(0.70, abs=0.01), True)
    text = report.table({"results": results, "verdicts": [], "errors": {}})
    [line] = [line for line in text.splitlines() if line.lstrip().startswith("Cs ")]
    assert "from a seed, 1.36 (n=2)" in line
    assert "8.4s" in line
    assert cli.parse_args(["--only", "cs", "--stack", "s.json"]).only == ["Cs"]
