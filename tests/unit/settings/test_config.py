"""Settings resolution (command line > ini > environment > default) and validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.settings.config import (
    OPTIONS,
    Settings,
    TeardownMode,
    describe,
    option_spec,
    parse_teardown,
    resolve_settings,
)
from pytest_vcluster.settings.versions import KubeVersion


def resolve(
    tmp_path: Path,
    cli: dict[str, object] | None = None,
    ini: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    return resolve_settings(
        cli or {}, ini or {}, env or {}, cli_dir=tmp_path / "cwd", ini_dir=tmp_path / "ini"
    )


def test_defaults(tmp_path: Path) -> None:
    settings = resolve(tmp_path)
    assert settings == Settings()
    assert settings.host_name == "pytest-vcluster"
    assert settings.teardown is TeardownMode.DELETE
    assert settings.keep_host is False
    assert not settings.existing_host
    assert settings.versions == ()


def test_names_of_an_option() -> None:
    spec = option_spec("host-name")
    assert (spec.flag, spec.dest, spec.ini, spec.env) == (
        "--vcluster-host-name",
        "vcluster_host_name",
        "vcluster_host_name",
        "PYTEST_VCLUSTER_HOST_NAME",
    )


def test_every_option_maps_to_a_settings_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    for spec in OPTIONS:
        assert spec.attr in fields, spec.name


@pytest.mark.parametrize(
    ("cli", "ini", "env", "expected"),
    [
        ("from-cli", "from-ini", "from-env", "from-cli"),
        (None, "from-ini", "from-env", "from-ini"),
        (None, "", "from-env", "from-env"),
        (None, "", "", "pytest-vcluster"),
    ],
)
def test_precedence(tmp_path: Path, cli: str | None, ini: str, env: str, expected: str) -> None:
    settings = resolve(
        tmp_path,
        cli={"vcluster_host_name": cli},
        ini={"vcluster_host_name": ini},
        env={"PYTEST_VCLUSTER_HOST_NAME": env},
    )
    assert settings.host_name == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("YES", True), ("1", True), ("off", False)]
)
def test_bool(tmp_path: Path, text: str, expected: bool) -> None:
    assert resolve(tmp_path, ini={"vcluster_keep_host": text}).keep_host is expected
    assert resolve(tmp_path, env={"PYTEST_VCLUSTER_KEEP_HOST": text}).keep_host is expected


def test_bad_bool_names_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"ini option vcluster_keep_host: 'maybe' is not a boolean"
    ):
        resolve(tmp_path, ini={"vcluster_keep_host": "maybe"})


def test_bad_teardown_names_option_and_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(tmp_path, env={"PYTEST_VCLUSTER_TEARDOWN": "destroy"})
    message = str(info.value)
    assert "environment variable PYTEST_VCLUSTER_TEARDOWN" in message
    assert "delete, pause, keep, keep-on-failure, pause-on-failure" in message
    assert info.value.option == "environment variable PYTEST_VCLUSTER_TEARDOWN"


@pytest.mark.parametrize("mode", list(TeardownMode))
def test_every_teardown_mode_parses(mode: TeardownMode) -> None:
    assert parse_teardown(mode.value.upper()) is mode


@pytest.mark.parametrize("text", ["0", "-5", "abc", "inf", "nan"])
def test_bad_timeouts(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="--vcluster-ready-timeout"):
        resolve(tmp_path, cli={"vcluster_ready_timeout": text})


def test_timeouts(tmp_path: Path) -> None:
    settings = resolve(
        tmp_path, cli={"vcluster_ready_timeout": "90", "vcluster_delete_timeout": "2.5"}
    )
    assert (settings.ready_timeout, settings.delete_timeout) == (90.0, 2.5)


def test_versions_and_map(tmp_path: Path) -> None:
    settings = resolve(
        tmp_path,
        cli={"vcluster_versions": "1.33, v1.34.2"},
        ini={"vcluster_version_map": "1.33=v1.33.13"},
    )
    assert settings.versions == (KubeVersion(1, 33), KubeVersion(1, 34, 2))
    assert dict(settings.version_map) == {"1.33": "v1.33.13"}


def test_bad_versions_name_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--vcluster-versions: Kubernetes 1.20 is not supported"):
        resolve(tmp_path, cli={"vcluster_versions": "1.20"})


def test_values_files_relative_to_their_source(tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "ini").mkdir()
    (tmp_path / "cwd" / "a.yaml").write_text("a: 1\n")
    (tmp_path / "ini" / "b.yaml").write_text("b: 1\n")
    from_cli = resolve(
        tmp_path,
        cli={"vcluster_values_files": ["a.yaml"]},
        ini={"vcluster_values_files": ["b.yaml"]},
    )
    assert from_cli.values_files == (tmp_path / "cwd" / "a.yaml",)
    from_ini = resolve(tmp_path, ini={"vcluster_values_files": ["b.yaml"]})
    assert from_ini.values_files == (tmp_path / "ini" / "b.yaml",)


def test_values_files_from_env_use_pathsep(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("{}")
    b.write_text("{}")
    settings = resolve(tmp_path, env={"PYTEST_VCLUSTER_VALUES_FILES": f"{a}{os.pathsep}{b}"})
    assert settings.values_files == (a, b)


def test_missing_values_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--vcluster-values-files: nope.yaml does not exist"):
        resolve(tmp_path, cli={"vcluster_values_files": ["nope.yaml"]})


def test_existing_host(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    settings = resolve(
        tmp_path,
        cli={"vcluster_host_kubeconfig": str(kubeconfig), "vcluster_host_context": "ctx"},
    )
    assert settings.existing_host
    assert (settings.host_kubeconfig, settings.host_context) == (kubeconfig, "ctx")


def test_context_needs_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="--vcluster-host-context: needs --vcluster-host-kubeconfig"
    ):
        resolve(tmp_path, cli={"vcluster_host_context": "ctx"})


def test_node_image_only_for_kind(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    with pytest.raises(ConfigError, match="--vcluster-node-image"):
        resolve(
            tmp_path,
            cli={"vcluster_host_kubeconfig": str(kubeconfig), "vcluster_node_image": "img:1"},
        )


def test_local_chart_excludes_chart_version(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    with pytest.raises(ConfigError, match="--vcluster-local-chart-dir: cannot be combined"):
        resolve(
            tmp_path,
            cli={"vcluster_local_chart_dir": str(chart), "vcluster_chart_version": "0.36.1"},
        )


def test_binary_path_must_be_executable(tmp_path: Path) -> None:
    not_exec = tmp_path / "kind"
    not_exec.write_text("")
    with pytest.raises(ConfigError, match=r"--vcluster-kind-binary: .* is not an executable file"):
        resolve(tmp_path, cli={"vcluster_kind_binary": str(not_exec)})
    with pytest.raises(ConfigError, match="--vcluster-helm-binary"):
        resolve(tmp_path, cli={"vcluster_helm_binary": "/nonexistent/helm"})


def test_binary_name_is_looked_up_later(tmp_path: Path) -> None:
    assert resolve(tmp_path, cli={"vcluster_kind_binary": "kind-0.32"}).kind_binary == "kind-0.32"


def test_describe(tmp_path: Path) -> None:
    settings = resolve(
        tmp_path, cli={"vcluster_versions": "1.33,1.34", "vcluster_teardown": "pause"}
    )
    assert describe(settings).startswith(
        "teardown=pause, versions=1.33,1.34, create_with=api, lookahead=2, parallel_creates="
    )
    assert describe(settings).endswith("fast_start=True, recycle=True")


def test_fast_start_can_be_switched_off_from_the_command_line(tmp_path: Path) -> None:
    assert resolve(tmp_path).fast_start is True
    assert resolve(tmp_path, cli={"vcluster_fast_start": "false"}).fast_start is False
    with pytest.raises(ConfigError, match="--vcluster-fast-start: 'maybe' is not a boolean"):
        resolve(tmp_path, cli={"vcluster_fast_start": "maybe"})


def test_settings_file_sits_below_the_environment(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("{}\n")
    chart = tmp_path / "chart"
    chart.mkdir()
    settings_file = tmp_path / "stack.yaml"
    settings_file.write_text(
        "node-image: node:from-file\n"
        "local-chart-dir: chart\n"  # relative to the file
        "values: [values.yaml]\n"
        "version-map: {'1.34': v1.34.4}\n"
        "vcluster_teardown: keep\n"  # ini spelling works too
    )
    settings = resolve(
        tmp_path,
        env={
            "PYTEST_VCLUSTER_SETTINGS_FILE": str(settings_file),
            "PYTEST_VCLUSTER_TEARDOWN": "pause",
        },
    )
    assert settings.node_image == "node:from-file"
    assert settings.local_chart_dir == chart
    assert settings.values_files == (tmp_path / "values.yaml",)
    assert settings.version_map == {"1.34": "v1.34.4"}
    assert settings.teardown is TeardownMode.PAUSE  # the environment wins over the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node-imag: x\n", r"'node-imag' is not a setting \(allowed: .*node-image"),
        ("- a\n", "must hold a mapping of option names to values"),
        ("teardown: later\n", r"teardown in .*: 'later' is not a teardown mode"),
    ],
)
def test_bad_settings_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve(tmp_path, env={"PYTEST_VCLUSTER_SETTINGS_FILE": str(settings_file)})


@pytest.mark.parametrize("name", ["Bad_Name!", "UPPER", "-dash-first", "with space"])
def test_a_host_name_kind_would_refuse_is_a_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"--vcluster-host-name: .* is not a kind cluster name"):
        resolve(tmp_path, cli={"vcluster_host_name": name})
    assert resolve(tmp_path, cli={"vcluster_host_name": "ci-1.two"}).host_name == "ci-1.two"


def test_a_broken_settings_file_says_where_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "settings.yaml"
    broken.write_text("host-name: [\n")
    with pytest.raises(ConfigError) as raised:
        resolve(tmp_path, cli={"vcluster_settings_file": str(broken)})
    message = str(raised.value)
    assert "is not valid YAML: line 2, column 1:" in message
    assert "\n" not in message


def test_an_output_file_in_a_folder_that_takes_no_files_is_a_config_error(
    tmp_path: Path,
) -> None:
    plain_file = tmp_path / "a-file"
    plain_file.write_text("")
    with pytest.raises(ConfigError, match=r"--vcluster-records: .* cannot be written"):
        resolve(tmp_path, cli={"vcluster_records": str(plain_file / "records.json")})
    deep = tmp_path / "new" / "folders" / "records.json"
    assert resolve(tmp_path, cli={"vcluster_records": str(deep)}).records == deep


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        (
            "1.29",
            r"1.29 is not supported by vcluster .*; the version map here serves "
            r"1.33 \(v1.33.13\), 1.36 \(v1.36.3\)",
        ),
        (
            "1.30",
            r"1.30 is not served here: the version map serves 1.33 \(v1.33.13\), 1.36 \(v1.36.3\)",
        ),
    ],
)
def test_a_version_not_served_names_the_served_ones(
    tmp_path: Path, versions: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"--vcluster-versions: .*{message}"):
        resolve(
            tmp_path,
            cli={
                "vcluster_versions": versions,
                "vcluster_version_map": "1.33=v1.33.13,1.36=v1.36.3",
            },
        )


def test_all_versions_are_the_served_ones(tmp_path: Path) -> None:
    mapped = resolve(
        tmp_path,
        cli={"vcluster_versions": "all", "vcluster_version_map": "1.36=v1.36.3,1.33=v1.33.13"},
    )
    assert mapped.versions == (KubeVersion(1, 33), KubeVersion(1, 36))
    unmapped = resolve(tmp_path, cli={"vcluster_versions": "all"})
    assert [str(v) for v in unmapped.versions] == [f"1.{m}" for m in range(30, 37)]
    exact = resolve(
        tmp_path, cli={"vcluster_versions": "v1.35.1", "vcluster_version_map": "1.33=v1.33.13"}
    )
    assert exact.versions == (KubeVersion(1, 35, 1),)  # an exact release names its own image


def test_recycling_is_on_by_default_and_its_budget_is_seconds(tmp_path: Path) -> None:
    assert (resolve(tmp_path).recycle, resolve(tmp_path).reset_timeout) == (True, 30.0)
    off = resolve(tmp_path, cli={"vcluster_recycle": "false", "vcluster_reset_timeout": "5"})
    assert (off.recycle, off.reset_timeout) == (False, 5.0)
    with pytest.raises(ConfigError, match="--vcluster-reset-timeout"):
        resolve(tmp_path, cli={"vcluster_reset_timeout": "-1"})
