"""Regressions of review findings: redaction time, an interrupted image import, the mode of a
credentials file while it is written, and how long a port forwarder's stop may take."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import pytest
from kubernetes import client

from pytest_vcluster.connect.tunnel import PodPortForwarder
from pytest_vcluster.core.files import write_private
from pytest_vcluster.diagnostics.bundle import redact
from pytest_vcluster.host.images import pipe_into

# -- redact stays linear ---------------------------------------------------------------------

#: Seconds one redaction of about 200k characters may take. A linear redact needs well under
#: a tenth of that; the quadratic one took 3.6 s for 8k characters, so tens of minutes here.
REDACT_BOUND = 5.0
LONG = 200_000
HALF = LONG // 2


class TooSlowError(Exception):
    """Raised by the alarm when a redaction outlives :data:`REDACT_BOUND`."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds``: the regex engine checks signals while it
    matches, whereas a watchdog thread could not even time out (a match holds the GIL)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TooSlowError(f"took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


PEM_HEADER = "-----BEGIN A-----"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ``_`` keeps these words out of base64 runs, which are redacted as a whole.
        pytest.param("x_" * HALF, "x_" * HALF, id="unbroken-word"),
        pytest.param("x_" * HALF + "token: s3cr3t", "x_" * HALF + "token: <redacted>", id="key"),
        pytest.param("QUFB" * (LONG // 4), f"<redacted {LONG} characters>", id="base64-run"),
        pytest.param("a." * HALF, "a." * HALF, id="a-dot-run"),
        pytest.param("token" + "_x" * HALF, "token" + "_x" * HALF, id="token-prefixed-word"),
        pytest.param("token_" * (LONG // 6), "token_" * (LONG // 6), id="repeated-token"),
        pytest.param(
            "name: " + "token_" * (LONG // 6) + "\n  value: s3cr3t",
            "name: " + "token_" * (LONG // 6) + "\n  value: <redacted>",
            id="env-name",
        ),
        pytest.param("-eyJ" * (LONG // 4), "-eyJ" * (LONG // 4), id="jwt-heads"),
        pytest.param(
            PEM_HEADER * (LONG // len(PEM_HEADER)), PEM_HEADER * (LONG // len(PEM_HEADER)), id="pem"
        ),
        pytest.param(
            PEM_HEADER * (LONG // len(PEM_HEADER)) + "-----END A-----", "<redacted a>", id="pem-end"
        ),
    ],
)
def test_redact_is_linear_on_pathological_input(text: str, expected: str) -> None:
    with alarm(REDACT_BOUND):
        redacted = redact(text)
    assert redacted == expected


# -- an interrupted pipe_into ends its command and its stream ---------------------------------


def _gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie waiting for init to reap it has ended too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def test_pipe_into_interrupted_kills_the_command_group_and_stops_the_stream(
    tmp_path: Path,
) -> None:
    # Python's own handler: the plugin's (installed for this run) would end the whole session.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_pipe_into(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_pipe_into(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The shell starts a grandchild in its group, records both pids, then reads stdin forever.
    script = 'sleep 30 & echo "$$ $!" > "$0"; exec cat > /dev/null'
    feeders: list[threading.Thread] = []
    fed = [0]

    def endless() -> Iterator[bytes]:
        feeders.append(threading.current_thread())
        while True:
            fed[0] += 1
            yield b"x" * 65536

    def interrupt() -> None:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            with contextlib.suppress(OSError):
                if len(pids.read_text().split()) == 2 and fed[0] > 2:
                    break
            time.sleep(0.02)
        _thread.interrupt_main()  # what Ctrl-C does to the waiting main thread

    interrupter = threading.Thread(target=interrupt, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe_into(["sh", "-c", script, str(pids)], endless(), timeout=60)
        shell, grandchild = (int(pid) for pid in pids.read_text().split())
        assert _gone(shell), "the command still runs after pipe_into was interrupted"
        give_up = time.monotonic() + 5
        while not _gone(grandchild) and time.monotonic() < give_up:
            time.sleep(0.02)
        assert _gone(grandchild), "the command's own child still runs"
        assert feeders, "the stream never started"
        assert not feeders[0].is_alive(), "the feeder thread still streams"
        count = fed[0]
        time.sleep(0.1)
        assert fed[0] == count
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            interrupter.join(15)  # an interrupt that pipe_into did not raise lands here
        with contextlib.suppress(OSError, ValueError):
            for pid in (int(text) for text in pids.read_text().split()):
                if not _gone(pid):  # left running by a pipe_into that does not kill them
                    os.kill(pid, signal.SIGKILL)


# -- write_private never writes into a file others can read ----------------------------------


def test_write_private_content_goes_to_an_owner_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    modes: list[int] = []
    real_fdopen = os.fdopen

    class Spy:
        """A file object whose writes first record the mode of the file written to."""

        def __init__(self, handle: IO[Any]) -> None:
            self.handle = handle

        def __enter__(self) -> Spy:
            self.handle.__enter__()
            return self

        def __exit__(
            self,
            kind: type[BaseException] | None,
            error: BaseException | None,
            trace: TracebackType | None,
        ) -> None:
            self.handle.__exit__(kind, error, trace)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

        def write(self, data: Any) -> int:
            modes.append(stat.S_IMODE(os.fstat(self.handle.fileno()).st_mode))
            written: int = self.handle.write(data)
            return written

    def spying_fdopen(fd: int, *args: Any, **kwargs: Any) -> Spy:
        return Spy(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(os, "fdopen", spying_fdopen)  # the one write_private opens with
    write_private(path, "token: s3cr3t")
    monkeypatch.undo()
    assert modes, "write_private wrote without os.fdopen: this test no longer observes it"
    assert all(mode == 0o600 for mode in modes), [oct(mode) for mode in modes]
    assert path.read_text() == "token: s3cr3t"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


# -- PodPortForwarder.stop waits once, not once per thread -----------------------------------


def test_forwarder_stop_shares_one_deadline_between_its_threads() -> None:
    forwarder = PodPortForwarder(
        lambda: client.ApiClient(client.Configuration()), "ns", "app=vcluster"
    )
    forwarder.stop_timeout = 0.3
    release = threading.Event()
    # Connection threads that ignore the stop (a pump blocked in sendall, say).
    stuck = [threading.Thread(target=release.wait, args=(30,), daemon=True) for _ in range(6)]
    for thread in stuck:
        thread.start()
    forwarder._threads.extend(stuck)
    try:
        started = time.monotonic()
        forwarder.stop()
        took = time.monotonic() - started
    finally:
        release.set()
        for thread in stuck:
            thread.join(5)
    # One shared deadline: about 0.3 s. One timeout per thread would be 6 x 0.3 = 1.8 s.
    assert took < 1.2, f"stop() took {took:.2f}s for 6 threads"
