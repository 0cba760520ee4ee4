"""The trivial tests ``benchmarks/stress.py`` runs: any failure here is the plugin's.

``test_api`` takes a fresh ``vcluster``, lists its namespaces once and then idles for 0 to
``STRESS_WORK_SECONDS`` seconds (spread over the instances, so tests do not end in lockstep).
``STRESS_COUNT`` says how many instances there are. Both come from the environment, with
defaults for a run by hand (the plugin's options point it at a host).
"""

from __future__ import annotations

import os
import time

import pytest

from pytest_vcluster import VCluster

COUNT = int(os.environ.get("STRESS_COUNT", "1"))
WORK_SECONDS = float(os.environ.get("STRESS_WORK_SECONDS", "1"))


@pytest.mark.parametrize("index", range(COUNT))
def test_api(vcluster: VCluster, index: int) -> None:
    items = vcluster.core_v1().list_namespace().items
    names = [ns.metadata.name for ns in items if ns.metadata is not None]
    if "default" not in names:
        pytest.fail(f"vcluster {vcluster.name} lists no 'default' namespace: {names}")
    time.sleep(WORK_SECONDS * (index % 5) / 4)
