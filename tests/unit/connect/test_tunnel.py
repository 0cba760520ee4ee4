"""The local port forward: byte pumping, pod choice, reconnecting to a replaced pod.

The Kubernetes stream is replaced by plain local sockets; what is tested is the forwarder's
own logic (accept, pick a pod, retry with a fresh pod lookup, pump, stop). Releasing a stream
is tested with the client's own ``PortForward`` and its proxy thread over a fake websocket.
"""

from __future__ import annotations

import datetime
import select
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.stream.ws_client import PortForward
from websocket import WebSocketConnectionClosedException

from pytest_vcluster.connect import tunnel as forward_module
from pytest_vcluster.connect.tunnel import PodPortForwarder, SocketLike, pick_pod, pump


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A TCP echo server on 127.0.0.1 standing in for the pod port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    server.close()
    thread.join(timeout=2)


class FakeForwarder(PodPortForwarder):
    """Pods are names; opening a stream to a pod that is gone fails like the API would."""

    def __init__(self, address: tuple[str, int], pods: list[str]) -> None:
        super().__init__(lambda: client.ApiClient(client.Configuration()), "ns", "app=vcluster")
        self.address = address
        self.pods = pods
        self.lookups = 0
        self.opened = 0
        self.released = 0

    def _find_pod(self) -> str:
        self.lookups += 1
        if not self.pods:
            raise LookupError("no running pod matches app=vcluster in ns")
        return self.pods[0]

    def _open(self, pod: str) -> tuple[SocketLike, Callable[[], None]]:
        if pod not in self.pods:
            raise ConnectionError(f"pod {pod} not found")
        self.opened += 1
        return socket.create_connection(self.address), self._released

    def _released(self) -> None:
        self.released += 1


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_forwards_bytes_both_ways(echo_server: tuple[str, int]) -> None:
    with FakeForwarder(echo_server, ["vc-0"]) as forwarder:
        payload = bytes(range(256)) * 1000
        assert roundtrip(forwarder.local_port, payload) == payload
        assert roundtrip(forwarder.local_port, b"again") == b"again"
        assert forwarder.lookups == 1  # the pod name is cached between connections
        assert forwarder.connections == 2
    # Every stream's websocket is released once its connection is over.
    assert forwarder.released == forwarder.opened == 2


def test_reconnects_to_a_replaced_pod(echo_server: tuple[str, int]) -> None:
    with FakeForwarder(echo_server, ["vc-0"]) as forwarder:
        assert roundtrip(forwarder.local_port, b"one") == b"one"
        forwarder.pods[:] = ["vc-0-new"]  # pause and resume replace the pod
        assert roundtrip(forwarder.local_port, b"two") == b"two"
        assert forwarder.lookups == 2


def test_no_pod_drops_the_connection_and_records_why(echo_server: tuple[str, int]) -> None:
    with FakeForwarder(echo_server, []) as forwarder:
        with socket.create_connection(("127.0.0.1", forwarder.local_port), timeout=5) as conn:
            assert conn.recv(10) == b""  # closed by the forwarder
        assert forwarder.last_error == "LookupError: no running pod matches app=vcluster in ns"
        forwarder.pods.append("vc-0")
        assert roundtrip(forwarder.local_port, b"up") == b"up"


def test_stop_closes_the_listener(echo_server: tuple[str, int]) -> None:
    forwarder = FakeForwarder(echo_server, ["vc-0"])
    port = forwarder.start()
    forwarder.stop()
    with pytest.raises(OSError):  # noqa: PT011 - refused or reset, depending on timing
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


class LateConnectionListener:
    """A listener whose one connection arrives just after stop() has begun."""

    def __init__(self, real: socket.socket, stopping: threading.Event) -> None:
        self.real = real
        self.stopping = stopping
        self.client, self.accepted = socket.socketpair()
        self.waiting = threading.Event()
        self.calls = 0

    def accept(self) -> tuple[socket.socket, str]:
        self.calls += 1
        if self.calls > 1:
            raise OSError("listener closed")
        self.waiting.set()
        self.stopping.wait(timeout=5)
        return self.accepted, "late"

    def close(self) -> None:
        self.real.close()


class LateConnectionForwarder(FakeForwarder):
    """Gets one connection after stop() began; looking its pod up blocks until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 9), [])
        self.gate = threading.Event()
        self.late: LateConnectionListener | None = None
        self.listening = threading.Event()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        self.late = LateConnectionListener(self._listener, self._stop)
        self._listener = self.late  # type: ignore[assignment]
        self.listening.set()
        super()._accept_loop()

    def _find_pod(self) -> str:
        self.gate.wait(timeout=10)
        return super()._find_pod()


def test_connection_accepted_during_stop_is_closed_right_away() -> None:
    forwarder = LateConnectionForwarder()
    forwarder.start()
    try:
        assert forwarder.listening.wait(timeout=5)
        assert forwarder.late is not None
        assert forwarder.late.waiting.wait(timeout=5)  # stop() begins while accept() waits
        forwarder.stop()
        forwarder.late.client.settimeout(3)
        # Closed by the forwarder, not handed to a connection thread stop() never waits for.
        assert forwarder.late.client.recv(1) == b""
        assert forwarder.lookups == 0
    finally:
        forwarder.gate.set()
        if forwarder.late is not None:
            forwarder.late.client.close()
            forwarder.late.accepted.close()


class FakeWebSocket:
    """A stream's websocket over a socket pair; ``server`` is the API server's end.

    When the server ends the stream, the proxy thread gives up on the websocket without closing
    its socket: the case ``release`` is there for.
    """

    def __init__(self) -> None:
        self.sock, self.server = socket.socketpair()
        self.connected = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_data_frame(self, control_frame: bool = False) -> tuple[int, object]:
        assert not self.sock.recv(1), "the fake API server sends no data"
        raise WebSocketConnectionClosedException("the server ended the stream")

    def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        self.connected = False
        self.sock.close()

    @property
    def closed(self) -> bool:
        return self.sock.fileno() == -1


def test_release_closes_its_own_websocket_once_its_own_proxy_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two forwarders open streams at once; each release follows only its own proxy thread."""

    def api() -> client.ApiClient:
        return client.ApiClient(client.Configuration())

    first = PodPortForwarder(api, "ns", "app=first")
    second = PodPortForwarder(api, "ns", "app=second")
    websockets: dict[str, FakeWebSocket] = {}
    streams: dict[str, tuple[SocketLike, Callable[[], None]]] = {}

    def portforward(_method: object, pod: str, _namespace: str, **kwargs: object) -> PortForward:
        if pod == "first-0":
            # The other forwarder (its own client and lock) opens a stream meanwhile.
            streams["second-0"] = second._open("second-0")
        websockets[pod] = FakeWebSocket()
        return PortForward(websockets[pod], [int(str(kwargs["ports"]))])  # type: ignore[no-untyped-call]

    monkeypatch.setattr(forward_module, "portforward", portforward)
    try:
        streams["first-0"] = first._open("first-0")
        first_sock, first_release = streams["first-0"]
        _, second_release = streams["second-0"]

        # The API server ends the first stream while the second one goes on.
        websockets["first-0"].server.close()
        assert first_sock.recv(1) == b""
        first_release()
        assert websockets["first-0"].closed
        assert not websockets["second-0"].closed

        # A release waits for its own proxy thread while that still uses the websocket.
        releasing = threading.Thread(target=second_release)
        releasing.start()
        releasing.join(timeout=0.3)
        assert releasing.is_alive()
        assert not websockets["second-0"].closed
        websockets["second-0"].server.close()
        releasing.join(timeout=5)
        assert websockets["second-0"].closed
    finally:
        for websocket in websockets.values():
            websocket.server.close()
        for sock, _ in streams.values():
            # A proxy closes our end as it gives up on the websocket: then it is safe to close.
            select.select([sock], [], [], 5)
            sock.close()
        for websocket in websockets.values():
            websocket.shutdown()
        first.stop()
        second.stop()


def test_pump_ends_when_one_side_closes() -> None:
    a_left, a_right = socket.socketpair()
    b_left, b_right = socket.socketpair()
    thread = threading.Thread(target=pump, args=(a_right, b_left, threading.Event()))
    thread.start()
    a_left.sendall(b"hello")
    assert b_right.recv(5) == b"hello"
    b_right.sendall(b"back")
    assert a_left.recv(4) == b"back"
    a_left.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert b_right.recv(1) == b""  # the other side was closed too
    b_right.close()


def _pod(name: str, phase: str, ready: bool, deleting: bool = False) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            deletion_timestamp=datetime.datetime.now(datetime.UTC) if deleting else None,
        ),
        status=client.V1PodStatus(
            phase=phase,
            conditions=[client.V1PodCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def test_pick_pod() -> None:
    assert pick_pod([]) is None
    assert pick_pod([_pod("a", "Pending", False)]) is None
    assert pick_pod([_pod("a", "Running", False), _pod("b", "Running", True)]) == "b"
    assert pick_pod([_pod("a", "Running", True, deleting=True), _pod("b", "Running", False)]) == "b"
