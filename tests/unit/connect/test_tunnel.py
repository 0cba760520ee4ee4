"""The local port forward: byte pumping, pod choice, reconnecting to a replaced pod.

The Kubernetes stream is replaced by plain local sockets; what is tested is the forwarder's
own logic (accept, pick a pod, retry with a fresh pod lookup, pump, stop). Releasing a stream
and the stream's own framing are tested over a scripted websocket.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
from kubernetes import client
from websocket import ABNF

from pytest_vcluster.connect import tunnel as forward_module
from pytest_vcluster.connect.tunnel import PodPortForwarder, PodStream, SocketLike, pick_pod, pump


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
    """The API server's side of one port-forward websocket, scripted message by message.

    ``sock`` is what select watches: each scripted message makes it readable with one byte, and
    ``recv_data_frame`` takes that byte and hands over the message (or raises the error).
    """

    def __init__(self) -> None:
        self.sock, self.server = socket.socketpair()
        self.script: list[tuple[int, bytes] | Exception] = []
        self.sent: list[tuple[bytes, int]] = []
        self.shut = False

    def deliver(self, message: tuple[int, bytes] | Exception) -> None:
        self.script.append(message)
        self.server.sendall(b"!")

    def announce(self, port: int = 8443) -> None:
        for channel in (0, 1):
            self.deliver((ABNF.OPCODE_BINARY, bytes((channel,)) + port.to_bytes(2, "little")))

    def recv_data_frame(self, control_frame: bool = False) -> tuple[int, ABNF]:
        assert control_frame
        assert self.sock.recv(1) == b"!"
        message = self.script.pop(0)
        if isinstance(message, Exception):
            raise message
        opcode, data = message
        return opcode, ABNF(opcode=opcode, data=data)

    def send(self, payload: bytes, opcode: int) -> int:
        self.sent.append((payload, opcode))
        return len(payload)

    def shutdown(self) -> None:
        self.shut = True
        self.sock.close()
        self.server.close()


def _pumped(ws: FakeWebSocket) -> tuple[socket.socket, threading.Thread, PodStream]:
    """A local connection pumped to a stream over ``ws``: returns the client's end."""
    client_end, local = socket.socketpair()
    stream = PodStream(ws, 8443)  # type: ignore[arg-type]
    thread = threading.Thread(target=pump, args=(local, stream, threading.Event()))
    thread.start()
    return client_end, thread, stream


def test_stream_passes_data_both_ways_and_hides_the_port_announcements() -> None:
    ws = FakeWebSocket()
    ws.announce()
    ws.deliver((ABNF.OPCODE_BINARY, b"\x00hello"))
    ws.deliver((ABNF.OPCODE_PING, b""))
    ws.deliver((ABNF.OPCODE_BINARY, b"\x00 world"))
    client_end, thread, _ = _pumped(ws)
    client_end.settimeout(5)
    received = b""
    while len(received) < len(b"hello world"):
        received += client_end.recv(100)
    assert received == b"hello world"  # no port-number bytes, nothing from the ping
    client_end.sendall(b"request")
    deadline = time.monotonic() + 5
    while not ws.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws.sent == [(b"\x00request", ABNF.OPCODE_BINARY)]
    ws.deliver((ABNF.OPCODE_CLOSE, b""))
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert client_end.recv(1) == b""  # the server's close closes the local connection
    assert ws.shut
    client_end.close()


def test_a_reset_stream_ends_the_connection_quietly() -> None:
    """The case the client library's proxy thread died on, escalated by filterwarnings=error."""
    ws = FakeWebSocket()
    ws.announce()
    ws.deliver(ConnectionResetError(104, "Connection reset by peer"))
    failures: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)  # type: ignore[assignment,misc]
    try:
        client_end, thread, _ = _pumped(ws)
        thread.join(timeout=5)
    finally:
        threading.excepthook = previous
    assert not thread.is_alive()
    assert failures == []
    client_end.settimeout(5)
    assert client_end.recv(1) == b""
    client_end.close()


def test_error_channel_ends_the_stream_and_the_forwarder_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = FakeWebSocket()
    ws.announce()
    ws.deliver((ABNF.OPCODE_BINARY, b"\x01error forwarding port 8443: connection refused"))
    forwarder = PodPortForwarder(lambda: client.ApiClient(client.Configuration()), "ns", "a=b")
    monkeypatch.setattr(
        forward_module,
        "open_pod_stream",
        lambda *_args: PodStream(ws, 8443),  # type: ignore[arg-type]
    )
    stream, release = forwarder._open("vc-0")
    client_end, local = socket.socketpair()
    pump(local, stream, threading.Event())
    release()
    assert forwarder.last_error == (
        "port-forward to vc-0:8443: error forwarding port 8443: connection refused"
    )
    client_end.settimeout(5)
    assert client_end.recv(1) == b""
    client_end.close()
    forwarder.stop()


class RecordingWebSocket:
    made: ClassVar[list[RecordingWebSocket]] = []

    def __init__(self, sslopt: dict[str, object], skip_utf8_validation: bool) -> None:
        self.sslopt = sslopt
        self.sock = None
        self.timeouts: list[float | None] = []
        RecordingWebSocket.made.append(self)

    def connect(self, url: str, **options: object) -> None:
        self.url = url
        self.options = options

    def settimeout(self, timeout: float | None) -> None:
        self.timeouts.append(timeout)


def test_open_pod_stream_asks_for_the_pod_port_with_the_clients_tls_and_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forward_module.websocket, "WebSocket", RecordingWebSocket)
    configuration = client.Configuration(host="https://127.0.0.1:6443")
    configuration.ssl_ca_cert = "/ca.crt"
    configuration.cert_file = "/client.crt"
    configuration.key_file = "/client.key"
    configuration.tls_server_name = "localhost"
    configuration.api_key = {"authorization": "Bearer t0ken"}
    stream = forward_module.open_pod_stream(configuration, "vcluster-a", "a-0", 8443, 15.0)
    ws = RecordingWebSocket.made[-1]
    assert (
        ws.url
        == "wss://127.0.0.1:6443/api/v1/namespaces/vcluster-a/pods/a-0/portforward?ports=8443"
    )
    assert ws.options == {
        "header": ["Authorization: Bearer t0ken"],
        "subprotocols": ["v4.channel.k8s.io"],
        "timeout": 15.0,
    }
    assert ws.sslopt == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "ca_certs": "/ca.crt",
        "certfile": "/client.crt",
        "keyfile": "/client.key",
        "server_hostname": "localhost",
    }
    assert ws.timeouts == [None]  # no read timeout once connected: select decides
    assert stream.remote_port == 8443


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
