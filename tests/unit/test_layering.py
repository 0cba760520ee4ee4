"""The package's layers: which part may import which, and what importing the plugin loads.

The rules (drawn in docs/architecture.md): ``core`` is the bottom and imports no other part;
each part above imports only the parts listed for it; only the top (``plugin``, the package's
``__init__`` and ``__main__``) may import from anywhere. Imports inside functions and under
``TYPE_CHECKING`` count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_vcluster"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": {"core"},
    "host": {"core", "settings"},
    "connect": {"core"},
    "cluster": {"core", "settings", "host", "connect"},
    "pool": {"core", "settings", "host", "cluster"},
    "diagnostics": {"core", "settings", "host", "cluster"},
    "cli": {"core", "settings", "host", "diagnostics"},
}
TOP = {"plugin.py", "__init__.py", "__main__.py"}


def imported_parts(path: Path) -> set[str]:
    """The parts of pytest_vcluster that ``path`` imports (first component after the root)."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "pytest_vcluster" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def module_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_part_or_the_top() -> None:
    for path in module_files():
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:
            assert relative.name in TOP, f"{relative}: a module outside the parts"
        else:
            assert relative.parts[0] in ALLOWED, f"{relative}: an unknown part"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_part_imports_only_the_parts_below_it(part: str) -> None:
    broken = {}
    for path in sorted((PACKAGE / part).rglob("*.py")):
        wrong = imported_parts(path) - ALLOWED[part] - {part}
        if wrong:
            broken[str(path.relative_to(PACKAGE))] = sorted(wrong)
    assert not broken, f"{part} may import only {sorted(ALLOWED[part])}; found {broken}"


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    # The checker itself must be able to fail: a host module importing the cluster side.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def later():\n    from pytest_vcluster.cluster.lifecycle import VClusterManager\n"
    )
    assert imported_parts(bad) == {"cluster"}
    assert "cluster" not in ALLOWED["host"]


def test_importing_the_plugin_loads_no_engine() -> None:
    """pytest imports the plugin in every run: it must not pull the client or the engine."""
    code = (
        "import json, sys\nimport pytest_vcluster.plugin\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    heavy = [
        name
        for name in loaded
        if name.split(".")[0] in {"kubernetes", "docker", "urllib3"}
        or name.startswith(
            (
                "pytest_vcluster.cluster",
                "pytest_vcluster.host",
                "pytest_vcluster.connect",
                "pytest_vcluster.diagnostics.bundle",
                "pytest_vcluster.pool.lookahead",
                "pytest_vcluster.pool.factory",
            )
        )
    ]
    assert heavy == []
