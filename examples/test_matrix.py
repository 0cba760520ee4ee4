"""Versions, the per-worker vcluster and the factory.

* ``test_server_reports_requested_minor`` runs once per listed version (ids ``[k8s-1.33]`` and
  ``[k8s-1.34]``), each in a vcluster of that Kubernetes version.
* ``test_worker_cluster`` shares one vcluster among all tests of a process (xdist worker):
  cheap, but tests must not depend on a pristine cluster, so each one works in a namespace of
  its own.
* ``test_factory_clusters_are_isolated`` makes two vclusters in one test and shows that what
  happens in one is invisible in the other.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster import VCluster


@pytest.mark.vcluster(versions=["1.33", "1.34"])
def test_server_reports_requested_minor(vcluster: VCluster) -> None:
    requested = vcluster.requested_version
    assert requested is not None
    # The API server reports e.g. "v1.33.4" for a vcluster asked for as "1.33".
    assert vcluster.version.startswith(f"v{requested.minor_key}."), vcluster.version


@pytest.mark.parametrize("team", ["red", "green", "blue"])
def test_worker_cluster(vcluster_worker: VCluster, team: str) -> None:
    core = client.CoreV1Api(vcluster_worker.api_client)
    namespace = f"team-{team}"
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels={"team": team}))
    try:
        core.create_namespace(body)
    except ApiException as exc:
        # A worker vcluster may be a paused one resumed from an earlier run.
        if exc.status != 409:
            raise

    found = core.list_namespace(label_selector=f"team={team}").items
    assert [ns.metadata.name for ns in found if ns.metadata] == [namespace]


def test_factory_clusters_are_isolated(vcluster_factory: Callable[..., VCluster]) -> None:
    first = vcluster_factory()
    second = vcluster_factory()
    assert first.namespace != second.namespace
    core_first = client.CoreV1Api(first.api_client)
    core_second = client.CoreV1Api(second.api_client)

    core_first.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name="only-in-first"))
    )

    assert core_first.read_namespace("only-in-first").metadata is not None
    with pytest.raises(ApiException) as missing:
        core_second.read_namespace("only-in-first")
    assert missing.value.status == 404
