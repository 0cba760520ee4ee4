"""Options, ini keys, environment variables, marker registration and the report header."""

from __future__ import annotations

import pytest

from pytest_vcluster.settings.config import OPTIONS


def test_every_option_has_a_flag_and_an_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    for spec in OPTIONS:
        assert spec.flag in out, spec.flag
        assert f"{spec.ini} (" in out, spec.ini  # ini keys are listed with their type
        assert spec.env in out, spec.env


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.vcluster(version=None, versions=None, *"])


def test_marker_passes_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(version="1.33", teardown="keep")
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)


def test_bad_teardown_on_command_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--vcluster-teardown=nuke")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-vcluster: --vcluster-teardown: 'nuke' is not a teardown mode "
            "(allowed: delete, pause, keep, keep-on-failure, pause-on-failure)"
        ]
    )


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvcluster_ready_timeout = soon\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option vcluster_ready_timeout: 'soon' is not a number*"])


def test_bad_env_value_names_the_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_VCLUSTER_VERSIONS", "1.33,1.99")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*environment variable PYTEST_VCLUSTER_VERSIONS: Kubernetes 1.99 is not supported*"]
    )


def test_command_line_beats_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvcluster_teardown = nuke\nvcluster_host_name = from-ini\n")
    pytester.makepyfile(
        """
        def test_settings(vcluster_settings):
            assert vcluster_settings.teardown == "pause"
            assert vcluster_settings.host_name == "from-ini"
        """
    )
    result = pytester.runpytest("--vcluster-teardown=pause")
    result.assert_outcomes(passed=1)


def test_missing_binary_given_by_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--vcluster-kind-binary=/nonexistent/kind")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--vcluster-kind-binary: /nonexistent/kind is not an executable file*"]
    )


def test_report_header_kind_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--vcluster-host-name=ci-host", "--vcluster-versions=1.33")
    result.stdout.fnmatch_lines(
        [
            "vcluster: kind host 'ci-host' (node image: kind default)",
            "vcluster settings: teardown=delete, versions=1.33, create_with=api, lookahead=2*",
        ]
    )
    # The tools' versions cost a subprocess each: only a run that used vclusters shows them.
    result.stdout.no_fnmatch_line("vcluster tools:*")


def test_report_header_existing_host(pytester: pytest.Pytester) -> None:
    kubeconfig = pytester.makefile(".yaml", kubeconfig="apiVersion: v1\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(
        f"--vcluster-host-kubeconfig={kubeconfig}", "--vcluster-host-context=prod"
    )
    result.stdout.fnmatch_lines([f"vcluster: existing host, kubeconfig {kubeconfig}, context prod"])
    result.stdout.no_fnmatch_line("*kind host*")


def test_keep_host_flag_does_not_swallow_a_path(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvcluster_keep_host = false\n")
    pytester.makepyfile(
        test_keep="""
        def test_keep(vcluster_settings):
            assert vcluster_settings.keep_host is True
        """
    )
    result = pytester.runpytest("--vcluster-keep-host", "test_keep.py")
    result.assert_outcomes(passed=1)


def test_speed_settings_are_taken_from_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_settings(vcluster_settings):
            assert vcluster_settings.fast_start is False
            assert vcluster_settings.lookahead == 0
            assert vcluster_settings.parallel_creates == 3
            assert vcluster_settings.create_with.value == "cli"
        """
    )
    result = pytester.runpytest(
        "--vcluster-fast-start=false",
        "--vcluster-lookahead=0",
        "--vcluster-parallel-creates=3",
        "--vcluster-create-with=cli",
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--vcluster-lookahead=-1", "--vcluster-lookahead: '-1' must be 0 or more"),
        ("--vcluster-parallel-creates=0", "--vcluster-parallel-creates: must be 1 or more"),
        ("--vcluster-create-with=kubectl", "'kubectl' is not a way to create (allowed: api, cli)"),
    ],
)
def test_bad_speed_settings_are_usage_errors(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
