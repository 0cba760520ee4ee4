"""A local TCP port on 127.0.0.1 forwarded to a pod port through the Kubernetes API.

This replaces ``kubectl port-forward`` and the vcluster CLI's background proxy. The listener
accepts connections in a thread; each connection opens its own port-forward stream to a pod
chosen by label selector at that moment, so the forward survives a pod being replaced (pause
and resume, a restart). Bytes are pumped both ways by a small ``select`` loop per connection.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kubernetes import client
from kubernetes.stream import portforward

from pytest_vcluster.core.pods import pod_ready

__all__ = ["PodPortForwarder", "SocketLike", "pick_pod", "pump"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class SocketLike(Protocol):
    """The part of a socket :func:`pump` uses (the port-forward socket is a wrapper)."""

    def fileno(self) -> int: ...
    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> None: ...
    def close(self) -> None: ...


def pump(a: SocketLike, b: SocketLike, stop: threading.Event, poll: float = 0.5) -> None:
    """Copy bytes between ``a`` and ``b`` until either side closes or ``stop`` is set."""
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    try:
        while not stop.is_set():
            readable, _, _ = select.select([a, b], [], [], poll)
            for ready in readable:
                source, target = peers[ready.fileno()]
                data = source.recv(_CHUNK)
                if not data:
                    return
                target.sendall(data)
    except OSError as exc:
        log.debug("forwarded connection ended: %s", exc)
    finally:
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.close()


def _proxy_threads(stream: object) -> list[threading.Thread]:
    """The threads still running the proxy of one ``kubernetes.stream`` port-forward stream.

    ``PortForward`` starts its proxy thread on its own bound ``_proxy`` method and keeps no handle
    on it, so the thread's target is the one link back to the stream it serves: matching on it
    finds exactly this stream's thread, whichever other streams are opening at the same time.
    ``Thread.run`` drops its target once the target returns, so a thread found here may still be
    using the stream's websocket, and an empty list means no proxy uses it any more.
    """
    return [
        thread
        for thread in threading.enumerate()
        if getattr(getattr(thread, "_target", None), "__self__", None) is stream
    ]


def pick_pod(pods: list[client.V1Pod]) -> str | None:
    """The best pod to forward to: running and not being deleted, ready ones first."""
    candidates = [
        pod
        for pod in pods
        if pod.metadata
        and pod.metadata.name
        and not pod.metadata.deletion_timestamp
        and pod.status
        and pod.status.phase == "Running"
    ]
    candidates.sort(key=lambda pod: not pod_ready(pod))
    if not candidates or candidates[0].metadata is None:
        return None
    return candidates[0].metadata.name


class PodPortForwarder:
    """Forward ``127.0.0.1:<local_port>`` to ``remote_port`` of a pod matching ``selector``.

    ``api_factory`` makes the API client used for the streams. It must be a client of its own:
    ``kubernetes.stream.portforward`` swaps the client's request function while it connects,
    which would break other threads sharing that client.
    """

    #: Seconds :meth:`stop` waits, in all, for the connection threads to end.
    stop_timeout = 5.0

    def __init__(
        self,
        api_factory: Callable[[], client.ApiClient],
        namespace: str,
        selector: str,
        remote_port: int = 8443,
        *,
        connect_timeout: float = 15.0,
    ) -> None:
        self.namespace = namespace
        self.selector = selector
        self.remote_port = remote_port
        self.connect_timeout = connect_timeout
        self._api = api_factory()
        self._core = client.CoreV1Api(self._api)
        self._connect_lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        # The accept thread adds connection threads while stop() may be collecting them: both
        # hold this lock, so stop() sees every thread started before it, and none start after.
        self._threads_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pod: str | None = None
        self.local_port = 0
        self.connections = 0
        self.last_error: str | None = None

    def __enter__(self) -> PodPortForwarder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> int:
        """Listen on a free port of 127.0.0.1 and return it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.5)
        self._listener = listener
        self.local_port = listener.getsockname()[1]
        thread = threading.Thread(
            target=self._accept_loop,
            name=f"pytest-vcluster forward {self.namespace}:{self.remote_port}",
            daemon=True,
        )
        with self._threads_lock:
            thread.start()
            self._threads.append(thread)
        return self.local_port

    def stop(self) -> None:
        """Stop accepting, end open connections and close the API client."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._threads_lock:
            threads, self._threads = self._threads, []
        # All threads were told to stop above and end together: one wait bounds them all,
        # a wait per thread added up to 5 s more for each connection that did not end.
        deadline = time.monotonic() + self.stop_timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._api.close()  # type: ignore[no-untyped-call]

    def _accept_loop(self) -> None:
        listener = self._listener
        if listener is None:
            return
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._threads_lock:
                if self._stop.is_set():
                    # Accepted while stop() ran: it would not wait for a thread started now.
                    with contextlib.suppress(OSError):
                        conn.close()
                    return
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                thread.start()
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)

    def _find_pod(self) -> str:
        pods = self._core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _request_timeout=self.connect_timeout
        )
        name = pick_pod(list(pods.items))
        if name is None:
            raise LookupError(f"no running pod matches {self.selector} in {self.namespace}")
        return name

    def _open(self, pod: str) -> tuple[SocketLike, Callable[[], None]]:
        """Open one stream; return its socket and a function that releases the websocket."""
        # ``portforward`` temporarily replaces the client's request function: serialize it.
        with self._connect_lock:
            forward = portforward(
                self._core.connect_get_namespaced_pod_portforward,
                pod,
                self.namespace,
                ports=str(self.remote_port),
                _request_timeout=self.connect_timeout,
            )
        proxies = _proxy_threads(forward)
        sock: SocketLike = forward.socket(self.remote_port)

        def release() -> None:
            # The client's proxy thread leaves the websocket's TLS socket open when the server
            # ends the stream first; once that thread is done, close it here, or it is only
            # reclaimed by the garbage collector with a ResourceWarning.
            for thread in proxies:
                thread.join(timeout=5)
            if not any(thread.is_alive() for thread in proxies):
                with contextlib.suppress(Exception):
                    forward.websocket.shutdown()

        return sock, release

    def _connect(self) -> tuple[SocketLike, Callable[[], None]]:
        if self._pod is not None:
            try:
                return self._open(self._pod)
            except Exception as exc:  # noqa: BLE001 - the pod may be gone: look it up again
                log.debug("forward to cached pod %s failed: %s", self._pod, exc)
        self._pod = self._find_pod()
        return self._open(self._pod)

    def _serve(self, conn: socket.socket) -> None:
        try:
            remote, release = self._connect()
        except Exception as exc:  # noqa: BLE001 - report on the forwarder, drop this connection
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._pod = None
            log.debug("cannot forward to %s/%s: %s", self.namespace, self.selector, exc)
            with contextlib.suppress(OSError):
                conn.close()
            return
        self.connections += 1
        try:
            pump(conn, remote, self._stop)
        finally:
            release()
