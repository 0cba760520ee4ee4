"""pytest-vcluster: isolated virtual Kubernetes clusters (vclusters) as pytest fixtures.

The public API is the fixtures and the ``vcluster`` marker (see :mod:`pytest_vcluster.plugin`),
the :class:`VCluster` handle they yield, :class:`Settings` and the exceptions below.

The names load on first use: pytest imports this package in every run of an environment where
the plugin is installed, and the Kubernetes client behind the handle is too heavy to load for
runs that never ask for a vcluster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_vcluster.cluster.handle import VCluster
    from pytest_vcluster.connect.port_forward import Forward, PortForwardError
    from pytest_vcluster.core.errors import (
        ApiError,
        CommandError,
        ConfigError,
        HostError,
        ManifestError,
        RunInterruptedError,
        StartFailedError,
        ToolNotFoundError,
        VClusterError,
        WaitTimeoutError,
        WorkloadFailedError,
    )
    from pytest_vcluster.host.images import ImageLoadError, LoadResult
    from pytest_vcluster.host.kind import HostInfo
    from pytest_vcluster.settings.config import Settings, TeardownMode
    from pytest_vcluster.settings.versions import KubeVersion

#: Where each public name lives.
_EXPORTS = {
    "ApiError": "pytest_vcluster.core.errors",
    "CommandError": "pytest_vcluster.core.errors",
    "ConfigError": "pytest_vcluster.core.errors",
    "Forward": "pytest_vcluster.connect.port_forward",
    "HostError": "pytest_vcluster.core.errors",
    "HostInfo": "pytest_vcluster.host.kind",
    "ImageLoadError": "pytest_vcluster.host.images",
    "KubeVersion": "pytest_vcluster.settings.versions",
    "ManifestError": "pytest_vcluster.core.errors",
    "LoadResult": "pytest_vcluster.host.images",
    "PortForwardError": "pytest_vcluster.connect.port_forward",
    "RunInterruptedError": "pytest_vcluster.core.errors",
    "Settings": "pytest_vcluster.settings.config",
    "StartFailedError": "pytest_vcluster.core.errors",
    "TeardownMode": "pytest_vcluster.settings.config",
    "ToolNotFoundError": "pytest_vcluster.core.errors",
    "VCluster": "pytest_vcluster.cluster.handle",
    "VClusterError": "pytest_vcluster.core.errors",
    "WaitTimeoutError": "pytest_vcluster.core.errors",
    "WorkloadFailedError": "pytest_vcluster.core.errors",
}

__all__ = [
    "ApiError",
    "CommandError",
    "ConfigError",
    "Forward",
    "HostError",
    "HostInfo",
    "ImageLoadError",
    "KubeVersion",
    "LoadResult",
    "ManifestError",
    "PortForwardError",
    "RunInterruptedError",
    "Settings",
    "StartFailedError",
    "TeardownMode",
    "ToolNotFoundError",
    "VCluster",
    "VClusterError",
    "WaitTimeoutError",
    "WorkloadFailedError",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - any public name of the package
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_vcluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
