"""Kubernetes versions of virtual clusters: parsing, mapping a minor to an image tag, chart values.

A version is written either as a minor (``"1.33"``) or as an exact release (``"v1.33.4"`` or
``"1.33.4"``). The control plane image of a vcluster is ``ghcr.io/loft-sh/kubernetes:<tag>``, so
a minor must be mapped to an exact tag; the map is configurable because air-gapped and locally
built images use their own tags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vcluster.core.errors import ConfigError

__all__ = [
    "ALL_VERSIONS",
    "DEFAULT_VERSION_MAP",
    "SUPPORTED_MINORS",
    "KubeVersion",
    "check_served",
    "parse_version",
    "parse_version_list",
    "parse_version_map",
    "resolve_tag",
    "served_versions",
    "version_values",
]

#: Virtual Kubernetes minors supported by the vcluster release this plugin targets (v0.36).
SUPPORTED_MINORS: tuple[int, ...] = (30, 31, 32, 33, 34, 35, 36)

#: The tags vcluster v0.36.1 itself maps each minor to (``config/default_extra_values.go``).
DEFAULT_VERSION_MAP: Mapping[str, str] = {
    "1.30": "v1.30.2",
    "1.31": "v1.31.1",
    "1.32": "v1.32.1",
    "1.33": "v1.33.4",
    "1.34": "v1.34.0",
    "1.35": "v1.35.0",
    "1.36": "v1.36.0",
}

#: ``--vcluster-versions=all``: every version :func:`served_versions` lists.
ALL_VERSIONS = "all"

_VERSION_RE = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ALLOWED = "a minor like 1.33 or an exact version like v1.33.4, for Kubernetes 1.30 to 1.36"


@dataclass(frozen=True, order=True)
class KubeVersion:
    """A Kubernetes version as the user wrote it: a minor, or a minor plus patch."""

    major: int
    minor: int
    patch: int | None = None

    @property
    def minor_key(self) -> str:
        """The minor as written in version maps, e.g. ``1.33``."""
        return f"{self.major}.{self.minor}"

    @property
    def is_exact(self) -> bool:
        """True when a patch release was given."""
        return self.patch is not None

    def __str__(self) -> str:
        if self.patch is None:
            return self.minor_key
        return f"{self.minor_key}.{self.patch}"

    @property
    def test_id(self) -> str:
        """The parametrization id, e.g. ``k8s-1.33``."""
        return f"k8s-{self}"


def parse_version(text: object, *, option: str = "version") -> KubeVersion:
    """Parse ``1.33``, ``v1.33.4`` or ``1.33.4``; reject malformed and unsupported versions."""
    if isinstance(text, float):
        # ``version=1.30`` in a marker is a float and would silently become "1.3".
        raise ConfigError(option, f"{text!r} is a number; write the version as a string", _ALLOWED)
    if not isinstance(text, str):
        raise ConfigError(option, f"{text!r} is not a string", _ALLOWED)
    match = _VERSION_RE.match(text.strip())
    if match is None:
        raise ConfigError(option, f"{text!r} is not a Kubernetes version", _ALLOWED)
    patch = match.group("patch")
    version = KubeVersion(
        int(match.group("major")), int(match.group("minor")), int(patch) if patch else None
    )
    if version.major != 1 or version.minor not in SUPPORTED_MINORS:
        raise ConfigError(option, f"Kubernetes {version} is not supported by vcluster", _ALLOWED)
    return version


def parse_version_list(value: object, *, option: str = "versions") -> tuple[KubeVersion, ...]:
    """Parse ``"1.33,1.34"`` or a list of versions; duplicates are an error."""
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(option, f"{value!r} is not a list of versions", _ALLOWED)
    if not items:
        raise ConfigError(option, "the list of versions is empty", _ALLOWED)
    versions = tuple(parse_version(item, option=option) for item in items)
    seen: set[KubeVersion] = set()
    for version in versions:
        if version in seen:
            raise ConfigError(option, f"version {version} is listed twice")
        seen.add(version)
    return versions


def parse_version_map(value: str, *, option: str = "--vcluster-version-map") -> dict[str, str]:
    """Parse ``1.33=v1.33.13,1.34=v1.34.4`` or a path to a YAML/JSON mapping of minor to tag."""
    text = value.strip()
    if not text:
        return {}
    raw: Mapping[Any, Any]
    if "=" not in text:
        raw = _load_map_file(text, option)
    else:
        pairs: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, tag = part.partition("=")
            if not sep:
                raise ConfigError(option, f"{part.strip()!r} is not MINOR=TAG", "1.33=v1.33.4")
            pairs[key.strip()] = tag.strip()
        raw = pairs
    result: dict[str, str] = {}
    for key, tag in raw.items():
        # YAML reads an unquoted 1.30 as the float 1.3: refuse rather than guess.
        if not isinstance(key, str):
            raise ConfigError(option, f"minor {key!r} must be a string (quote it: '1.30')")
        minor = parse_version(key, option=option)
        if minor.is_exact:
            raise ConfigError(option, f"key {key!r} must be a minor like 1.33, not a release")
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise ConfigError(option, f"tag {tag!r} for {key} is not an image tag")
        result[minor.minor_key] = tag
    return result


def _load_map_file(text: str, option: str) -> Mapping[Any, Any]:
    import yaml  # noqa: PLC0415 - loaded only when a YAML file is read

    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            option, f"{text!r} is neither MINOR=TAG pairs nor an existing file", "1.33=v1.33.4"
        )
    content = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(content) if path.suffix == ".json" else yaml.safe_load(content)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(option, f"cannot parse {path}: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise ConfigError(option, f"{path} must hold a mapping of minor to tag")
    return loaded


def resolve_tag(version: KubeVersion, version_map: Mapping[str, str]) -> str:
    """The image tag for ``version``: exact versions map to themselves, minors via the map.

    The user's map wins over :data:`DEFAULT_VERSION_MAP`.
    """
    if version.is_exact:
        return f"v{version}"
    tag = version_map.get(version.minor_key) or DEFAULT_VERSION_MAP.get(version.minor_key)
    if tag is None:
        raise ConfigError(
            "--vcluster-version-map",
            f"no image tag known for Kubernetes {version}",
            f"add {version}=v{version}.<patch> to the map",
        )
    return tag


def version_values(tag: str) -> dict[str, Any]:
    """Chart values that pin the virtual control plane to ``tag``."""
    # ``version`` takes precedence over ``image.tag`` in the chart; set both so that either
    # reading of the values (the chart's or the syncer's) sees the same tag.
    return {"controlPlane": {"distro": {"k8s": {"version": tag, "image": {"tag": tag}}}}}


def served_versions(version_map: Mapping[str, str]) -> tuple[KubeVersion, ...]:
    """The minors this environment serves, oldest first: the configured version map's, else
    the ones vcluster itself maps (:data:`DEFAULT_VERSION_MAP`)."""
    minors = version_map or DEFAULT_VERSION_MAP
    return tuple(sorted(parse_version(minor) for minor in minors))


def check_served(version: KubeVersion, version_map: Mapping[str, str], option: str) -> None:
    """Refuse a minor a configured version map does not serve, before anything is made.

    A version map says which control-plane images exist here (an air-gapped machine has only
    those): a minor outside it would only fail once a cluster is half made, on a missing
    image. An exact release names its image tag itself and is taken as asked. Without a map
    every minor vcluster maps is served, from vcluster's own registry.
    """
    if not version_map or version.is_exact or version.minor_key in version_map:
        return
    minors = sorted(version_map, key=parse_version)
    served = ", ".join(f"{minor} ({version_map[minor]})" for minor in minors)
    raise ConfigError(
        option,
        f"Kubernetes {version} is not served here: the version map serves {served}",
        "one of those, an exact release like v1.33.4, or MINOR=TAG added to "
        "--vcluster-version-map for an image that exists here",
    )
