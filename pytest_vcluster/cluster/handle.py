"""The handle a vcluster fixture yields: identity, version, kubeconfig and a private client."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from pytest_vcluster.connect import port_forward as portforward
from pytest_vcluster.connect.port_forward import Forward
from pytest_vcluster.settings.versions import KubeVersion

__all__ = ["VCluster"]


@dataclass(eq=False)
class VCluster:
    """A ready virtual cluster.

    Attributes:
        name: the vcluster (Helm release) name.
        namespace: the host namespace it runs in (one vcluster per namespace).
        version: the server's Kubernetes version as ``/version`` reports it (``v1.33.4``).
        requested_version: the version asked for by marker or option, if any.
        kubeconfig: a kubeconfig file (mode 0600, in a private directory) whose server is
            ``https://127.0.0.1:<port>``, usable with kubectl or helm while the fixture lives.
        api_client: a Kubernetes client configured for this vcluster only (never the global
            default configuration).
        spec_hash: hash of the version and chart values, kept as a namespace label.
        reused: True when a paused vcluster was resumed instead of created.
        persistent: True when its store is on a volume claim (it can be paused).
        ready_seconds: seconds from create (or resume) until it was ready.
        phases: when each readiness phase completed, in seconds from the start.
    """

    name: str
    namespace: str
    version: str
    requested_version: KubeVersion | None
    kubeconfig: Path
    api_client: client.ApiClient
    spec_hash: str
    reused: bool = False
    persistent: bool = True
    ready_seconds: float = 0.0
    phases: tuple[tuple[str, float], ...] = ()
    _pause: Callable[[], None] | None = field(default=None, repr=False)
    _resume: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        """The API server URL in :attr:`kubeconfig` and :attr:`api_client`."""
        return str(self.api_client.configuration.host)

    def core_v1(self) -> client.CoreV1Api:
        """A ``CoreV1Api`` on :attr:`api_client`."""
        return client.CoreV1Api(self.api_client)

    def pause(self) -> None:
        """Pause the vcluster (``vcluster pause``): its control plane scales to zero."""
        if self._pause is None:
            raise RuntimeError(f"vcluster {self.name} cannot be paused from this handle")
        self._pause()

    def resume(self) -> None:
        """Resume a paused vcluster and wait until it is ready again."""
        if self._resume is None:
            raise RuntimeError(f"vcluster {self.name} cannot be resumed from this handle")
        self._resume()

    def port_forward(
        self,
        target: str,
        port: int | str,
        *,
        namespace: str = "default",
        timeout: float = 60.0,
    ) -> AbstractContextManager[Forward]:
        """Forward a free port of 127.0.0.1 to a pod, service or deployment of this vcluster.

        ``target`` is ``pod/NAME``, ``svc/NAME`` or ``deployment/NAME`` in ``namespace``;
        ``port`` is the service port for a service (mapped to its ``targetPort`` as kubectl
        does), else the pod port; a name instead of a number is a service or container port
        name. Waits up to ``timeout`` seconds for a Ready pod, then yields a
        :class:`~pytest_vcluster.connect.port_forward.Forward` whose ``str()`` is
        ``127.0.0.1:PORT``::

            with vcluster.port_forward("svc/web", 80) as web:
                urllib.request.urlopen(web.url("/"))
        """
        return portforward.port_forward(
            self._new_api_client,
            target,
            port,
            namespace=namespace,
            timeout=timeout,
            cluster=self.name,
        )

    def _new_api_client(self) -> client.ApiClient:
        # Every forward needs a client of its own (see PodPortForwarder). A copy of this
        # client's configuration points at the same certificate files in the private
        # directory; loading the kubeconfig again would write its key to new temporary files.
        return client.ApiClient(copy.deepcopy(self.api_client.configuration))
