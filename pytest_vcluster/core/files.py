"""Files that hold credentials: written so that only the owner can ever read them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the owner only (credentials live there).

    The text goes into a new owner-only file that then replaces ``path``: a file already at
    ``path`` may be readable by others, or held open by a reader since it was, so writing into
    it would show them the credentials. Readers see the old file or the whole new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask took away
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
