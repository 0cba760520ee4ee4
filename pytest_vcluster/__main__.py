"""``python -m pytest_vcluster``: the same as the ``pytest-vcluster`` command."""

import sys

from pytest_vcluster.cli.main import main

sys.exit(main())
