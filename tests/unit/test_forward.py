"""The local port forward: byte pumping, pod choice, reconnecting to a replaced pod.

The Kubernetes stream is replaced by plain local sockets; what is tested is the forwarder's
own logic (accept, pick a pod, retry with a fresh pod lookup, pump, stop).
"""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from pytest_vcluster.forward import PodPortForwarder, SocketLike, pick_pod, pump


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
