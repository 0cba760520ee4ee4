"""Settings: one frozen object resolved once from command line > ini > environment > default.

Every setting exists as ``--vcluster-NAME`` on the command line, ``vcluster_NAME`` in the ini
file and ``PYTEST_VCLUSTER_NAME`` in the environment (for CI). :data:`OPTIONS` is the single
table the plugin registers and this module resolves; it does not import pytest, so the rules
are testable on their own.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.settings.values import load_values_file, yaml_problem
from pytest_vcluster.settings.versions import (
    ALL_VERSIONS,
    KubeVersion,
    check_served,
    parse_version_list,
    parse_version_map,
    served_versions,
)

__all__ = [
    "CREATE_WITH_CHOICES",
    "OPTIONS",
    "TEARDOWN_CHOICES",
    "CreateWith",
    "OptionSpec",
    "Settings",
    "TeardownMode",
    "default_parallel_creates",
    "describe",
    "describe_host",
    "option_spec",
    "parse_age",
    "parse_teardown",
    "resolve_settings",
]

Kind = Literal[
    "str",
    "bool",
    "on-off",
    "path",
    "paths",
    "output",
    "seconds",
    "count",
    "teardown",
    "versions",
    "version-map",
    "create-with",
    "age",
    "images",
    "kind-name",
]


class TeardownMode(enum.StrEnum):
    """What happens to a vcluster when its fixture ends."""

    DELETE = "delete"
    PAUSE = "pause"
    KEEP = "keep"
    KEEP_ON_FAILURE = "keep-on-failure"
    PAUSE_ON_FAILURE = "pause-on-failure"


TEARDOWN_CHOICES = ", ".join(mode.value for mode in TeardownMode)


class CreateWith(enum.StrEnum):
    """How a vcluster's objects reach the host."""

    #: ``helm template`` (the chart rendered here) and the objects created through the API.
    API = "api"
    #: ``vcluster create --driver helm``, as a user would run it.
    CLI = "cli"


CREATE_WITH_CHOICES = ", ".join(choice.value for choice in CreateWith)


def default_parallel_creates() -> int:
    """Concurrent creates per process: starting a control plane keeps about two cores busy."""
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its name, help, default and how its text is parsed."""

    name: str
    help: str
    kind: Kind = "str"
    default: str | None = None
    metavar: str = "VALUE"
    #: The name this setting had before (flag, ini key, environment variable and settings-file
    #: key all still work, deprecated), so a rename breaks no existing configuration.
    former: str | None = None
    #: The :class:`Settings` attribute, when it is not the name with ``-`` as ``_``.
    attribute: str | None = None

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--vcluster-host-name``."""
        return f"--vcluster-{self.name}"

    @property
    def dest(self) -> str:
        """The attribute name on ``config.option`` and the ini key."""
        return "vcluster_" + self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        """The ini key, e.g. ``vcluster_host_name``."""
        return self.dest

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``PYTEST_VCLUSTER_HOST_NAME``."""
        return "PYTEST_" + self.dest.upper()

    @property
    def attr(self) -> str:
        """The :class:`Settings` attribute holding the value."""
        return self.attribute or self.name.replace("-", "_")

    @property
    def former_spec(self) -> OptionSpec | None:
        """The same setting under its former name, if it had one."""
        return (
            OptionSpec(self.former, self.help, self.kind, metavar=self.metavar)
            if self.former
            else None
        )


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "settings-file",
        "A YAML or JSON file of settings (option names without --vcluster-, e.g. node-image: "
        "IMAGE), below the command line, ini file and environment: one place for a prepared "
        "environment's settings (the offline stack writes one).",
        kind="path",
        metavar="FILE",
    ),
    OptionSpec(
        "host-name",
        "Name of the kind cluster that hosts the vclusters; created if missing. Lower-case "
        "letters, digits, '.' and '-', as kind accepts.",
        kind="kind-name",
        default="pytest-vcluster",
        metavar="NAME",
    ),
    OptionSpec(
        "node-image",
        "Node image for 'kind create cluster --image' (default: kind's own).",
        metavar="IMAGE",
    ),
    OptionSpec(
        "host-kubeconfig",
        "Use this existing cluster as host instead of kind; it is never created or deleted.",
        kind="path",
        metavar="PATH",
    ),
    OptionSpec(
        "host-context",
        "Context in --vcluster-host-kubeconfig (default: its current context).",
        metavar="CONTEXT",
    ),
    OptionSpec(
        "keep-host",
        "Keep the kind host the plugin created at the end of the run "
        "(ini/environment: true or false).",
        kind="bool",
        default="false",
        metavar="BOOL",
    ),
    OptionSpec(
        "host-timeout",
        "Seconds allowed for creating the kind host and for it to become ready.",
        kind="seconds",
        default="600",
        metavar="SECONDS",
    ),
    OptionSpec(
        "chart-repo",
        "Helm repository of the vcluster chart (vcluster CLI --chart-repo).",
        metavar="URL",
    ),
    OptionSpec(
        "chart-version",
        "Version of the vcluster chart (vcluster CLI --chart-version).",
        metavar="VERSION",
    ),
    OptionSpec(
        "local-chart-dir",
        "Local vcluster chart directory or .tgz (vcluster CLI --local-chart-dir); "
        "needed by CLI builds without an embedded chart and offline.",
        kind="path",
        metavar="PATH",
    ),
    OptionSpec(
        "values-files",
        "Chart values file applied to every vcluster (repeatable; later files win).",
        kind="paths",
        metavar="FILE",
        former="values",
    ),
    OptionSpec(
        "versions",
        "Run every vcluster test once per Kubernetes version, e.g. 1.33,1.34 "
        "(ids k8s-1.33, k8s-1.34), or 'all': every version the version map serves.",
        kind="versions",
        metavar="LIST",
    ),
    OptionSpec(
        "version-map",
        "Image tag per Kubernetes minor, e.g. 1.33=v1.33.13,1.34=v1.34.4, or a YAML/JSON file.",
        kind="version-map",
        metavar="MAP",
    ),
    OptionSpec(
        "teardown",
        f"What to do with a vcluster after its test: {TEARDOWN_CHOICES}.",
        kind="teardown",
        default="delete",
        metavar="MODE",
    ),
    OptionSpec(
        "ready-timeout",
        "Seconds allowed from 'vcluster create' (or resume) until the vcluster is ready.",
        kind="seconds",
        default="300",
        metavar="SECONDS",
    ),
    OptionSpec(
        "delete-timeout",
        "Seconds allowed for deleting a vcluster and its namespace.",
        kind="seconds",
        default="180",
        metavar="SECONDS",
    ),
    OptionSpec(
        "lookahead",
        "How many upcoming tests of this process get their vcluster prepared in advance, "
        "while earlier tests run (0 turns it off).",
        kind="count",
        default="2",
        metavar="N",
    ),
    OptionSpec(
        "recycle",
        "After a test whose vcluster would be deleted, reset that cluster to the state it had "
        "when first Ready, prove it against an inventory, and hand it to a later test of the "
        "same spec instead of creating one; false deletes every cluster after its test.",
        kind="on-off",
        default="true",
        metavar="BOOL",
    ),
    OptionSpec(
        "reset-timeout",
        "Seconds a recycling reset may take; a reset past it deletes the cluster instead.",
        kind="seconds",
        default="30",
        metavar="SECONDS",
    ),
    OptionSpec(
        "warm-pool",
        "Keep up to N vclusters per spec running on the host when the run ends, reset and "
        "proven clean, and let later runs adopt them instead of creating clusters (0: off; "
        "a run adopts warm clusters only when this is above 0).",
        kind="count",
        default="0",
        metavar="N",
    ),
    OptionSpec(
        "parallel-creates",
        "How many vclusters one process creates at once (default: half the CPU count, at least 1).",
        kind="count",
        metavar="N",
    ),
    OptionSpec(
        "fast-start",
        "Chart values tuned for test hosts: faster start (probe periods, init CPU, no "
        "leader election, controllers acting as the admin, certificates made ahead) and a "
        "small CPU request so more clusters fit; your values override each; false uses the "
        "chart's own.",
        # A value is required: a default-on setting must be switchable off on the command line.
        kind="on-off",
        default="true",
        metavar="BOOL",
    ),
    OptionSpec(
        "seeded-store",
        "Start new clusters from a seed: the store of the first cluster of the same spec on "
        "this machine, cleaned of what belongs to that one cluster (its own certificates, "
        "leases, pods); about 3 s less per create. Only for clusters deleted after their test "
        "(an emptyDir store), with the API driver.",
        kind="on-off",
        default="false",
        metavar="BOOL",
    ),
    OptionSpec(
        "create-with",
        f"How vclusters are created: {CREATE_WITH_CHOICES} ('api' renders the chart with helm "
        "and creates the objects through the API; 'cli' runs 'vcluster create').",
        kind="create-with",
        default="api",
        metavar="HOW",
    ),
    OptionSpec(
        "state-dir",
        "Directory for machine-wide state: which processes use the kind host, who created it "
        "(default: $XDG_STATE_HOME/pytest-vcluster, else ~/.local/state/pytest-vcluster).",
        kind="output",
        metavar="PATH",
    ),
    OptionSpec(
        "reap",
        "At start, delete the vclusters that ended runs (crashed, killed) left in use on the "
        "host; a live run's clusters and clusters paused or kept on purpose are never touched.",
        kind="on-off",
        default="true",
        metavar="BOOL",
    ),
    OptionSpec(
        "reap-preserved-after",
        "When reaping, also delete clusters left paused or kept on purpose once older than "
        "this age, e.g. 12h, 7d, 90m, or seconds (default: never).",
        kind="age",
        metavar="AGE",
    ),
    OptionSpec(
        "records",
        "Write what the run did (each cluster's phases, each test's wait for its cluster, "
        "each teardown) to this JSON file.",
        kind="output",
        metavar="PATH",
    ),
    OptionSpec(
        "diagnostics-dir",
        "Directory for the diagnostics bundle of each failed test's vclusters (pod logs, YAML "
        "of failing pods, events; default: vcluster-diagnostics in the run's temp directory).",
        kind="output",
        metavar="PATH",
    ),
    OptionSpec(
        "load-images",
        "Images from the local Docker engine to load into the kind host's nodes when it is "
        "acquired, comma or line separated (repo:tag); pods use them with imagePullPolicy: "
        "Never. Images the nodes already hold (same ID) are skipped.",
        kind="images",
        metavar="LIST",
    ),
    OptionSpec("kind-binary", "Path of the kind binary (default: kind on PATH).", metavar="PATH"),
    OptionSpec(
        "cli-binary",
        "Path of the vcluster command-line tool (default: vcluster on PATH).",
        metavar="PATH",
        former="vcluster-binary",
        attribute="vcluster_binary",
    ),
    OptionSpec("helm-binary", "Path of the helm binary (default: helm on PATH).", metavar="PATH"),
)

#: The marker's help line for ``pytest --markers``. Here, not with the marker's parser: the
#: plugin registers it in every run, and parses markers only in runs that use them.
MARKER_HELP = (
    "vcluster(version=None, versions=None, values=None, values_file=None, teardown=None, "
    "timeout=None, persistent=None, manifests=None, recycle=None): choose the virtual cluster "
    "of this test: "
    "a Kubernetes version ('1.33' or 'v1.33.4') or a list of versions to run the test once per "
    "version, chart values (a dict or a YAML file), the teardown mode (delete, pause, keep, "
    "keep-on-failure, pause-on-failure), the ready timeout in seconds, whether the cluster keeps "
    "its store on a volume so that it can be paused (default: only when the teardown mode may "
    "pause), manifest files or directories applied inside it before the test starts, and "
    "recycle=False for a freshly created cluster that is deleted after the test (never reset "
    "and handed on)."
)

_OPTIONS_BY_NAME = {spec.name: spec for spec in OPTIONS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Every setting in effect for one pytest run."""

    host_name: str = "pytest-vcluster"
    node_image: str | None = None
    host_kubeconfig: Path | None = None
    host_context: str | None = None
    keep_host: bool = False
    host_timeout: float = 600.0
    chart_repo: str | None = None
    chart_version: str | None = None
    local_chart_dir: Path | None = None
    values_files: tuple[Path, ...] = ()
    versions: tuple[KubeVersion, ...] = ()
    version_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    teardown: TeardownMode = TeardownMode.DELETE
    ready_timeout: float = 300.0
    delete_timeout: float = 180.0
    lookahead: int = 2
    recycle: bool = True
    reset_timeout: float = 30.0
    warm_pool: int = 0
    parallel_creates: int = field(default_factory=default_parallel_creates)
    fast_start: bool = True
    seeded_store: bool = False
    create_with: CreateWith = CreateWith.API
    records: Path | None = None
    diagnostics_dir: Path | None = None
    settings_file: Path | None = None
    state_dir: Path | None = None
    reap: bool = True
    reap_preserved_after: float | None = None
    load_images: tuple[str, ...] = ()
    kind_binary: str | None = None
    vcluster_binary: str | None = None
    helm_binary: str | None = None

    @property
    def existing_host(self) -> bool:
        """True when the host is a cluster given by kubeconfig rather than a kind cluster."""
        return self.host_kubeconfig is not None


def parse_teardown(value: object, *, option: str = "--vcluster-teardown") -> TeardownMode:
    """Parse a teardown mode, naming the allowed ones when it is not one of them."""
    try:
        return TeardownMode(str(value).strip().lower())
    except ValueError:
        raise ConfigError(option, f"{value!r} is not a teardown mode", TEARDOWN_CHOICES) from None


def _parse_bool(text: str, option: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(option, f"{text!r} is not a boolean", "true, false, 1, 0, yes, no")


def _parse_seconds(text: str, option: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a number of seconds") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(option, f"{text!r} must be a positive finite number of seconds")
    return seconds


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    stripped = text.strip().lower()
    unit = _AGE_UNITS.get(stripped[-1:])
    number = stripped[:-1] if unit else stripped
    try:
        amount = float(number)
    except ValueError:
        raise ConfigError(option, f"{text!r} is not an age", "e.g. 3600, 90m, 12h, 7d") from None
    if amount < 0 or amount == float("inf"):
        raise ConfigError(option, f"{text!r} must be 0 or more")
    return amount * (unit or 1)


def _parse_count(text: str, option: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a whole number") from None
    if count < 0:
        raise ConfigError(option, f"{text!r} must be 0 or more")
    return count


def _parse_create_with(text: str, option: str) -> CreateWith:
    try:
        return CreateWith(text.lower())
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a way to create", CREATE_WITH_CHOICES) from None


def _parse_binary(text: str, option: str) -> str:
    # An explicit path is checked now so a typo fails the run before anything is created;
    # a bare name is looked up on PATH when the tool is first needed.
    if os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError(option, f"{text} is not an executable file")
        return str(path)
    return text


@dataclass(frozen=True)
class _Raw:
    """A raw value and where it came from, so errors can name the option as written."""

    value: str | list[str]
    where: str
    base: Path


def _is_set(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    if isinstance(value, list | tuple):
        return len(value) > 0
    return True


def _pick(
    spec: OptionSpec,
    *,
    cli: Mapping[str, object],
    ini: Mapping[str, object],
    env: Mapping[str, str],
    cli_dir: Path,
    ini_dir: Path,
    file: _SettingsFile | None = None,
) -> _Raw | None:
    cli_value = cli.get(spec.dest)
    if _is_set(cli_value):
        return _Raw(_as_text(cli_value), spec.flag, cli_dir)
    for named in (spec, spec.former_spec):
        ini_value = ini.get(named.ini) if named else None
        if named and _is_set(ini_value):
            return _Raw(_as_text(ini_value), f"ini option {named.ini}", ini_dir)
    for named in (spec, spec.former_spec):
        from_env = _from_env(named, env, cli_dir) if named else None
        if from_env is not None:
            return from_env
    if file is not None and _is_set(file.values.get(spec.name)):
        return _Raw(
            _as_text(file.values[spec.name]), f"{spec.name} in {file.path}", file.path.parent
        )
    if spec.default is not None:
        return _Raw(spec.default, spec.flag, cli_dir)
    return None


def _from_env(spec: OptionSpec, env: Mapping[str, str], cli_dir: Path) -> _Raw | None:
    env_value = env.get(spec.env)
    if env_value is None or not env_value.strip():
        return None
    if spec.kind == "paths":
        return _Raw(env_value.split(os.pathsep), f"environment variable {spec.env}", cli_dir)
    return _Raw(env_value, f"environment variable {spec.env}", cli_dir)


@dataclass(frozen=True)
class _SettingsFile:
    """The settings file's values by option name, and where it is (relative paths start there)."""

    path: Path
    values: Mapping[str, object]


def _version_map_text(value: object) -> object:
    # A mapping in the file (1.34: v1.34.4) reads better than the command line's text form.
    if isinstance(value, Mapping):
        return ",".join(f"{minor}={tag}" for minor, tag in value.items())
    return value


def load_settings_file(path: Path) -> _SettingsFile:
    """Read a settings file; unknown names and malformed files are :class:`ConfigError`."""
    import yaml  # noqa: PLC0415 - loaded only when a YAML file is read

    where = "--vcluster-settings-file"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, f"{path} is not valid YAML: {yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"{path} must hold a mapping of option names to values")
    names = {spec.name for spec in OPTIONS} - {"settings-file"}
    renamed = {spec.former: spec.name for spec in OPTIONS if spec.former}
    values: dict[str, object] = {}
    for key, value in data.items():
        name = str(key).removeprefix("--vcluster-").removeprefix("vcluster_").replace("_", "-")
        name = renamed.get(name, name)
        if name not in names:
            raise ConfigError(where, f"{path}: {key!r} is not a setting", ", ".join(sorted(names)))
        values[name] = _version_map_text(value) if name == "version-map" else value
    return _SettingsFile(path, values)


def _as_text(value: object) -> str | list[str]:
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return str(value)


def _one(raw: _Raw) -> str:
    return raw.value if isinstance(raw.value, str) else ",".join(raw.value)


#: What kind accepts as a cluster name (it names containers and a Docker network after it).
_KIND_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def _parse_kind_name(text: str, where: str) -> str:
    if not _KIND_NAME.match(text):
        raise ConfigError(
            where,
            f"{text!r} is not a kind cluster name",
            "lower-case letters, digits, '.' and '-', starting with a letter or digit",
        )
    return text


def _writable(path: Path, where: str) -> Path:
    """``path`` when it can be written later: its nearest existing folder takes writes."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(where, f"{path} cannot be written: {folder} takes no new files")
    return path


def _path(raw: _Raw, text: str, *, must_exist: bool) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = raw.base / path
    if must_exist and not path.exists():
        raise ConfigError(raw.where, f"{text} does not exist (looked for {path})")
    return path


def resolve_settings(
    cli: Mapping[str, object],
    ini: Mapping[str, object],
    env: Mapping[str, str],
    *,
    cli_dir: Path,
    ini_dir: Path,
) -> Settings:
    """Build :class:`Settings` from the three sources; raise :class:`ConfigError` when invalid.

    ``cli`` maps :attr:`OptionSpec.dest` to parsed option values (``None`` when not given),
    ``ini`` maps ini keys to their values, ``env`` is usually ``os.environ``. Relative paths
    are taken relative to ``cli_dir`` (invocation directory) or ``ini_dir`` (the ini file's).
    """
    values: dict[str, object] = {}
    versions_raw: _Raw | None = None
    file: _SettingsFile | None = None
    file_raw = _pick(
        option_spec("settings-file"), cli=cli, ini=ini, env=env, cli_dir=cli_dir, ini_dir=ini_dir
    )
    if file_raw is not None:
        file = load_settings_file(_path(file_raw, _one(file_raw).strip(), must_exist=True))
    for spec in OPTIONS:
        raw = _pick(spec, cli=cli, ini=ini, env=env, cli_dir=cli_dir, ini_dir=ini_dir, file=file)
        if raw is None:
            continue
        if spec.kind == "paths":
            items = [raw.value] if isinstance(raw.value, str) else raw.value
            files = tuple(_path(raw, item, must_exist=True) for item in items if item.strip())
            for path in files:
                # Read now: a broken file is a usage error before anything is created, not
                # an internal error when the first spec is built.
                load_values_file(path, option=raw.where)
            values["values_files"] = files
            continue
        if spec.kind == "versions":
            versions_raw = raw  # parsed below: what it may name depends on the version map
            continue
        values[spec.attr] = _parse_one(spec, raw)
    if versions_raw is not None:
        found = values.get("version_map")
        values["versions"] = _parse_versions(
            versions_raw, found if isinstance(found, Mapping) else {}
        )
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_combinations(settings)
    return settings


_PARSERS: Mapping[str, Callable[[str, _Raw], object]] = {
    "str": lambda text, raw: text,
    "output": lambda text, raw: _writable(_path(raw, text, must_exist=False), raw.where),
    "kind-name": lambda text, raw: _parse_kind_name(text, raw.where),
    "count": lambda text, raw: _parse_count(text, raw.where),
    "create-with": lambda text, raw: _parse_create_with(text, raw.where),
    "age": lambda text, raw: parse_age(text, raw.where),
    # Image references hold neither commas nor white space: either separates them.
    "images": lambda text, raw: tuple(text.replace(",", " ").split()),
    "bool": lambda text, raw: _parse_bool(text, raw.where),
    "on-off": lambda text, raw: _parse_bool(text, raw.where),
    "path": lambda text, raw: _path(raw, text, must_exist=True),
    "seconds": lambda text, raw: _parse_seconds(text, raw.where),
    "teardown": lambda text, raw: parse_teardown(text, option=raw.where),
    "version-map": lambda text, raw: MappingProxyType(parse_version_map(text, option=raw.where)),
}


def _parse_versions(raw: _Raw, version_map: Mapping[str, str]) -> tuple[KubeVersion, ...]:
    """``--vcluster-versions``: a list, or ``all`` for every served version.

    A version refused (malformed, or one vcluster cannot run) names what this environment
    serves, so the fix is one look away.
    """
    text = _one(raw).strip()
    if text == ALL_VERSIONS:
        return served_versions(version_map)
    try:
        return parse_version_list(text, option=raw.where)
    except ConfigError as exc:
        served = ", ".join(
            f"{version} ({version_map[str(version)]})" if version_map else str(version)
            for version in served_versions(version_map)
        )
        where = "the version map here" if version_map else "vcluster"
        raise ConfigError(raw.where, f"{exc.reason}; {where} serves {served}") from None


def _parse_one(spec: OptionSpec, raw: _Raw) -> object:
    """The typed value of one non-list setting."""
    text = _one(raw).strip()
    if spec.kind == "str" and spec.name.endswith("-binary"):
        return _parse_binary(text, raw.where)
    return _PARSERS[spec.kind](text, raw)


def _check_combinations(settings: Settings) -> None:
    for version in settings.versions:
        check_served(version, settings.version_map, "--vcluster-versions")
    if settings.host_context and not settings.host_kubeconfig:
        raise ConfigError(
            "--vcluster-host-context",
            "needs --vcluster-host-kubeconfig (the context is looked up in that file)",
        )
    if settings.existing_host and settings.node_image:
        raise ConfigError(
            "--vcluster-node-image",
            "only applies to a kind host; it cannot be combined with --vcluster-host-kubeconfig",
        )
    if settings.existing_host and settings.load_images:
        raise ConfigError(
            "--vcluster-load-images",
            "needs a kind host; with --vcluster-host-kubeconfig push the images to a registry "
            "that cluster can pull from instead",
        )
    if settings.parallel_creates < 1:
        raise ConfigError("--vcluster-parallel-creates", "must be 1 or more")
    if settings.local_chart_dir and (settings.chart_repo or settings.chart_version):
        raise ConfigError(
            "--vcluster-local-chart-dir",
            "cannot be combined with --vcluster-chart-repo or --vcluster-chart-version",
        )


def describe_host(settings: Settings) -> str:
    """The host these settings point at, in one line, e.g. ``kind host 'pytest-vcluster'
    (node image: kind default)`` or ``existing host, kubeconfig PATH, context NAME``."""
    if settings.host_kubeconfig is not None:
        context = settings.host_context or "(current)"
        return f"existing host, kubeconfig {settings.host_kubeconfig}, context {context}"
    image = settings.node_image or "kind default"
    keep = ", kept at exit" if settings.keep_host else ""
    images = settings.load_images
    loads = f", loads {len(images)} local image(s)" if images else ""
    return f"kind host {settings.host_name!r} (node image: {image}{keep}{loads})"


def option_spec(name: str) -> OptionSpec:
    """The :class:`OptionSpec` called ``name`` (e.g. ``"teardown"``)."""
    return _OPTIONS_BY_NAME[name]


def describe(settings: Settings, keys: Sequence[str] = ()) -> str:
    """A one-line summary of ``settings`` for the report header."""
    parts = []
    default_keys = (
        "teardown",
        "versions",
        "chart_version",
        "local_chart_dir",
        "create_with",
        "lookahead",
        "parallel_creates",
        "fast_start",
        "recycle",
    )
    for key in keys or default_keys:
        value = getattr(settings, key)
        if value in (None, (), ""):
            continue
        if isinstance(value, tuple):
            value = ",".join(str(item) for item in value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)
