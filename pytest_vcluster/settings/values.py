"""Chart values: the layers every vcluster's values are merged from, and the spec hash.

Layers, in rising precedence: :data:`BASE_VALUES`, the fast-start layer (when enabled), the
ephemeral layer (for clusters that are never paused), ``--vcluster-values`` files, the marker's
file and dict, then the version. Every speed lever lives in a layer below the user's values, so
a values file or marker can set any of them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.core.labels import short_hash
from pytest_vcluster.settings.versions import version_values

__all__ = [
    "BASE_VALUES",
    "EPHEMERAL_VALUES",
    "FAST_START_VALUES",
    "build_values",
    "deep_merge",
    "layer_values",
    "load_values_file",
    "spec_hash",
    "user_layers",
]

#: Values every vcluster gets before the user's: the plugin never sends telemetry.
BASE_VALUES: Mapping[str, Any] = {"telemetry": {"enabled": False}}

#: Start-up levers measured on a 2-core host (see docs/speed.md):
#: - probes every second instead of every 6 s: the control plane's host Service only routes
#:   to a Ready pod, and the virtual CoreDNS reaches the API through that Service, so the
#:   startup probe period gates DNS; the failure thresholds keep the chart's total budgets;
#: - the init container copies ~300 MB of binaries; at the chart's 100m CPU limit that is
#:   throttled for seconds;
#: - one controller-manager per cluster needs no leader election, and with it a resumed
#:   cluster waits for the lease its previous pod held to expire (15 s);
#: - the controller-manager's controllers act as the cluster's admin instead of a
#:   ServiceAccount each: with one account per controller it makes ~40 accounts and their
#:   tokens one after another before any informer starts (4-5 s of a 15 s create); what
#:   differs is the user an admission webhook sees on controller requests, and the missing
#:   per-controller accounts in kube-system (docs/speed.md);
#: - the chart requests 200m CPU per control plane, so a 2-core host schedules only five next
#:   to its own system pods although idle control planes use a few millicores: a small
#:   request lets the host hold as many as its memory allows.
#: The controller-manager's flags in the fast-start layer (vcluster's own flags of the same name
#: are replaced). ``/data/pki/admin.conf`` is the admin kubeconfig vcluster writes for itself.
CONTROLLER_MANAGER_ARGS: tuple[str, ...] = (
    "--leader-elect=false",
    "--use-service-account-credentials=false",
    "--kubeconfig=/data/pki/admin.conf",
)

FAST_START_VALUES: Mapping[str, Any] = {
    "controlPlane": {
        "statefulSet": {
            "resources": {"requests": {"cpu": "20m"}},
            "probes": {
                "startupProbe": {"periodSeconds": 1, "failureThreshold": 1800},
                "readinessProbe": {"periodSeconds": 1, "failureThreshold": 120},
                "livenessProbe": {"initialDelaySeconds": 60, "periodSeconds": 2},
            },
        },
        "distro": {
            "k8s": {
                "resources": {"limits": {"cpu": "1", "memory": "256Mi"}},
                "controllerManager": {"extraArgs": list(CONTROLLER_MANAGER_ARGS)},
            },
        },
    },
}

#: For clusters deleted after their test: an emptyDir instead of a PersistentVolumeClaim
#: saves provisioning the volume (about 3 s); pausing such a cluster would lose its state,
#: so teardown modes that may pause never get this layer.
EPHEMERAL_VALUES: Mapping[str, Any] = {
    "controlPlane": {"statefulSet": {"persistence": {"volumeClaim": {"enabled": False}}}},
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge mappings recursively; ``override`` wins, lists are replaced as Helm does."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: ``line 2, column 1: expected ...``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def load_values_file(path: Path, *, option: str) -> dict[str, Any]:
    """Read a chart values file; an empty file is an empty mapping."""
    import yaml  # noqa: PLC0415 - loaded only when a YAML file is read

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(option, f"cannot read values file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            option, f"values file {path} is not valid YAML: {yaml_problem(exc)}"
        ) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(option, f"values file {path} must hold a mapping")
    return loaded


def user_layers(
    *,
    values_files: tuple[Path, ...] = (),
    values_file: Path | None = None,
    values: Mapping[str, Any] | None = None,
) -> list[Mapping[str, Any]]:
    """The user's layers in rising precedence, files read once: ``--vcluster-values`` files,
    the marker's file, the marker's (or factory's) dict."""
    layers: list[Mapping[str, Any]] = [
        load_values_file(path, option="--vcluster-values") for path in values_files
    ]
    if values_file is not None:
        layers.append(load_values_file(values_file, option="vcluster(values_file)"))
    if values:
        layers.append(values)
    return layers


def layer_values(
    user: list[Mapping[str, Any]],
    *,
    tag: str | None = None,
    fast_start: bool = True,
    ephemeral: bool = False,
) -> dict[str, Any]:
    """Merge the plugin's layers, the ``user`` layers and the version into the chart values."""
    merged = deep_merge({}, BASE_VALUES)
    if fast_start:
        merged = deep_merge(merged, FAST_START_VALUES)
    if ephemeral:
        merged = deep_merge(merged, EPHEMERAL_VALUES)
    for layer in user:
        merged = deep_merge(merged, layer)
    if tag is not None:
        merged = deep_merge(merged, version_values(tag))
    # Telemetry stays off even if a values file turned it on.
    return deep_merge(merged, BASE_VALUES)


def build_values(
    *,
    values_files: tuple[Path, ...] = (),
    tag: str | None = None,
    values_file: Path | None = None,
    values: Mapping[str, Any] | None = None,
    fast_start: bool = True,
    ephemeral: bool = False,
) -> dict[str, Any]:
    """Merge the layers (see the module docstring) into the final chart values."""
    user = user_layers(values_files=values_files, values_file=values_file, values=values)
    return layer_values(user, tag=tag, fast_start=fast_start, ephemeral=ephemeral)


def value_at(values: Mapping[str, Any], *path: str) -> object:
    """The value at ``path`` in chart ``values``, or ``None`` where the path ends early."""
    node: Any = values
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def spec_hash(values: Mapping[str, Any], chart: Mapping[str, str | None]) -> str:
    """Hash of what makes two vclusters interchangeable: values and chart."""
    text = json.dumps({"values": values, "chart": chart}, sort_keys=True, default=str)
    return short_hash(text, 16)
