"""The command runner and tool discovery, driven by fake executables."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import FakeTool

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import STDERR_TAIL_LINES, CommandError, ToolNotFoundError


def test_success_returns_output(fake_tool: FakeTool) -> None:
    tool = fake_tool("echoer", "print(' '.join(sys.argv[1:])); print('warn', file=sys.stderr)")
    result = CommandRunner().run([str(tool), "a b", "c"])
    assert result.returncode == 0
    assert result.stdout == "a b c\n"  # arguments are passed as a list, spaces intact
    assert result.stderr == "warn\n"


def test_environment_and_private_cwd(fake_tool: FakeTool) -> None:
    tool = fake_tool(
        "envdump",
        "print(json.dumps({'skip': os.environ.get('VCLUSTER_SKIP_VERSION_CHECK'),"
        " 'extra': os.environ.get('EXTRA'), 'cwd': os.getcwd(), 'ls': os.listdir('.')}))",
    )
    runner = CommandRunner(env={"EXTRA": "1"})
    data = json.loads(runner.run([str(tool)]).stdout)
    assert data["skip"] == "true"
    assert data["extra"] == "1"
    assert data["ls"] == []  # nothing named "vcluster" can be in the way of the CLI
    assert Path(data["cwd"]).resolve() != Path.cwd().resolve()


def test_failure_carries_command_exit_code_and_stderr_tail(fake_tool: FakeTool) -> None:
    tool = fake_tool(
        "failer",
        "for i in range(50): print(f'line {i}', file=sys.stderr)\nsys.exit(3)",
    )
    with pytest.raises(CommandError) as info:
        CommandRunner().run([str(tool), "create", "x"])
    error = info.value
    assert error.exit_code == 3
    assert error.command == [str(tool), "create", "x"]
    assert error.stderr_tail.splitlines() == [
        f"line {i}" for i in range(50 - STDERR_TAIL_LINES, 50)
    ]
    assert "exit code 3" in str(error)
    assert "line 49" in str(error)
    assert "line 0\n" not in str(error)


def test_no_check_returns_failure(fake_tool: FakeTool) -> None:
    tool = fake_tool("failer", "sys.exit(1)")
    assert CommandRunner().run([str(tool)], check=False).returncode == 1


def test_timeout_kills_the_process_tree(fake_tool: FakeTool, tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(2)\nopen({str(marker)!r}, 'w').close()\n")
    tool = fake_tool(
        "sleeper",
        "import subprocess\n"
        f"subprocess.Popen([sys.executable, {str(child)!r}])\n"
        "print('started', file=sys.stderr, flush=True)\n"
        "time.sleep(30)",
    )
    started = time.monotonic()
    with pytest.raises(CommandError) as info:
        CommandRunner().run([str(tool)], timeout=1)
    assert time.monotonic() - started < 10
    assert info.value.exit_code is None
    assert "timed out after 1s" in str(info.value)
    assert "started" in info.value.stderr
    time.sleep(2.5)
    assert not marker.exists()


def test_ctrl_c_while_waiting_kills_the_process_tree(fake_tool: FakeTool, tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(2)\nopen({str(marker)!r}, 'w').close()\n")
    tool = fake_tool(
        "sleeper",
        f"import subprocess\nsubprocess.Popen([sys.executable, {str(child)!r}])\ntime.sleep(30)",
    )
    # A real SIGINT while the main thread waits for the tool, with Python's own handler (the
    # plugin's, installed in this pytest process, would stop this session).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            CommandRunner().run([str(tool)], timeout=60)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 10
    time.sleep(2.5)
    assert not marker.exists()  # its child was killed too, not left to go on


def test_missing_executable() -> None:
    with pytest.raises(CommandError) as info:
        CommandRunner().run(["/nonexistent/tool"])
    assert info.value.exit_code == 127


def test_find_tool_on_path(fake_tool: FakeTool, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = fake_tool("kind", "")
    monkeypatch.setenv("PATH", str(tool.parent))
    assert find_tool("kind") == str(tool)


def test_find_tool_missing_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFoundError, match=r"helm not found .* Install helm 3.10") as info:
        find_tool("helm")
    assert info.value.tool == "helm"
    with pytest.raises(ToolNotFoundError, match="--vcluster-cli-binary"):
        find_tool("vcluster")


def test_find_tool_explicit_path(fake_tool: FakeTool, tmp_path: Path) -> None:
    tool = fake_tool("my-kind", "")
    assert find_tool("kind", str(tool)) == str(tool.resolve())
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ToolNotFoundError, match="is not an executable file"):
        find_tool("kind", str(plain))
