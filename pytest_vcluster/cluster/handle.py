"""The handle a vcluster fixture yields: identity, version, kubeconfig and a private client.

Besides those, it has the helpers tests would otherwise write by hand: :meth:`VCluster.apply`
(manifests), :meth:`VCluster.wait_for` (rolled out, Ready, Complete, gone),
:meth:`VCluster.logs`, :meth:`VCluster.kubectl`, :meth:`VCluster.helm` and
:meth:`VCluster.helm_install`, and :meth:`VCluster.env` for a subprocess of the test's own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from pytest_vcluster.cluster import conditions, manifests
from pytest_vcluster.cluster.recycling import Baseline
from pytest_vcluster.cluster.tools import Arg, ClusterTools
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
        helm_binary: the helm that :meth:`helm` and :meth:`helm_install` run (a path, or a
            name on PATH; None: ``helm`` on PATH). The plugin sets ``--vcluster-helm-binary``.
        kubectl_binary: the kubectl that :meth:`kubectl` runs (None: ``kubectl`` on PATH).
        recycled: True when this cluster served an earlier test and was reset to the state it
            had when first Ready, and the reset was proven, before this test got it.
        tests_before: how many tests used this cluster before the current one (0: fresh).
        warm: True when an earlier run (or another worker) parked this cluster warm and it
            was adopted for the current test (``--vcluster-warm-pool``); it is then also
            ``recycled``. Recycled again within the run for a later test, it is not ``warm``.
        seeded: True when the control plane started from a seed, the cleaned store of an
            earlier cluster of the same spec (``--vcluster-seeded-store``).
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
    helm_binary: str | None = None
    kubectl_binary: str | None = None
    recycled: bool = False
    tests_before: int = 0
    warm: bool = False
    seeded: bool = False
    #: The inventory of the cluster when it first became Ready (None: it is never recycled).
    _baseline: Baseline | None = field(default=None, repr=False)
    #: Set once the cluster was paused: its control plane restarted, so it is never recycled.
    _was_paused: bool = field(default=False, repr=False)
    _pause: Callable[[], None] | None = field(default=None, repr=False)
    _resume: Callable[[], None] | None = field(default=None, repr=False)
    _tools: ClusterTools | None = field(default=None, repr=False)

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

    # -- inside the cluster ------------------------------------------------------------------

    def apply(
        self,
        source: manifests.ManifestSource,
        *,
        namespace: str | None = None,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Server-side apply manifests; return the objects as the API answered, in order.

        ``source`` is a file, a directory (its ``.yaml``, ``.yml`` and ``.json`` files by
        name, not its subdirectories), YAML text with one or more documents, a dict, or a
        list of these. CustomResourceDefinitions are applied first and waited for until
        Established, Namespaces next, then the rest in order. A namespaced object without a
        namespace goes to ``namespace`` (default ``"default"``). An object this method
        returned can be changed and applied again. A refused object raises
        :class:`~pytest_vcluster.core.errors.ManifestError` naming its file, document, kind
        and name, with the API's message::

            web, service = vcluster.apply(Path(__file__).parent / "web.yaml")
            vcluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "settings"}, "data": {"mode": "test"}})
        """
        return manifests.apply_manifests(
            self.api_client, source, namespace=namespace, timeout=timeout
        )

    def wait_for(
        self,
        kind_or_obj: str | Mapping[str, Any],
        name: str | None = None,
        *,
        namespace: str = "default",
        condition: str | None = None,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Wait until an object is ready (or has ``condition``, or is gone); return it.

        ``kind_or_obj`` is a kind as kubectl takes it (``"deployment"``, ``"deploy"``,
        ``"job"``, ``"crd"``, ``"widgets.example.com"``) with ``name``, ``"KIND/NAME"``, or
        an object as :meth:`apply` returns it. Without ``condition`` a Deployment,
        StatefulSet, DaemonSet or ReplicaSet waits until rolled out, a Pod until Ready, a
        Job until Complete, a CRD until Established, a Namespace until Active; other kinds
        need ``condition``: a type of ``status.conditions`` (``"Ready"``, ``"Ready=False"``),
        ``"exists"`` or ``"deleted"``. A pod that cannot start (image not pullable, crash
        loop, unschedulable) or a failed Job raises
        :class:`~pytest_vcluster.core.errors.WorkloadFailedError` at once::

            deployment, service = vcluster.apply("deploy/web.yaml")
            vcluster.wait_for(deployment)
            vcluster.wait_for("job", "migrate", timeout=300)
            vcluster.wait_for("pod/web-0", condition="deleted")
        """
        return conditions.wait_for(
            self.api_client,
            kind_or_obj,
            name,
            namespace=namespace,
            condition=condition,
            timeout=timeout,
        )

    def logs(
        self,
        target: str | Mapping[str, Any],
        *,
        namespace: str = "default",
        container: str | None = None,
        tail: int | None = None,
        previous: bool = False,
    ) -> str:
        """The log of a pod, or of one pod of a workload (a Ready one first, as kubectl).

        ``target`` is ``"NAME"`` or ``"pod/NAME"``, ``"deployment/NAME"``, ``"job/NAME"``,
        ``"statefulset/NAME"`` (any kind with a selector), or an object as :meth:`apply`
        returns it. ``previous`` reads the last run of a restarted container::

            assert "listening" in vcluster.logs("deployment/web", tail=50)
        """
        return conditions.logs(
            self.api_client,
            target,
            namespace=namespace,
            container=container,
            tail=tail,
            previous=previous,
        )

    @property
    def tools(self) -> ClusterTools:
        """kubectl and helm bound to :attr:`kubeconfig` (see :meth:`kubectl`, :meth:`helm`)."""
        if self._tools is None:
            self._tools = ClusterTools(
                self.kubeconfig, helm_binary=self.helm_binary, kubectl_binary=self.kubectl_binary
            )
        return self._tools

    def kubectl(self, *args: Arg, input: str | None = None, timeout: float = 60.0) -> str:
        """Run ``kubectl --kubeconfig=<this cluster> ARGS...``; return its stdout.

        ``input`` goes to its stdin. A non-zero exit raises
        :class:`~pytest_vcluster.core.errors.CommandError` with its stderr; kubectl missing
        from PATH raises :class:`~pytest_vcluster.core.errors.ToolNotFoundError`::

            vcluster.kubectl("apply", "-f", "-", input=manifest_text)
            names = vcluster.kubectl("get", "pods", "-o", "name").split()
        """
        return self.tools.kubectl(*args, input=input, timeout=timeout)

    def helm(self, *args: Arg, timeout: float = 300.0) -> str:
        """Run ``helm --kubeconfig=<this cluster> ARGS...``; return its stdout::

        releases = json.loads(vcluster.helm("list", "-A", "-o", "json"))
        """
        return self.tools.helm(*args, timeout=timeout)

    def helm_install(
        self,
        chart: Arg,
        *,
        release: str | None = None,
        namespace: str = "default",
        values: Mapping[str, Any] | Arg | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> str:
        """``helm install`` a chart (a local directory or ``.tgz``); return the release name.

        ``release`` defaults to the chart's name. ``values`` is a mapping (written to a
        private temporary file) or a values file. The namespace is created if needed. With
        ``wait``, helm waits up to ``timeout`` seconds for the release's resources::

            release = vcluster.helm_install(CHARTS / "hello", values={"replicaCount": 2})
            vcluster.wait_for("deployment", release)
        """
        return self.tools.helm_install(
            chart, release=release, namespace=namespace, values=values, wait=wait, timeout=timeout
        )

    def env(self) -> dict[str, str]:
        """A copy of ``os.environ`` with ``KUBECONFIG`` set to :attr:`kubeconfig`, for a
        subprocess of the test's own::

            subprocess.run(["./deploy.sh"], env=vcluster.env(), check=True, timeout=120)
        """
        return self.tools.env()
