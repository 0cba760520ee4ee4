"""``VCluster.port_forward``: a local port on 127.0.0.1 to a pod, service or deployment inside.

Like ``kubectl port-forward TYPE/NAME PORT``, the target is resolved inside the virtual cluster
to the pods that back it: ``pod/NAME`` is that one pod; ``deployment/NAME`` is any pod its
``spec.selector`` matches; ``svc/NAME`` is any pod its ``spec.selector`` matches, and the
service port is mapped to the pod port through ``targetPort`` (a number, or the name of a
container port looked up in the pod). The forward itself is the plugin's
:class:`~pytest_vcluster.connect.tunnel.PodPortForwarder` on a client of the vcluster
(vcluster proxies ``pods/portforward`` to the pod on the host), so it picks a pod per
connection and follows a replaced pod.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.connect.tunnel import PodPortForwarder
from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import ConfigError, VClusterError, WaitTimeoutError, api_error
from pytest_vcluster.core.pods import describe_pods, pod_ready
from pytest_vcluster.core.waits import Deadline, wait_until

__all__ = [
    "KINDS",
    "Backend",
    "Forward",
    "PortForwardError",
    "Target",
    "check_port",
    "container_port",
    "label_selector",
    "parse_target",
    "port_forward",
    "resolve",
    "service_target_port",
    "wait_for_ready_pod",
]

_T = TypeVar("_T")
#: The spellings kubectl accepts for the kinds that can be forwarded to, and the kind each means.
KINDS: Mapping[str, str] = {
    "pod": "pod",
    "pods": "pod",
    "po": "pod",
    "service": "service",
    "services": "service",
    "svc": "service",
    "deployment": "deployment",
    "deployments": "deployment",
    "deploy": "deployment",
}
_ALLOWED_TARGETS = "pod/NAME, svc/NAME (service/NAME), deployment/NAME (deploy/NAME)"


class PortForwardError(VClusterError):
    """The target of a port forward cannot be resolved to pods and a pod port."""


@dataclass(frozen=True)
class Forward:
    """A running forward: connect to ``host:port`` to reach the target's pod port.

    ``str(forward)`` is ``127.0.0.1:PORT``.
    """

    host: str
    port: int
    target: str
    namespace: str
    pod_port: int

    @property
    def address(self) -> str:
        """``host:port``, e.g. ``127.0.0.1:40123``."""
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/", scheme: str = "http") -> str:
        """A URL on the forward: ``url("/healthz")`` is ``http://127.0.0.1:PORT/healthz``."""
        return f"{scheme}://{self.address}/{path.lstrip('/')}"

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True)
class Target:
    """A parsed ``TYPE/NAME``: ``kind`` is ``pod``, ``service`` or ``deployment``."""

    kind: str
    name: str
    text: str


@dataclass(frozen=True)
class Backend:
    """Where a target's connections go: the pods and the port on them.

    Exactly one of ``selector`` (a running pod it matches, Ready ones first, chosen again for
    each connection) and ``pod`` (that pod only) is set. ``port`` is a number, or a container
    port name to look up.
    """

    what: str
    selector: str | None
    pod: str | None
    port: int | str


def parse_target(target: object) -> Target:
    """``svc/web`` as ``Target("service", "web")``; raise :class:`ConfigError` on anything else."""
    option = "port_forward(target=...)"
    if not isinstance(target, str):
        raise ConfigError(option, f"{target!r} is not a string", _ALLOWED_TARGETS)
    kind, slash, name = target.partition("/")
    if not slash or not name or "/" in name:
        raise ConfigError(option, f"{target!r} is not TYPE/NAME", _ALLOWED_TARGETS)
    canonical = KINDS.get(kind.lower())
    if canonical is None:
        raise ConfigError(option, f"{target!r}: cannot forward to a {kind!r}", _ALLOWED_TARGETS)
    return Target(canonical, name, target)


def check_port(port: object) -> int | str:
    """A port number (1-65535) or port name; raise :class:`ConfigError` otherwise."""
    option = "port_forward(port=...)"
    allowed = "a port number 1-65535, or the name of a service or container port"
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise ConfigError(option, f"{port!r} is not a port", allowed)
    if isinstance(port, int) and not 0 < port < 65536:
        raise ConfigError(option, f"{port} is out of range", allowed)
    if isinstance(port, str) and not port:
        raise ConfigError(option, "the port name is empty", allowed)
    return port


def label_selector(selector: client.V1LabelSelector | None) -> str:
    """A ``V1LabelSelector`` in the string form of ``label_selector=`` (``""`` if empty)."""
    if selector is None:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        operator = expression.operator
        if operator == "In":
            parts.append(f"{expression.key} in ({','.join(expression.values or [])})")
        elif operator == "NotIn":
            parts.append(f"{expression.key} notin ({','.join(expression.values or [])})")
        elif operator == "Exists":
            parts.append(expression.key)
        elif operator == "DoesNotExist":
            parts.append(f"!{expression.key}")
    return ",".join(parts)


def service_target_port(service: client.V1Service, port: int | str) -> int | str:
    """The pod port behind service port ``port`` (its number or name), as kubectl maps it.

    ``targetPort`` unset means the service port itself; a name is a container port name,
    looked up in the pod later.
    """
    spec = service.spec
    ports = (spec.ports if spec else None) or []
    for entry in ports:
        if entry.port == port or (isinstance(port, str) and entry.name == port):
            target = entry.target_port
            if target in (None, 0, ""):
                return int(entry.port)
            if isinstance(target, str) and target.isdigit():
                return int(target)
            return target
    name = service.metadata.name if service.metadata else "?"
    have = ", ".join(
        f"{entry.port}" + (f" ({entry.name})" if entry.name else "") for entry in ports
    )
    raise PortForwardError(
        f"service {name} has no port {port!r} (its ports: {have or 'none'}); "
        "pass one of its ports, as kubectl port-forward takes the service port, not the pod's"
    )


def container_port(pod: client.V1Pod, name: str, what: str) -> int:
    """The number of the container port named ``name`` in ``pod``."""
    containers = (pod.spec.containers if pod.spec else None) or []
    named = {p.name: p.container_port for c in containers for p in c.ports or [] if p.name}
    if name in named:
        return int(named[name])
    pod_name = pod.metadata.name if pod.metadata else "?"
    raise PortForwardError(
        f"{what}: pod {pod_name} has no container port named {name!r} "
        f"(its named ports: {', '.join(sorted(named)) or 'none'}); name the port in the pod's "
        "containers[].ports, or forward to the port number"
    )


def _read(what: str, namespace: str, cluster: str, read: Callable[[], _T]) -> _T:
    """``read()``, with a 404 as :class:`PortForwardError` and other failures as ``ApiError``."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            raise PortForwardError(
                f"no {what} in namespace {namespace} of vcluster {cluster}; create it first, "
                "or pass the namespace it is in as port_forward(..., namespace=...)"
            ) from exc
        raise api_error(f"reading {what} in namespace {namespace}", exc) from exc
    except Exception as exc:
        raise api_error(f"reading {what} in namespace {namespace}", exc) from exc


def resolve(
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    target: Target,
    port: int | str,
    *,
    namespace: str,
    cluster: str,
) -> Backend:
    """The pods and pod port that ``target`` and ``port`` stand for."""
    if target.kind == "pod":
        _read(
            f"pod {target.name}",
            namespace,
            cluster,
            lambda: core.read_namespaced_pod(target.name, namespace, _request_timeout=API_TIMEOUT),
        )
        return Backend(target.text, None, target.name, port)
    if target.kind == "deployment":
        deployment = _read(
            f"deployment {target.name}",
            namespace,
            cluster,
            lambda: apps.read_namespaced_deployment(
                target.name, namespace, _request_timeout=API_TIMEOUT
            ),
        )
        selector = label_selector(deployment.spec.selector if deployment.spec else None)
        if not selector:
            # The API requires a selector; an empty one would match every pod in the namespace.
            raise PortForwardError(f"deployment {target.name} has an empty selector")
        return Backend(f"{target.text} (pods {selector})", selector, None, port)
    service = _read(
        f"service {target.name}",
        namespace,
        cluster,
        lambda: core.read_namespaced_service(target.name, namespace, _request_timeout=API_TIMEOUT),
    )
    labels = (service.spec.selector if service.spec else None) or {}
    if not labels:
        raise PortForwardError(
            f"service {target.name} in namespace {namespace} has no selector, so no pod backs "
            "it (its endpoints are managed by hand, or it is an ExternalName); forward to "
            "pod/NAME or deployment/NAME instead"
        )
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    pod_port = service_target_port(service, port)
    return Backend(f"{target.text} (pods {selector})", selector, None, pod_port)


def wait_for_ready_pod(
    core: client.CoreV1Api, backend: Backend, namespace: str, deadline: Deadline
) -> client.V1Pod:
    """A Ready pod of ``backend``; raise :class:`WaitTimeoutError` with the pods' states."""
    found: list[client.V1Pod] = []

    def check() -> tuple[bool, str]:
        if backend.pod is not None:
            pods = [core.read_namespaced_pod(backend.pod, namespace, _request_timeout=API_TIMEOUT)]
        else:
            pods = core.list_namespaced_pod(
                namespace, label_selector=backend.selector, _request_timeout=API_TIMEOUT
            ).items
        live = [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]
        ready = [p for p in live if p.status and p.status.phase == "Running" and pod_ready(p)]
        if ready:
            found.append(ready[0])
            return True, describe_pods(ready[:1])
        if not live and backend.selector is not None:
            return False, f"no pod matches {backend.selector}"
        return False, describe_pods(live)

    try:
        wait_until(
            f"a Ready pod of {backend.what} in namespace {namespace}",
            check,
            deadline,
            interval=0.5,
        )
    except WaitTimeoutError as exc:
        exc.args = (
            f"{exc.args[0]}; see why with `kubectl describe pods -n {namespace}`, "
            "or give it longer with port_forward(..., timeout=...)",
        )
        raise
    return found[-1]


class _OnePodForwarder(PodPortForwarder):
    """Forwards to one pod by name: ``pod/NAME`` means that pod, not any pod with its labels."""

    def __init__(
        self,
        api_factory: Callable[[], client.ApiClient],
        namespace: str,
        pod: str,
        remote_port: int,
    ) -> None:
        # The selector is only shown in log messages here: this forwarder never lists pods.
        super().__init__(api_factory, namespace, f"metadata.name={pod}", remote_port)
        self.pod = pod

    def _find_pod(self) -> str:
        return self.pod


@contextlib.contextmanager
def port_forward(
    api_factory: Callable[[], client.ApiClient],
    target: str,
    port: int | str,
    *,
    namespace: str = "default",
    timeout: float = 60.0,
    cluster: str = "?",
) -> Iterator[Forward]:
    """Forward a free port of 127.0.0.1 to ``target``'s ``port`` for the ``with`` block.

    ``api_factory`` makes clients of the vcluster; every call must return a new one (see
    :class:`~pytest_vcluster.connect.tunnel.PodPortForwarder`). Waits up to ``timeout`` seconds for
    a Ready pod before yielding, so the first connection finds one.
    """
    parsed = parse_target(target)
    wanted = check_port(port)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(
            "port_forward(timeout=...)", f"{timeout!r} is not a duration", "seconds > 0"
        )
    api = api_factory()
    try:
        core = client.CoreV1Api(api)
        backend = resolve(
            core, client.AppsV1Api(api), parsed, wanted, namespace=namespace, cluster=cluster
        )
        pod = wait_for_ready_pod(core, backend, namespace, Deadline(timeout))
    finally:
        api.close()  # type: ignore[no-untyped-call]
    pod_port = (
        backend.port
        if isinstance(backend.port, int)
        else container_port(pod, backend.port, backend.what)
    )
    forwarder = (
        _OnePodForwarder(api_factory, namespace, backend.pod, pod_port)
        if backend.pod is not None
        else PodPortForwarder(api_factory, namespace, str(backend.selector), pod_port)
    )
    with forwarder:
        yield Forward("127.0.0.1", forwarder.local_port, target, namespace, pod_port)
