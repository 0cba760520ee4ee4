"""The ``pytest-vcluster`` command: ``doctor``, ``ls`` and ``reap``."""
