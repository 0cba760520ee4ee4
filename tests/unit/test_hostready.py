"""Host readiness: a component that is not ready is waited for, one the host lacks is not."""

from __future__ import annotations

import pytest

from pytest_vcluster.errors import HostError
from pytest_vcluster.hostready import HostCheck, wait_host_ready
from pytest_vcluster.waits import Deadline


def test_waits_for_each_component_and_skips_absent_ones() -> None:
    answers = iter([(False, "coredns-1 Running not ready"), (True, "coredns-1 Running ready")])
    checks = [
        HostCheck("kube-proxy Ready", lambda: (None, "none on this host")),
        HostCheck("CoreDNS Ready", lambda: next(answers)),
    ]
    seen = wait_host_ready(checks, Deadline(10), where="kind 't'", sleep=lambda s: None)
    assert seen == [
        "kube-proxy Ready: none on this host",
        "CoreDNS Ready: coredns-1 Running ready",
    ]


def test_a_host_that_stays_unready_is_a_host_error_saying_what_was_seen() -> None:
    checks = [HostCheck("CoreDNS Ready", lambda: (False, "coredns-1 Pending"))]
    with pytest.raises(HostError) as raised:
        wait_host_ready(checks, Deadline(0.2), where="kind cluster 't'")
    message = str(raised.value)
    assert "the host kind cluster 't' is not ready to run vclusters" in message
    assert "coredns-1 Pending" in message
    assert "--vcluster-host-timeout" in message
