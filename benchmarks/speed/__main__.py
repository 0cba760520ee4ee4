"""``python -m benchmarks.speed``: see :mod:`benchmarks.speed.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
