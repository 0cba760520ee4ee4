"""Exceptions raised by pytest-vcluster.

Every error the plugin raises derives from :class:`VClusterError`, so a test suite can catch
them all at once; each subclass names one way things go wrong and carries the facts a reader
needs to fix it (the command, the option, what a wait saw last).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = [
    "ApiError",
    "CommandError",
    "ConfigError",
    "HostError",
    "ManifestError",
    "RunInterruptedError",
    "StartFailedError",
    "ToolNotFoundError",
    "VClusterError",
    "WaitTimeoutError",
    "WorkloadFailedError",
    "api_error",
]

#: How much of a failing command's stderr an error message keeps.
STDERR_TAIL_LINES = 20


class VClusterError(Exception):
    """Base class of every error raised by pytest-vcluster."""


class ConfigError(VClusterError):
    """A setting or marker argument is invalid.

    ``option`` names the setting as the user wrote it (``--vcluster-teardown`` or
    ``vcluster(version=...)``) and ``allowed`` describes the values that would be accepted.
    """

    def __init__(self, option: str, message: str, allowed: str | None = None) -> None:
        self.option = option
        self.allowed = allowed
        #: What is wrong, without the option's name.
        self.reason = message if not allowed else f"{message} (allowed: {allowed})"
        text = f"{option}: {message}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)


class ToolNotFoundError(VClusterError):
    """A command-line tool (kind, vcluster, helm) could not be found or run."""

    def __init__(self, tool: str, looked_in: str, hint: str) -> None:
        self.tool = tool
        super().__init__(f"{tool} not found ({looked_in}). {hint}")


class CommandError(VClusterError):
    """A command exited non-zero or ran past its timeout."""

    def __init__(
        self,
        command: Sequence[str],
        exit_code: int | None,
        stderr: str,
        *,
        timeout: float | None = None,
    ) -> None:
        self.command = list(command)
        self.exit_code = exit_code
        self.stderr = stderr
        self.timeout = timeout
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        shown = " ".join(self.command)
        if timeout is not None and exit_code is None:
            head = f"command timed out after {timeout:g}s: {shown}"
        else:
            head = f"command failed with exit code {exit_code}: {shown}"
        tail = f"\n--- stderr (last {STDERR_TAIL_LINES} lines) ---\n{self.stderr_tail}"
        super().__init__(head + (tail if self.stderr_tail else "\n(no stderr)"))


class WaitTimeoutError(VClusterError):
    """A wait ran past its deadline; says what it awaited and what it saw last."""

    def __init__(self, awaited: str, timeout: float, last_seen: str) -> None:
        self.awaited = awaited
        self.timeout = timeout
        self.last_seen = last_seen
        super().__init__(
            f"timed out after {timeout:g}s waiting for {awaited}; last seen: {last_seen}"
        )


class HostError(VClusterError):
    """The host cluster (or Docker, which runs it) is missing or unreachable."""


class StartFailedError(VClusterError):
    """A vcluster's pod reached a state it will not recover from (an image that cannot be
    pulled, a container crashing over and over); raised at once instead of waiting out the
    ready timeout."""


class ApiError(VClusterError):
    """A Kubernetes API call failed; keeps the API's status (``status``, ``reason``, ``body``).

    ``status`` is the HTTP code (``None`` when no answer came: a refused connection, a
    timeout), ``reason`` the HTTP reason or the transport error, ``message`` the ``Status``
    object's message when the server sent one.
    """

    def __init__(
        self,
        doing: str,
        *,
        status: int | None,
        reason: str,
        message: str | None = None,
        body: str | None = None,
    ) -> None:
        self.doing = doing
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        code = f"{status} {reason}" if status is not None else reason
        super().__init__(f"{doing}: {code}" + (f": {message}" if message else ""))


class ManifestError(VClusterError):
    """A manifest cannot be read, or the API refused to apply one of its objects.

    ``source`` is the file (or ``<string>``, ``<dict>``), ``document`` the 1-based number of
    the YAML document in it (``item`` the 1-based item of a ``kind: List``), ``kind`` and
    ``name`` the object's, when known; ``problem`` says what is wrong (for a refused object,
    the ``message`` of the API's ``Status``) and ``status`` is the API's HTTP code, if any.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        document: int | None = None,
        item: int | None = None,
        kind: str | None = None,
        name: str | None = None,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.document = document
        self.item = item
        self.kind = kind
        self.name = name
        self.problem = problem
        self.status = status
        where = source if document is None else f"{source}, document {document}"
        if item is not None:
            where += f", item {item}"
        if kind or name:
            where += f" ({kind or '?'} {name or '?'})"
        super().__init__(f"{where}: {problem}")


class WorkloadFailedError(VClusterError):
    """A workload inside a vcluster reached a state it will not leave alone (an image that
    cannot be pulled, a crash loop, a pod that cannot be scheduled, a failed Job); raised at
    once by a wait instead of waiting out its timeout."""


class RunInterruptedError(VClusterError):
    """The run was interrupted (Ctrl-C, SIGTERM) while this operation waited."""


def api_error(doing: str, exc: BaseException) -> ApiError:
    """``exc`` from the Kubernetes client (an ``ApiException``, a urllib3 or socket error) as
    an :class:`ApiError`; raise it ``from exc`` to keep the chain."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or isinstance(exc, ApiError):
        return ApiError(
            doing, status=None, reason=f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        )
    body = getattr(exc, "body", None)
    body_text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message: str | None = None
    if isinstance(body_text, str) and body_text.startswith("{"):
        try:
            parsed = json.loads(body_text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    return ApiError(
        doing,
        status=status,
        reason=str(getattr(exc, "reason", "") or "error"),
        message=message,
        body=body_text if isinstance(body_text, str) else None,
    )
