"""One path for a cluster request, and a plugin that costs nothing where it is not used.

The cluster manager is faked (see test_plugin_fixtures.py), so nothing is created.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from test_plugin_fixtures import FAKE_MANAGER_CONFTEST, events

COUNTING_CONFTEST = (
    FAKE_MANAGER_CONFTEST
    + """

from pytest_vcluster.settings import markers as _markers

PARSES = Path(__file__).parent / "parses.txt"
_original = _markers.parse_marker


def _counting(*args, **kwargs):
    with PARSES.open("a") as f:
        f.write("parse\\n")
    return _original(*args, **kwargs)


_markers.parse_marker = _counting
"""
)


def test_each_marker_is_parsed_once_and_its_spec_built_once(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.vcluster(values={"a": 1})

        @pytest.mark.vcluster(versions=["1.33", "1.34"], values={"b": 2})
        def test_matrix(vcluster):
            pass

        def test_one(vcluster):
            pass

        def test_two(vcluster):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    # Two markers (the module's and the function's), four tests: two parses.
    assert Path(pytester.path, "parses.txt").read_text().count("parse") == 2
    created = [e for e in events(pytester) if e["event"] == "create"]
    assert sorted(str(e["version"]) for e in created) == ["1.33", "1.34", "None", "None"]


def test_the_spec_built_at_collection_is_the_one_created(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        FAKE_MANAGER_CONFTEST
        + """

SPECS = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    from pytest_vcluster.plugin import REQUEST_KEY
    for item in session.items:
        SPECS[item.nodeid] = item.stash[REQUEST_KEY].first


@pytest.fixture(autouse=True)
def _same_spec(request, vcluster_factory):
    yield
    made = vcluster_factory.created[0] if vcluster_factory.created else None
    assert made is not None
    with (Path(__file__).parent / "same.txt").open("a") as f:
        f.write(str(SPECS[request.node.nodeid].spec_hash == made.spec_hash) + "\\n")
"""
    )
    pytester.makepyfile(
        """
        def test_a(vcluster):
            pass

        def test_b(vcluster):
            pass
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert Path(pytester.path, "same.txt").read_text().split() == ["True", "True"]


def test_vcluster_worker_goes_through_the_request_and_the_statistics(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        def test_a(vcluster_worker):
            pass

        def test_b(vcluster_worker):
            pass

        @pytest.mark.vcluster(values={"x": 1})
        def test_c(vcluster_worker):
            pass
        """
    )
    records = Path(pytester.path, "records.json")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--vcluster-records={records}")
    result.assert_outcomes(passed=3)
    setups = json.loads(records.read_text())["setups"]
    assert [(s["nodeid"].split("::")[-1], s["source"]) for s in setups] == [
        ("test_a", "created"),
        ("test_b", "shared"),
        ("test_c", "created"),
    ]
    result.stdout.fnmatch_lines(["*tests waited for their vcluster: *over 3*"])


def _handlers() -> tuple[object, object]:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_a_run_without_vclusters_takes_no_signal(pytester: pytest.Pytester) -> None:
    before = _handlers()
    pytester.makeconftest(
        """
        import signal
        from pathlib import Path

        def pytest_sessionfinish(session):
            handler = signal.getsignal(signal.SIGTERM)
            Path(__file__).with_name("during.txt").write_text(repr(handler))
        """
    )
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert "Interrupts" not in Path(pytester.path, "during.txt").read_text()
    assert _handlers() == before


def test_a_run_with_vclusters_takes_the_signals_and_gives_them_back(
    pytester: pytest.Pytester,
) -> None:
    before = _handlers()
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        import signal

        def test_plain():
            # Before any vcluster fixture: the handlers are still the ones the run found.
            assert "Interrupts" not in repr(signal.getsignal(signal.SIGTERM))

        def test_cluster(vcluster):
            assert "Interrupts" in repr(signal.getsignal(signal.SIGTERM))
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert _handlers() == before


def test_marker_manifests_travel_with_the_spec_and_are_checked_at_collection(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    deploy = Path(pytester.path, "deploy")
    deploy.mkdir()
    (deploy / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(manifests=["deploy/"])
        def test_with(vcluster):
            pass

        def test_without(vcluster):
            pass
        """
    )
    pytester.makepyfile(
        test_broken="""
        import pytest

        @pytest.mark.vcluster(manifests="missing/")
        def test_missing(vcluster):
            pass
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--continue-on-collection-errors"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*usage error in *test_missing*vcluster(manifests=...): missing/ does not exist*"]
    )
    made = {
        str(e["test"]).split("::")[-1]: e["manifests"]
        for e in events(pytester)
        if e["event"] == "create"
    }
    assert made == {"test_with": [str(deploy)], "test_without": []}
