"""Validation of the ``vcluster`` marker's arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.settings.config import TeardownMode
from pytest_vcluster.settings.markers import MarkerArgs, check_values, parse_marker
from pytest_vcluster.settings.versions import KubeVersion


def test_empty(tmp_path: Path) -> None:
    assert parse_marker((), {}, tmp_path) == MarkerArgs()


def test_all_arguments(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("a: 1\n")
    args = parse_marker(
        (),
        {
            "version": "v1.33.4",
            "values": {"sync": {"toHost": {}}},
            "values_file": "values.yaml",
            "teardown": "keep-on-failure",
            "timeout": 90,
        },
        tmp_path,
    )
    assert args.version == KubeVersion(1, 33, 4)
    assert args.values == {"sync": {"toHost": {}}}
    assert args.values_file == tmp_path / "values.yaml"
    assert args.teardown is TeardownMode.KEEP_ON_FAILURE
    assert args.timeout == 90.0


def test_versions(tmp_path: Path) -> None:
    args = parse_marker((), {"versions": ["1.33", "1.34"]}, tmp_path)
    assert args.versions == (KubeVersion(1, 33), KubeVersion(1, 34))
    assert args.version is None


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("1.33",), {}, r"vcluster\(\.\.\.\): positional arguments"),
        ((), {"verison": "1.33"}, r"vcluster\(verison=\.\.\.\): unknown argument"),
        ((), {"version": "1.33", "versions": ["1.34"]}, "either version or versions"),
        ((), {"version": "1.2"}, r"vcluster\(version=\.\.\.\): Kubernetes 1.2 is not supported"),
        ((), {"version": 1.33}, "write the version as a string"),
        ((), {"versions": "1.33,1.34"}, r"vcluster\(versions=\.\.\.\): must be a list"),
        ((), {"versions": []}, "empty"),
        ((), {"values": ["a"]}, r"vcluster\(values=\.\.\.\): must be a dict"),
        ((), {"values_file": "missing.yaml"}, r"vcluster\(values_file=\.\.\.\): missing.yaml does"),
        ((), {"values_file": 3}, "must be a path"),
        ((), {"teardown": "nuke"}, r"vcluster\(teardown=\.\.\.\): 'nuke' is not a teardown mode"),
        ((), {"timeout": 0}, r"vcluster\(timeout=\.\.\.\): must be a positive"),
        ((), {"timeout": "60"}, "must be a positive"),
        ((), {"timeout": True}, "must be a positive"),
    ],
)
def test_errors_name_the_argument(
    tmp_path: Path, args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_marker(args, kwargs, tmp_path)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"a": object()}, "a holds object"),
        ({"a": {"b": [1, {"c": set()}]}}, "a.b[1].c holds set"),
        ({1: "x"}, "the values (key 1) holds int"),
    ],
)
def test_chart_values_must_be_plain_data(values: dict[object, object], where: str) -> None:
    # Chart values go to helm as YAML; anything else failed with the YAML library's words
    # once a cluster was half made.
    with pytest.raises(ConfigError, match=re.escape(where)):
        check_values(values, "vcluster_factory(values=...)")
    assert check_values({"a": [1, "x", None, True, 1.5]}, "v") == {"a": [1, "x", None, True, 1.5]}


def test_recycle_must_be_a_boolean(tmp_path: Path) -> None:
    assert parse_marker((), {"recycle": False}, tmp_path).recycle is False
    assert parse_marker((), {}, tmp_path).recycle is None
    with pytest.raises(ConfigError, match=r"vcluster\(recycle=\.\.\.\): must be True or False"):
        parse_marker((), {"recycle": "no"}, tmp_path)
