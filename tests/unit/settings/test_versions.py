"""Version parsing, mapping a minor to an image tag, and the chart values that pin it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.settings.versions import (
    DEFAULT_VERSION_MAP,
    SUPPORTED_MINORS,
    KubeVersion,
    parse_version,
    parse_version_list,
    parse_version_map,
    resolve_tag,
    version_values,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.33", KubeVersion(1, 33)),
        ("v1.33.4", KubeVersion(1, 33, 4)),
        ("1.33.4", KubeVersion(1, 33, 4)),
        (" 1.30 ", KubeVersion(1, 30)),
    ],
)
def test_parse(text: str, expected: KubeVersion) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.33.", "v1.33.4.1", "one.two", "1.33-rc1", "x1.33"])
def test_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a Kubernetes version"):
        parse_version(text, option="--vcluster-versions")


@pytest.mark.parametrize("text", ["1.29", "1.37", "2.33", "v1.18.1"])
def test_unsupported(text: str) -> None:
    with pytest.raises(ConfigError, match="not supported by vcluster") as info:
        parse_version(text)
    assert "1.30 to 1.36" in str(info.value)


def test_float_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="write the version as a string"):
        parse_version(1.30)


def test_str_and_id() -> None:
    assert str(KubeVersion(1, 33)) == "1.33"
    assert KubeVersion(1, 33, 4).test_id == "k8s-1.33.4"
    assert KubeVersion(1, 34).test_id == "k8s-1.34"


def test_list() -> None:
    assert parse_version_list("1.33,1.34") == (KubeVersion(1, 33), KubeVersion(1, 34))
    assert parse_version_list(["1.33"]) == (KubeVersion(1, 33),)
    with pytest.raises(ConfigError, match="listed twice"):
        parse_version_list("1.33,v1.33")
    with pytest.raises(ConfigError, match="empty"):
        parse_version_list(" , ")
    with pytest.raises(ConfigError, match="not a list"):
        parse_version_list(133)


def test_map_pairs() -> None:
    assert parse_version_map("1.33=v1.33.13, 1.34=v1.34.4") == {
        "1.33": "v1.33.13",
        "1.34": "v1.34.4",
    }
    assert parse_version_map("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.33", "neither MINOR=TAG pairs nor an existing file"),
        ("1.33=v1.33.1,junk", "'junk' is not MINOR=TAG"),
        ("1.33.4=v1", "must be a minor"),
        ("1.33=bad tag", "is not an image tag"),
        ("1.99=v1.99.0", "not supported"),
    ],
)
def test_map_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_version_map(text)


def test_map_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("'1.33': v1.33.13\n'1.34': local-1.34\n")
    assert parse_version_map(str(yaml_file)) == {"1.33": "v1.33.13", "1.34": "local-1.34"}
    json_file = tmp_path / "map.json"
    json_file.write_text(json.dumps({"1.35": "v1.35.1"}))
    assert parse_version_map(str(json_file)) == {"1.35": "v1.35.1"}


def test_map_file_with_unquoted_minor_is_refused(tmp_path: Path) -> None:
    # YAML reads 1.30 as the float 1.3: refusing it beats silently mapping 1.3.
    path = tmp_path / "map.yaml"
    path.write_text("1.30: v1.30.2\n")
    with pytest.raises(ConfigError, match="must be a string"):
        parse_version_map(str(path))


def test_map_file_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("- 1.33\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_version_map(str(path))


def test_resolve_tag() -> None:
    assert resolve_tag(KubeVersion(1, 33, 7), {}) == "v1.33.7"
    assert resolve_tag(KubeVersion(1, 33), {"1.33": "v1.33.13"}) == "v1.33.13"
    assert resolve_tag(KubeVersion(1, 33), {}) == DEFAULT_VERSION_MAP["1.33"]


def test_default_map_covers_every_supported_minor() -> None:
    assert sorted(DEFAULT_VERSION_MAP) == [f"1.{minor}" for minor in SUPPORTED_MINORS]
    for minor, tag in DEFAULT_VERSION_MAP.items():
        assert tag.startswith(f"v{minor}.")


def test_version_values() -> None:
    values = version_values("v1.33.4")
    k8s = values["controlPlane"]["distro"]["k8s"]
    assert k8s == {"version": "v1.33.4", "image": {"tag": "v1.33.4"}}
