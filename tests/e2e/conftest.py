"""Fixtures of the end-to-end tier: the offline stack's settings."""

from __future__ import annotations

import pytest

from .stack import Stack, StackMissingError, load_stack


@pytest.fixture(scope="session")
def stack() -> Stack:
    try:
        return load_stack()
    except StackMissingError as exc:
        # The e2e tier never skips silently: a missing stack is a failure with the fix in it.
        pytest.fail(str(exc), pytrace=False)
