"""The kind clusters this benchmark makes: a private kubeconfig each, and always deleted."""

from __future__ import annotations

import sys

from .. import stackkit
from .commands import run
from .stack import BenchError


class Kind(stackkit.KindClusters):
    """``kind create/delete/get clusters``, refusing to delete what is not named ``speed-*``."""

    def create(self, name: str) -> float:
        """``kind create cluster`` to a Ready node; returns the seconds it took."""
        done = run(self.create_args(name), timeout=stackkit.KIND_CREATE_TIMEOUT, env=self.env)
        if done.returncode != 0:
            raise BenchError(
                f"kind create cluster --name {name} exited {done.returncode}:\n{done.tail()}"
            )
        return done.seconds

    def delete(self, name: str) -> None:
        """``kind delete cluster`` (a no-op when it does not exist); complains, never raises."""
        if not name.startswith("speed-"):
            raise ValueError(f"refusing to delete {name}: this script only deletes speed-*")
        try:
            done = run(self.delete_args(name), timeout=stackkit.KIND_DELETE_TIMEOUT, env=self.env)
        except BenchError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            return
        if done.returncode != 0:
            print(f"warning: kind delete cluster {name} failed:\n{done.tail()}", file=sys.stderr)

    def clusters(self) -> list[str]:
        done = run([self.binary, "get", "clusters"], timeout=60, env=self.env)
        return [line.strip() for line in done.output.splitlines() if line.strip()]
