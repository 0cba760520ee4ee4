"""pytest-vcluster: isolated virtual Kubernetes clusters (vclusters) as pytest fixtures.

The public API is the fixtures and the ``vcluster`` marker (see :mod:`pytest_vcluster.plugin`),
the :class:`VCluster` handle they yield, :class:`Settings` and the exceptions below.
"""

from __future__ import annotations

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.connect.port_forward import Forward, PortForwardError
from pytest_vcluster.core.errors import (
    ApiError,
    CommandError,
    ConfigError,
    HostError,
    RunInterruptedError,
    StartFailedError,
    ToolNotFoundError,
    VClusterError,
    WaitTimeoutError,
)
from pytest_vcluster.host.images import ImageLoadError, LoadResult
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.versions import KubeVersion

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
    "PortForwardError",
    "RunInterruptedError",
    "Settings",
    "StartFailedError",
    "TeardownMode",
    "ToolNotFoundError",
    "VCluster",
    "VClusterError",
    "WaitTimeoutError",
]
