"""Progress of the stress suite, for ``benchmarks/stress.py`` to print while a long run goes on.

The controlling process (the only one without xdist, the controller under xdist, which gets
every worker's reports) appends one line per test phase worth counting to the file named by
``STRESS_PROGRESS_FILE``: ``<when> <outcome> <node id>``. Without the variable nothing is
written, so the suite also runs by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROGRESS_ENV = "STRESS_PROGRESS_FILE"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if not path or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # an xdist worker: the controller writes its reports
    counted = (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    )
    if counted:
        with Path(path).open("a", encoding="utf-8") as progress:
            progress.write(f"{report.when} {report.outcome} {report.nodeid}\n")
