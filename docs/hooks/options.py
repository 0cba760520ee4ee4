"""mkdocs hook: the options reference is generated from the code, so it cannot drift.

``pytest_vcluster.settings.config.OPTIONS`` is the one table the plugin registers its options
from. Two placeholders are replaced with what it says at build time:

* ``<!-- options-table -->``: flag, ini key, environment variable, default and help of every
  option (docs/options.md);
* ``<!-- settings-file-keys -->``: the keys a settings file accepts (docs/settings-file.md).

A page that should hold a placeholder and does not fails the build: a table silently missing
from the site would be the drift this hook exists to prevent.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# The build may run from a checkout whose package is not installed: import it from the tree.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from pytest_vcluster.settings.config import OPTIONS  # noqa: E402

OPTIONS_TABLE = "<!-- options-table -->"
SETTINGS_FILE_KEYS = "<!-- settings-file-keys -->"
#: Which page must hold which placeholder.
REQUIRED = {"options.md": OPTIONS_TABLE, "settings-file.md": SETTINGS_FILE_KEYS}

_FLAG = re.compile(r"(?<![`\w-])(--vcluster-[a-z0-9-]+)")
#: Where a help text says what happens when the option is not set, e.g. "(default: kind's own)".
_DEFAULT_IN_HELP = re.compile(r"default: ([^;)]+)")


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell, with option flags set as code."""
    text = " ".join(text.split())
    text = text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return _FLAG.sub(r"`\1`", text)


def _former(spec: Any) -> str | None:  # noqa: ANN401 - an OptionSpec, read defensively
    """The flag ``spec`` had before a rename (it still works, deprecated), if any."""
    former = getattr(spec, "former", None)
    return f"--vcluster-{former}" if former else None


def _default(spec: Any) -> str:  # noqa: ANN401 - an OptionSpec
    """The default as a cell: the value, else what the help says happens, else "not set"."""
    if spec.default is not None:
        return f"`{spec.default}`"
    said = _DEFAULT_IN_HELP.search(spec.help)
    return _cell(said.group(1).strip()) if said else "not set"


def options_table() -> str:
    """Every option as one Markdown table row."""
    rows = [
        "| flag | ini key | environment variable | default | help |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in OPTIONS:
        flag = f"`{spec.flag}`" if spec.kind == "bool" else f"`{spec.flag}={spec.metavar}`"
        default = _default(spec)
        help_text = _cell(spec.help)
        former = _former(spec)
        if former:
            help_text += f" Formerly `{former}` (still accepted, deprecated)."
        rows.append(f"| {flag} | `{spec.ini}` | `{spec.env}` | {default} | {help_text} |")
    return "\n".join(rows)


def settings_file_keys() -> str:
    """The keys a settings file accepts: option names without ``--vcluster-``."""
    rows = ["| key | same as | help |", "| --- | --- | --- |"]
    for spec in OPTIONS:
        if spec.name == "settings-file":
            continue
        former = getattr(spec, "former", None)
        key = f"`{spec.name}` (formerly `{former}`)" if former else f"`{spec.name}`"
        rows.append(f"| {key} | `{spec.flag}` | {_cell(spec.help)} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:  # noqa: ANN401
    """Replace the placeholders; fail the build when a page lost its placeholder."""
    del kwargs
    name = Path(page.file.src_uri).name
    required = REQUIRED.get(name)
    if required is not None and required not in markdown:
        raise ValueError(f"docs/{page.file.src_uri} must contain {required}")
    markdown = markdown.replace(OPTIONS_TABLE, options_table())
    return markdown.replace(SETTINGS_FILE_KEYS, settings_file_keys())
