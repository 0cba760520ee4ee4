"""Version matrix parametrization and marker validation at collection."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

def test_plain():
    pass

def test_uses_version(vcluster_version):
    pass

@pytest.fixture
def my_cluster(vcluster_factory):
    return vcluster_factory

def test_indirect(my_cluster):
    pass

@pytest.mark.vcluster(versions=["1.30", "v1.36.0"])
def test_marker_matrix(vcluster_version):
    pass

@pytest.mark.vcluster(version="1.35")
def test_pinned(vcluster_version):
    pass
"""


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line]


def test_versions_option_parametrizes_tests_using_a_vcluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("--collect-only", "-q", "--vcluster-versions=1.33,1.34")
    assert collected(result) == [
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_plain",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_uses_version[k8s-1.33]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_uses_version[k8s-1.34]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_indirect[k8s-1.33]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_indirect[k8s-1.34]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_marker_matrix[k8s-1.30]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_marker_matrix[k8s-1.36.0]",
        "test_versions_option_parametrizes_tests_using_a_vcluster.py::test_pinned",
    ]


def test_without_versions_option_only_markers_parametrize(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("--collect-only", "-q")
    names = [line.split("::")[1] for line in collected(result)]
    assert names == [
        "test_plain",
        "test_uses_version",
        "test_indirect",
        "test_marker_matrix[k8s-1.30]",
        "test_marker_matrix[k8s-1.36.0]",
        "test_pinned",
    ]


def test_version_fixture_value(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_vcluster import KubeVersion

        def test_matrix(vcluster_version, request):
            expected = request.node.callspec.id.removeprefix("k8s-")
            assert str(vcluster_version) == expected

        @pytest.mark.vcluster(version="v1.33.4")
        def test_pinned(vcluster_version):
            assert vcluster_version == KubeVersion(1, 33, 4)

        @pytest.mark.vcluster(versions=["1.31"])
        def test_class_default(vcluster_version):
            assert vcluster_version == KubeVersion(1, 31)
        """
    )
    result = pytester.runpytest("--vcluster-versions=1.32,1.34")
    result.assert_outcomes(passed=4)


def test_class_marker_applies_to_methods(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(versions=["1.33", "1.34"])
        class TestBoth:
            def test_a(self, vcluster_version):
                pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["*TestBoth::test_a[[]k8s-1.33[]]", "*TestBoth::test_a[[]k8s-1.34[]]"]
    )


@pytest.mark.parametrize(
    ("marker", "argument"),
    [
        ('versions="1.33"', "vcluster(versions=...): must be a list"),
        ("version=1.30", "vcluster(version=...): 1.3 is a number"),
        ('version="1.99"', "vcluster(version=...): Kubernetes 1.99 is not supported"),
        ('teardown="nuke"', "vcluster(teardown=...): 'nuke' is not a teardown mode"),
        ("timeout=-1", "vcluster(timeout=...): must be a positive number"),
        ('values_file="nope.yaml"', "vcluster(values_file=...): nope.yaml does not exist"),
        ('flavour="k3s"', "vcluster(flavour=...): unknown argument"),
    ],
)
def test_bad_marker_argument_names_test_and_argument(
    pytester: pytest.Pytester, marker: str, argument: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        def test_fine():
            pass

        @pytest.mark.vcluster({marker})
        def test_bad(vcluster):
            pass
        """
    )
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    module = "test_bad_marker_argument_names_test_and_argument.py"
    result.stdout.fnmatch_lines([f"usage error in {module}::test_bad: {argument}*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_bad_marker_is_reported_even_without_vcluster_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(version="latest")
        def test_marked_only():
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*usage error in *::test_marked_only: vcluster(version=...)*"])
