"""Diagnostics in reports through pytester: sections on failures only, JUnit XML properties.

The conftest fakes the cluster manager (no host, no cluster) and serves the host and virtual
Kubernetes APIs from one local HTTP stand-in: every namespace has a running control-plane
pod, and the virtual cluster has one pod that cannot pull its image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CONFTEST = """
import http.server
import json
import threading
from pathlib import Path

import pytest
from kubernetes import client

from pytest_vcluster.core.errors import StartFailedError
from pytest_vcluster.cluster.handle import VCluster


def listing(items):
    return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})


def pod(name, namespace, labels, reason=None):
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    status = {"name": "syncer" if not reason else "main", "image": "i", "imageID": "",
              "ready": not reason, "restartCount": 0, "state": state}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "status": {"phase": "Pending" if reason else "Running",
                       "containerStatuses": [status]}}


class API(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[-1] == "log":
            body = "syncer started\\n"
        elif parts[-1] == "pods" and len(parts) == 5:
            ns = parts[3]
            body = listing([pod(ns + "-0", ns, {"app": "vcluster", "release": ns})])
        elif parts == ["api", "v1", "pods"]:
            body = listing([pod("broken", "default", {}, "ErrImageNeverPull")])
        else:
            body = listing([])
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class FakeManager:
    def __init__(self, host_api):
        self.host_api = host_api
        self.count = 0

    def create(self, spec, *, teardown_on_error, prepared=False):
        if spec.values.get("fail"):
            raise StartFailedError("control plane in namespace pv-broken-1: pod crashed")
        self.count += 1
        name = f"pv-vc{self.count}"
        return VCluster(name=name, namespace=name, version="v1.33.4",
                        requested_version=spec.version, kubeconfig=Path("/dev/null"),
                        api_client=self.host_api, spec_hash=spec.spec_hash,
                        ready_seconds=2.5)

    def finish(self, handle, action):
        pass

    def can_recycle(self, handle):
        return False

    def parks(self, spec):
        return False


@pytest.fixture(scope="session")
def _vcluster_manager():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), API)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{server.server_port}"))
    yield FakeManager(api)
    api.close()
    server.shutdown()
    server.server_close()
"""


def properties(junit: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(junit).getroot()  # noqa: S314 - written by the inner run
    return {
        str(case.get("name")): {
            p.get("name", ""): p.get("value", "") for p in case.iter("property")
        }
        for case in root.iter("testcase")
    }


def test_a_failing_test_gets_a_section_and_a_bundle_a_passing_one_none(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_suite="""
        def test_passes(vcluster):
            pass

        def test_fails(vcluster):
            assert False, "boom"
        """
    )
    bundle = pytester.path / "bundle"
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(
        "-rA",
        f"--vcluster-diagnostics-dir={bundle}",
        f"--junitxml={junit}",
        "--vcluster-lookahead=0",  # clusters are named in the order the tests run
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- vcluster pv-vc2 -*",
            "vcluster pv-vc2 in host namespace pv-vc2: server v1.33.4, created, ready in 2.5s",
            "control plane (1 pod(s) in pv-vc2):",
            "  pv-vc2-0 Running 1/1 ready, restarts 0",
            "virtual pods: 1, 1 failing:",
            "  default/broken Pending 0/1 ready, restarts 0: main: ErrImageNeverPull",
            "syncer log (1 last lines):",
            "  syncer started",
            f"bundle: {bundle}/test_suite.py_test_fails/pv-vc2 (*",
        ]
    )
    result.stdout.no_fnmatch_line("*- vcluster pv-vc1 -*")
    assert (bundle / "test_suite.py_test_fails" / "pv-vc2" / "summary.txt").is_file()
    assert not (bundle / "test_suite.py_test_passes").exists()

    found = properties(junit)
    for test, name in (("test_passes", "pv-vc1"), ("test_fails", "pv-vc2")):
        assert found[test] == {
            "vcluster_name": name,
            "vcluster_namespace": name,
            "vcluster_version": "v1.33.4",
            "vcluster_ready_seconds": "2.5",
            "vcluster_reused": "False",
        }


def test_every_cluster_of_a_test_is_reported_and_numbered(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        def test_two(vcluster, vcluster_factory):
            vcluster_factory()
            assert False
        """
    )
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--junitxml={junit}", "--vcluster-lookahead=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- vcluster pv-vc1 -*", "*- vcluster pv-vc2 -*"])
    names = {k: v for k, v in properties(junit)["test_two"].items() if k.endswith("name")}
    assert names == {"vcluster_name": "pv-vc1", "vcluster_1_name": "pv-vc2"}


def test_a_failed_start_says_where_its_namespace_went(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(values={"fail": True})
        def test_broken_start(vcluster):
            pass
        """
    )
    result = pytester.runpytest("--vcluster-lookahead=0")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*StartFailedError: control plane in namespace pv-broken-1: pod crashed",
            "*- vcluster pv-broken-1 -*",
            "the vcluster failed to start and its namespace pv-broken-1 is no longer on the host*",
        ]
    )


def test_shared_worker_cluster_is_reported_too(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        def test_shared(vcluster_worker):
            assert False
        """
    )
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- vcluster pv-vc1 -*", "vcluster pv-vc1 in host namespace*"])
    assert properties(junit)["test_shared"]["vcluster_name"] == "pv-vc1"
