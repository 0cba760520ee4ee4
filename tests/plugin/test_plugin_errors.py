"""What a user reads when the plugin fails: its message in one glance, not its stack; and
bad values files as usage or collection errors that create nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_plugin_fixtures import FAKE_MANAGER_CONFTEST, events

#: A start that fails deep inside the plugin's own code, as a real one does.
FAILING_START_CONFTEST = FAKE_MANAGER_CONFTEST.replace(
    "    def create(self, spec, *, teardown_on_error, prepared=False):\n",
    "    def create(self, spec, *, teardown_on_error, prepared=False):\n"
    "        __tracebackhide__ = True\n"
    "        if spec.values.get('fail'):\n"
    "            from pytest_vcluster.core.pods import raise_if_stuck\n"
    "            from kubernetes import client\n"
    "            pod = client.V1Pod(\n"
    "                metadata=client.V1ObjectMeta(name='vc-0', namespace='pv-broken'),\n"
    "                status=client.V1PodStatus(container_statuses=[client.V1ContainerStatus(\n"
    "                    name='syncer', image='i', image_id='', ready=False, restart_count=0,\n"
    "                    state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(\n"
    "                        reason='ErrImageNeverPull', message='image not present')))]))\n"
    "            raise_if_stuck([pod], 'control plane in namespace pv-broken')\n",
)

BROKEN_TEST = """
import pytest

@pytest.mark.vcluster(values={"fail": True})
def test_broken_start(vcluster):
    pass
"""


def lines_before_message(output: str) -> int:
    """Lines between the error's header and the plugin's message."""
    lines = output.splitlines()
    header = next(
        i for i, line in enumerate(lines) if "ERROR at setup of test_broken_start" in line
    )
    message = next(i for i, line in enumerate(lines) if i > header and "StartFailedError:" in line)
    return message - header - 1


def test_a_start_failure_shows_the_message_not_the_plugins_stack(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAILING_START_CONFTEST)
    pytester.makepyfile(BROKEN_TEST)
    result = pytester.runpytest("--vcluster-lookahead=0")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert lines_before_message(output) <= 5, output
    assert "raise_if_stuck" not in output
    assert "def wait_until" not in output
    result.stdout.fnmatch_lines(
        [
            "*StartFailedError: control plane in namespace pv-broken: pod vc-0 container "
            "syncer is ErrImageNeverPull: image not present",
            "*run with --full-trace or -vv*",
        ]
    )


@pytest.mark.parametrize("flag", ["--full-trace", "-vv"])
def test_full_trace_or_vv_keeps_the_plugins_frames(pytester: pytest.Pytester, flag: str) -> None:
    pytester.makeconftest(FAILING_START_CONFTEST)
    pytester.makepyfile(BROKEN_TEST)
    result = pytester.runpytest("--vcluster-lookahead=0", flag)
    result.assert_outcomes(errors=1)
    assert "raise_if_stuck" in result.stdout.str()


def test_a_plugin_error_in_the_test_body_points_at_the_users_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        def test_bad_version(vcluster_factory):
            vcluster_factory(version="one.two")
        """
    )
    result = pytester.runpytest("--vcluster-lookahead=0")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert 'vcluster_factory(version="one.two")' in output  # the user's own line stays
    assert "ConfigError: vcluster_factory(version=...)" in output
    assert "session.py" not in output
    assert "versions.py" not in output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("a: [\n", "is not valid YAML: line 2, column 1: expected the node content*"),
        ("- 1\n- 2\n", "must hold a mapping"),
    ],
)
def test_a_bad_values_file_option_is_a_usage_error_and_creates_nothing(
    pytester: pytest.Pytester, content: str, problem: str
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile("def test_one(vcluster):\n    pass\n")
    Path(pytester.path, "values.yaml").write_text(content)
    result = pytester.runpytest("--vcluster-values-files=values.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: pytest-vcluster: --vcluster-values-files: values file */values.yaml {problem}"]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert events(pytester) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--vcluster-values=values.yaml", "--vcluster-vcluster-binary=/bin/true"],
        ["-o", "vcluster_values=values.yaml", "-o", "vcluster_vcluster_binary=/bin/true"],
    ],
)
def test_renamed_options_keep_their_former_names(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    Path(pytester.path, "values.yaml").write_text("x: 1\n")
    pytester.makepyfile(
        """
        def test_settings(vcluster_settings):
            assert [p.name for p in vcluster_settings.values_files] == ["values.yaml"]
            assert vcluster_settings.vcluster_binary == "/bin/true"
        """
    )
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_a_bad_values_file_in_ini_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makeini("[pytest]\nvcluster_values = values.yaml\n")
    pytester.makepyfile("def test_one(vcluster):\n    pass\n")
    Path(pytester.path, "values.yaml").write_text("a: [\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert re.search(r"vcluster_values.*values\.yaml is not valid YAML", result.stderr.str())


def test_a_markers_broken_values_file_is_a_collection_error_naming_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    Path(pytester.path, "values.yaml").write_text("a: [\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(values_file="values.yaml")
        def test_marked(vcluster):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    result.stdout.fnmatch_lines(
        [
            "*usage error in test_a_markers_broken_values_file_is_a_collection_error_naming_"
            "the_test.py::test_marked: vcluster(values_file=...): values file */values.yaml is "
            "not valid YAML: line 2*"
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    assert events(pytester) == []


def test_a_prepared_cluster_is_started_with_its_tests_teardown_mode(
    pytester: pytest.Pytester,
) -> None:
    # keep-on-failure applies to a cluster prepared ahead that fails to start, too.
    pytester.makeconftest(FAKE_MANAGER_CONFTEST)
    pytester.makepyfile(
        """
        def test_a(vcluster):
            pass

        def test_b(vcluster):
            pass
        """
    )
    result = pytester.runpytest("--vcluster-teardown=keep-on-failure", "--vcluster-lookahead=1")
    result.assert_outcomes(passed=2)
    prepared = [e for e in events(pytester) if e["event"] == "create" and e["prepared"]]
    assert prepared
    assert {e["on_error"] for e in prepared} == {"keep-on-failure"}
    assert json.dumps(prepared)  # serialisable, as the records file needs


def test_a_values_fixture_that_is_no_mapping_is_a_clear_error_and_creates_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        FAKE_MANAGER_CONFTEST
        + "\n\n@pytest.fixture\ndef vcluster_values():\n    return ['not', 'a', 'mapping']\n"
    )
    pytester.makepyfile("def test_one(vcluster):\n    pass\n")
    result = pytester.runpytest("--vcluster-lookahead=0")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "ConfigError: the vcluster_values fixture: must be a dict of chart values, got "
            "['not', 'a', 'mapping']"
        ]
    )
    assert events(pytester) == []
