"""A local TCP port on 127.0.0.1 forwarded to a pod port through the Kubernetes API.

This replaces ``kubectl port-forward`` and the vcluster CLI's background proxy. The listener
accepts connections in a thread; each connection opens its own port-forward stream to a pod
chosen by label selector at that moment, so the forward survives a pod being replaced (pause
and resume, a restart).

The stream is a websocket speaking ``v4.channel.k8s.io``, read and written only by the thread
that serves its connection. The client library's own port-forward runs a second thread per
stream whose errors nobody can catch: when the API server reset a stream (a cluster paused,
recycled or deleted while a client still held a connection), that thread died with
``ConnectionResetError`` and pytest reported an unhandled thread exception, which a suite
with ``filterwarnings = error`` turns into a failed test. Here such an end is a debug line
and a closed local connection.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import websocket
from kubernetes import client

from pytest_vcluster.core.pods import pod_ready

__all__ = ["PodPortForwarder", "PodStream", "SocketLike", "open_pod_stream", "pick_pod", "pump"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024

#: The port-forward subprotocol: each message starts with a channel byte, ``0`` for the port's
#: bytes and ``1`` for its errors, and the first message on each channel names the port.
PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io"
_DATA, _ERROR = 0, 1


class SocketLike(Protocol):
    """One end :func:`pump` copies from and to: a socket, or a :class:`PodStream`."""

    def fileno(self) -> int: ...
    def recv(self, size: int, /) -> bytes | None: ...
    def sendall(self, data: bytes, /) -> None: ...
    def close(self) -> None: ...


def _buffered(end: SocketLike) -> bool:
    """Whether ``end`` holds bytes ``select`` cannot see (decrypted TLS records)."""
    pending = getattr(end, "pending", None)
    return bool(pending()) if callable(pending) else False


def pump(a: SocketLike, b: SocketLike, stop: threading.Event, poll: float = 0.5) -> None:
    """Copy bytes between ``a`` and ``b`` until either side closes or ``stop`` is set.

    ``recv`` returning ``None`` means "nothing for the other side this time" (a stream's
    control message); ``b""`` means that side is closed.
    """
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    try:
        while not stop.is_set():
            ready = [end for end in (a, b) if _buffered(end)]
            if not ready:
                ready, _, _ = select.select([a, b], [], [], poll)
            for end in ready:
                source, target = peers[end.fileno()]
                data = source.recv(_CHUNK)
                if data is None:
                    continue
                if not data:
                    return
                target.sendall(data)
    except (OSError, websocket.WebSocketException) as exc:
        log.debug("forwarded connection ended: %s", exc)
    finally:
        for end in (a, b):
            with contextlib.suppress(OSError, websocket.WebSocketException):
                end.close()


class PodStream:
    """One port-forward stream to one pod port, over a websocket to the API server.

    Only the thread serving one local connection uses it, so reading, writing and answering
    the server's pings need no lock. ``error`` holds what the server sent on the error channel
    (a refused connection inside the pod, say); the stream ends after it.
    """

    def __init__(self, ws: websocket.WebSocket, remote_port: int) -> None:
        self._ws = ws
        self.remote_port = remote_port
        self._announced: set[int] = set()
        self.error: str | None = None

    def fileno(self) -> int:
        sock = self._ws.sock
        if sock is None:
            raise OSError("the port-forward stream is closed")
        return sock.fileno()

    def pending(self) -> bool:
        sock = self._ws.sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def recv(self, size: int = _CHUNK, /) -> bytes | None:
        """The next bytes from the pod port: ``None`` after a control message, ``b""`` at the end.

        One websocket message per call; ``size`` does not cut a message (the API server's
        messages are small enough to pass on whole).
        """
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except websocket.WebSocketConnectionClosedException:
            return b""
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return b""
        if opcode != websocket.ABNF.OPCODE_BINARY or not frame.data:
            return None  # pings are answered by the library; nothing else is expected
        return self._payload(frame.data[0], bytes(frame.data[1:]))

    def _payload(self, channel: int, payload: bytes) -> bytes | None:
        if channel not in self._announced:
            # The first message of each channel names the port (two bytes, little endian).
            self._announced.add(channel)
            return None
        if channel == _ERROR:
            self.error = payload.decode(errors="replace")
            log.debug("port-forward stream to port %d: %s", self.remote_port, self.error)
            return b""
        if channel != _DATA:
            return None
        return payload or None

    def sendall(self, data: bytes, /) -> None:
        self._ws.send(bytes((_DATA,)) + data, opcode=websocket.ABNF.OPCODE_BINARY)

    def close(self) -> None:
        # A shutdown, not a close handshake: waiting for the server's reply could hold up stop().
        with contextlib.suppress(Exception):
            self._ws.shutdown()  # type: ignore[no-untyped-call]


def open_pod_stream(
    configuration: client.Configuration,
    namespace: str,
    pod: str,
    remote_port: int,
    timeout: float,
) -> PodStream:
    """A port-forward websocket to ``pod``, with the TLS and credentials of ``configuration``."""
    base = urlsplit(configuration.host)
    path = f"{base.path.rstrip('/')}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}"
    scheme = "wss" if base.scheme == "https" else "ws"
    url = urlunsplit((scheme, base.netloc, f"{path}/portforward", f"ports={remote_port}", ""))
    header: list[str] = []
    authorization = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    if authorization:
        header.append(f"Authorization: {authorization}")
    options: dict[str, Any] = {"header": header, "subprotocols": [PORT_FORWARD_PROTOCOL]}
    if configuration.proxy:
        proxy = urlsplit(configuration.proxy)
        options.update(
            http_proxy_host=proxy.hostname, http_proxy_port=proxy.port, proxy_type="http"
        )
    ws = websocket.WebSocket(sslopt=_ssl_options(configuration), skip_utf8_validation=True)
    ws.connect(url, timeout=timeout, **options)  # type: ignore[no-untyped-call]
    # Connected: from here a select decides when to read, and a quiet pod must not time out.
    ws.settimeout(None)
    return PodStream(ws, remote_port)


def _ssl_options(configuration: client.Configuration) -> dict[str, Any]:
    if not configuration.verify_ssl:
        options: dict[str, Any] = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    else:
        options = {"cert_reqs": ssl.CERT_REQUIRED}
        if configuration.ssl_ca_cert:
            options["ca_certs"] = configuration.ssl_ca_cert
        if configuration.assert_hostname is not None:
            options["check_hostname"] = bool(configuration.assert_hostname)
    if configuration.cert_file:
        options["certfile"] = configuration.cert_file
    if configuration.key_file:
        options["keyfile"] = configuration.key_file
    if configuration.tls_server_name:
        options["server_hostname"] = configuration.tls_server_name
    return options


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

    ``api_factory`` makes the API client whose configuration (server, TLS, credentials) the
    streams use and whose pod list picks the pod.
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
        """Open one stream; return it and the function that releases it."""
        stream = open_pod_stream(
            self._api.configuration, self.namespace, pod, self.remote_port, self.connect_timeout
        )

        def release() -> None:
            if stream.error:
                self.last_error = f"port-forward to {pod}:{self.remote_port}: {stream.error}"
            stream.close()

        return stream, release

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
