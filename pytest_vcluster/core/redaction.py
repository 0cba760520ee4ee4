"""Credentials out of every text the plugin shows or keeps: logs, pod YAML, error messages.

:func:`redact` removes PEM blocks, values of credential keys (``token:``, ``client-key-data:``,
``password=``...) and of environment variables named so in pod YAML, ``Bearer``/``Basic``
values, JWTs and base64 runs over 200 characters. Every pattern is linear in the text's length:
a workload that logs a long unbroken word must not stall a test's report. This module does not
import pytest.
"""

from __future__ import annotations

import bisect
import re

__all__ = ["redact"]

_REDACTED = "<redacted>"
# Every pattern below must stay linear in the text's length: logs of up to 2 MB are redacted
# while pytest builds the report, and a pattern that rescans a long word from each of its
# characters (an unanchored leading ``[\w.-]*``) took minutes on one 200k-character word.
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
# A lookahead finds END lines that share their dashes with the one before, as a search would.
_PEM_END = re.compile(r"(?=-----END ([A-Z0-9 ]+)-----)")
# ``key: value``, ``"key": "value"`` and ``key=value`` for keys that name credentials. Only
# spaces and tabs after the separator: a key whose value is a nested mapping (``token:`` then a
# new line) keeps the next line. Booleans stay (``automountServiceAccountToken: false``). The
# match starts at the credential word, not at the start of the key it ends (``client_secret``):
# what comes before it is kept either way, and a leading ``[\w.-]*`` made this quadratic.
_SECRET_VALUE = re.compile(
    r"""(?ix)
    (?P<key>["']?(?:client-key-data|client-certificate-data|certificate-authority-data
        |token|password|passwd|secret|api[-_]?key)["']?[ \t]*[:=][ \t]*)
    (?!(?:true|false|null|none|<redacted>)\b)
    (?P<quote>["']?)(?P<value>[^\s"',}]+)
    """
)
# An environment variable named like a credential, as pod YAML lists it (name, then value).
# The lookahead checks the name holds a credential word; scanning the name once, instead of
# trying each credential word in it against each way to end it, keeps this linear.
_SECRET_ENV = re.compile(
    r"""(?ix)
    (?P<key>name:[ \t]*["']?
        (?=[\w.-]*?(?:token|password|passwd|secret|api[-_]?key))[\w.-]+
        ["']?[ \t]*\n[ \t]*value:[ \t]*)
    (?P<quote>["']?)(?P<value>[^\s"']+)
    """
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)([ \t]+)[A-Za-z0-9._~+/=-]{6,}")
# When the first ``eyJ`` of a run of token characters starts no JWT, no later one in that run
# does (they share its end): the second branch skips the run, so ``-eyJ-eyJ...`` is not
# rescanned from each ``eyJ``. Only the first branch names a JWT.
_JWT = re.compile(
    r"\beyJ(?:(?P<jwt>[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)|[A-Za-z0-9_-]*)"
)
# Anchored at the start of a run: from inside a run shorter than 200, every start failed again.
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{200,}={0,2}")
# Terminal colours in logs (the syncer's levels): noise in a report.


def _redact_pem(text: str) -> str:
    """``text`` with each ``-----BEGIN X-----`` ... ``-----END X-----`` block replaced.

    A backreferencing pattern (``BEGIN (X).*?END \\1``) searched to the end of the text for
    each BEGIN without an END: quadratic in a log that repeats such headers. Here every END is
    found once, and each BEGIN looks up the first END of its label after it.
    """
    if "-----BEGIN " not in text:
        return text
    ends: dict[str, list[int]] = {}
    for end in _PEM_END.finditer(text):
        ends.setdefault(end.group(1), []).append(end.start())
    kept: list[str] = []
    copied = 0
    position = 0
    while (begin := _PEM_BEGIN.search(text, position)) is not None:
        label = begin.group(1)
        candidates = ends.get(label, [])
        index = bisect.bisect_left(candidates, begin.end())
        if index == len(candidates):
            position = begin.start() + 1  # unterminated: later BEGINs may still be blocks
            continue
        kept += [text[copied : begin.start()], f"<redacted {label.lower()}>"]
        copied = position = candidates[index] + len(f"-----END {label}-----")
    kept.append(text[copied:])
    return "".join(kept)


def _jwt(match: re.Match[str]) -> str:
    return _REDACTED if match["jwt"] is not None else match.group(0)


def redact(text: str) -> str:
    """``text`` without credentials: PEM blocks, values of credential keys (``token:``,
    ``client-key-data:``, ``password=``...) and of environment variables named so in pod
    YAML, ``Bearer``/``Basic`` values, JWTs and base64 runs over 200 characters (certificates
    and keys embedded in kubeconfigs). Takes time linear in the length of ``text``."""
    text = _redact_pem(text)
    text = _SECRET_VALUE.sub(lambda m: f"{m['key']}{m['quote']}{_REDACTED}", text)
    text = _SECRET_ENV.sub(lambda m: f"{m['key']}{m['quote']}{_REDACTED}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)
    text = _JWT.sub(_jwt, text)
    return _BASE64_BLOB.sub(lambda m: f"<redacted {len(m.group(0))} characters>", text)
