"""The ``vcluster`` marker: its arguments, validated into one frozen object.

``@pytest.mark.vcluster(version=None, versions=None, values=None, values_file=None,
teardown=None, timeout=None, persistent=None, manifests=None, recycle=None)``. Validation happens at
collection, once per marker; a bad argument raises
:class:`~pytest_vcluster.core.errors.ConfigError` naming it, which the plugin reports together
with the test id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.settings.config import MARKER_HELP, TeardownMode, parse_teardown
from pytest_vcluster.settings.values import load_values_file
from pytest_vcluster.settings.versions import KubeVersion, parse_version, parse_version_list

__all__ = [
    "MANIFEST_SUFFIXES",
    "MARKER_HELP",
    "MarkerArgs",
    "check_manifests",
    "check_persistent",
    "check_timeout",
    "check_values",
    "parse_marker",
]

_ARGS = (
    "version",
    "versions",
    "values",
    "values_file",
    "teardown",
    "timeout",
    "persistent",
    "manifests",
    "recycle",
)
#: What ``manifests=`` reads in a directory (the same as ``VCluster.apply``).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class MarkerArgs:
    """Validated marker arguments; ``None`` means "not given, use the settings"."""

    version: KubeVersion | None = None
    versions: tuple[KubeVersion, ...] = ()
    values: Mapping[str, Any] | None = None
    values_file: Path | None = None
    teardown: TeardownMode | None = None
    timeout: float | None = None
    persistent: bool | None = None
    manifests: tuple[Path, ...] = ()
    recycle: bool | None = None


def _arg(name: str) -> str:
    return f"vcluster({name}=...)"


def parse_marker(
    args: Sequence[object], kwargs: Mapping[str, object], base_dir: Path
) -> MarkerArgs:
    """Validate marker arguments; relative ``values_file`` paths start at ``base_dir``."""
    if args:
        raise ConfigError(
            "vcluster(...)",
            f"positional arguments {list(args)!r} are not accepted",
            ", ".join(_ARGS),
        )
    unknown = sorted(set(kwargs) - set(_ARGS))
    if unknown:
        raise ConfigError(f"vcluster({unknown[0]}=...)", "unknown argument", ", ".join(_ARGS))
    version = kwargs.get("version")
    versions = kwargs.get("versions")
    if version is not None and versions is not None:
        raise ConfigError(_arg("versions"), "give either version or versions, not both")
    parsed_version = parse_version(version, option=_arg("version")) if version is not None else None
    parsed_versions: tuple[KubeVersion, ...] = ()
    if versions is not None:
        if isinstance(versions, str):
            raise ConfigError(_arg("versions"), "must be a list, e.g. ['1.33', '1.34']")
        parsed_versions = parse_version_list(versions, option=_arg("versions"))

    values = check_values(kwargs.get("values"), _arg("values"))

    values_file: Path | None = None
    raw_file = kwargs.get("values_file")
    if raw_file is not None:
        if not isinstance(raw_file, str | Path):
            raise ConfigError(_arg("values_file"), f"must be a path, got {raw_file!r}")
        values_file = Path(raw_file).expanduser()
        if not values_file.is_absolute():
            values_file = base_dir / values_file
        if not values_file.is_file():
            raise ConfigError(_arg("values_file"), f"{raw_file} does not exist ({values_file})")
        load_values_file(values_file, option=_arg("values_file"))

    teardown = kwargs.get("teardown")
    parsed_teardown = parse_teardown(teardown, option=_arg("teardown")) if teardown else None

    return MarkerArgs(
        manifests=check_manifests(kwargs.get("manifests"), _arg("manifests"), base_dir),
        version=parsed_version,
        versions=parsed_versions,
        values=values,
        values_file=values_file,
        teardown=parsed_teardown,
        timeout=check_timeout(kwargs.get("timeout"), _arg("timeout")),
        persistent=check_persistent(kwargs.get("persistent"), _arg("persistent")),
        recycle=check_persistent(kwargs.get("recycle"), _arg("recycle")),
    )


# The marker and vcluster_factory(...) take the same arguments and check them alike.


def check_values(value: object, option: str) -> dict[str, Any] | None:
    """Chart values as a dict, or ``None`` when not given."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(option, f"must be a dict of chart values, got {value!r}")
    odd = _not_plain(value, "")
    if odd is not None:
        # Chart values go to helm as YAML: anything else would fail only once a cluster is
        # half made, with the YAML library's words instead of these.
        where, found = odd
        raise ConfigError(
            option,
            f"{where or 'the values'} holds {type(found).__name__} {found!r}; chart values are "
            "plain data: dicts with string keys, lists, strings, numbers, booleans and None",
        )
    return dict(value)


def _not_plain(value: object, where: str) -> tuple[str, object] | None:
    """The first place in ``value`` that holds something YAML cannot write plainly."""
    if value is None or isinstance(value, str | bool | int | float):
        return None
    children: list[tuple[str, object]]
    if isinstance(value, Mapping):
        odd_keys = [key for key in value if not isinstance(key, str)]
        if odd_keys:
            return f"{where or 'the values'} (key {odd_keys[0]!r})", odd_keys[0]
        children = [(f"{where}.{key}" if where else str(key), item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    else:
        return where, value
    for place, item in children:
        found = _not_plain(item, place)
        if found is not None:
            return found
    return None


def check_manifests(value: object, option: str, base_dir: Path) -> tuple[Path, ...]:
    """Existing manifest files or directories; relative paths start at ``base_dir``."""
    if value is None:
        return ()
    items: list[object] = [value] if isinstance(value, str | Path) else value  # type: ignore[assignment]
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(option, f"must be a path or a list of paths, got {value!r}")
    paths: list[Path] = []
    for item in items:
        if not isinstance(item, str | Path):
            raise ConfigError(option, f"{item!r} is not a path")
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            raise ConfigError(option, f"{item} does not exist ({path})")
        if path.is_file() and path.suffix not in MANIFEST_SUFFIXES:
            raise ConfigError(
                option, f"{item} is not a manifest file", ", ".join(MANIFEST_SUFFIXES)
            )
        paths.append(path)
    return tuple(paths)


def check_timeout(value: object, option: str) -> float | None:
    """A positive number of seconds, or ``None`` when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(option, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def check_persistent(value: object, option: str) -> bool | None:
    """True or False, or ``None`` when not given."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(option, f"must be True or False, got {value!r}")
    return value
