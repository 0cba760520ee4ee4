"""Host memory: docker's ``MemUsage`` figures, and a sampler reading the host node's during S."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from typing import Any

from .stats import median

STATS_INTERVAL = 10.0  # seconds between host memory samples during S: rare, to disturb little


def parse_mib(text: str) -> float | None:
    """MiB from the used part of docker's ``MemUsage`` (``1.2GiB / 23.4GiB``, ``512MiB``)."""
    match = re.match(r"\s*([\d.]+)\s*([KMGT]?i?B)", text)
    if not match:
        return None
    scale = {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 2**10, "TiB": 2**20}
    scale |= {"kB": 1e3 / 2**20, "KB": 1e3 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}
    unit = match.group(2)
    return float(match.group(1)) * scale[unit] if unit in scale else None


class MemorySampler(threading.Thread):
    """Reads the host node's memory with ``docker stats`` every few seconds until stopped."""

    def __init__(self, container: str) -> None:
        super().__init__(daemon=True)
        self.container = container
        self.docker = shutil.which("docker")
        self.samples: list[float] = []
        self._stopped = threading.Event()

    def run(self) -> None:
        if self.docker is None:
            return
        while not self._stopped.wait(STATS_INTERVAL):
            # A missed sample costs nothing; a sampler that dies would cost the rest of them.
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                proc = subprocess.run(
                    [self.docker, "stats", "--no-stream", "--format", "{{.MemUsage}}",
                     self.container],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                mib = parse_mib(proc.stdout) if proc.returncode == 0 else None
                if mib is not None:
                    self.samples.append(mib)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=60)

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            "first": self.samples[0] if self.samples else None,
            "median": median(self.samples),
            "peak": max(self.samples) if self.samples else None,
        }
