"""pytest-vcluster on the real stack: inner pytest runs (pytester) against a real kind host.

Each scenario writes a small test suite, runs it in a subprocess with the stack's options, and
checks from the outside what the plugin left on the host. The inner tests record what they saw
as JSON lines, so the assertions here are about facts, not about the inner run's exit code alone.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import BEARER, Stack

pytestmark = pytest.mark.e2e

HOST = "pvc-e2e"
INNER_TIMEOUT = 1200

RECORDER = """
import json, os, pathlib

def record(**fields):
    path = pathlib.Path({out!r})
    with path.open("a") as f:
        f.write(json.dumps(fields) + "\\n")
"""


@pytest.fixture(scope="module")
def host_kubeconfig(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One kind host for these scenarios, made with the kind CLI so the plugin reuses it."""
    kubeconfig = tmp_path_factory.mktemp("e2e-host") / "kubeconfig"
    with stack.kind_host(HOST, kubeconfig):
        yield kubeconfig


class Scenario:
    """An inner suite: its files, its recorded facts and a view of the host."""

    def __init__(self, pytester: pytest.Pytester, stack: Stack, kubeconfig: Path) -> None:
        self.pytester = pytester
        self.stack = stack
        self.kubeconfig = kubeconfig
        self.out = pytester.path / "facts.jsonl"

    def write(self, body: str) -> None:
        self.pytester.makepyfile(
            test_inner=RECORDER.format(out=str(self.out)) + textwrap.dedent(body)
        )

    def run(self, *args: str, host: str = HOST) -> pytest.RunResult:
        self.out.unlink(missing_ok=True)
        return self.pytester.runpytest_subprocess(
            *self.stack.plugin_args(),
            f"--vcluster-host-name={host}",
            "-p",
            "no:cacheprovider",
            "-rA",
            *args,
            timeout=INNER_TIMEOUT,
        )

    def facts(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        kubectl = self.stack.tool("kubectl")
        return self.stack.run(kubectl, "--kubeconfig", str(self.kubeconfig), *args, check=False)

    def namespace_exists(self, namespace: str) -> bool:
        return self.kubectl("get", "namespace", namespace).returncode == 0

    def namespaces_gone(self, namespaces: list[str], timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self.namespace_exists(ns) for ns in namespaces):
                return True
            time.sleep(2)
        return False


@pytest.fixture
def scenario(pytester: pytest.Pytester, stack: Stack, host_kubeconfig: Path) -> Scenario:
    return Scenario(pytester, stack, host_kubeconfig)


def assert_outcomes(result: pytest.RunResult, **outcomes: int) -> None:
    try:
        result.assert_outcomes(**outcomes)
    except AssertionError:
        print("\n".join(result.outlines[-80:]))
        raise


def test_fresh_vcluster_per_test_is_isolated_and_deleted(scenario: Scenario) -> None:
    scenario.write("""
        from kubernetes import client

        def test_first(vcluster):
            core = client.CoreV1Api(vcluster.api_client)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="only-in-first")))
            record(test="first", name=vcluster.name, namespace=vcluster.namespace)

        def test_second(vcluster):
            core = client.CoreV1Api(vcluster.api_client)
            names = [ns.metadata.name for ns in core.list_namespace().items]
            record(test="second", name=vcluster.name, namespace=vcluster.namespace, names=names)
            assert "only-in-first" not in names
            assert "default" in names
    """)
    # A fresh cluster per test (a recycled one is tested below).
    result = scenario.run("--vcluster-recycle=false")
    assert_outcomes(result, passed=2)
    facts = {f["test"]: f for f in scenario.facts()}
    assert facts["first"]["name"] != facts["second"]["name"]
    assert scenario.namespaces_gone([facts["first"]["namespace"], facts["second"]["namespace"]])
    result.stdout.fnmatch_lines(
        [
            f"kind host '{HOST}': existed before pytest-vcluster used it; left in place",
            "vclusters: created 2*deleted 2*",
            "create/resume to ready: median*",
        ]
    )


def test_worker_vcluster_is_shared_by_the_tests_of_a_worker(scenario: Scenario) -> None:
    scenario.write("""
        from kubernetes import client

        def test_writes(vcluster_worker):
            core = client.CoreV1Api(vcluster_worker.api_client)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shared-state")))
            record(test="writes", name=vcluster_worker.name, namespace=vcluster_worker.namespace)

        def test_reads(vcluster_worker):
            core = client.CoreV1Api(vcluster_worker.api_client)
            core.read_namespace("shared-state")
            record(test="reads", name=vcluster_worker.name, namespace=vcluster_worker.namespace)
    """)
    result = scenario.run()
    assert_outcomes(result, passed=2)
    facts = {f["test"]: f for f in scenario.facts()}
    assert facts["writes"]["name"] == facts["reads"]["name"]
    assert scenario.namespaces_gone([facts["reads"]["namespace"]])


def test_two_versions_in_one_run_report_their_own_server_version(
    scenario: Scenario, stack: Stack
) -> None:
    minors = sorted(stack.version_map)[:2]
    scenario.write(f"""
        import pytest

        @pytest.mark.vcluster(versions={minors!r})
        def test_version(vcluster, request):
            requested = str(vcluster.requested_version)
            record(test=request.node.name, version=vcluster.version, requested=requested)
    """)
    result = scenario.run("-v")
    assert_outcomes(result, passed=2)
    result.stdout.fnmatch_lines(
        [f"*test_version?k8s-{minors[0]}? PASSED*", f"*test_version?k8s-{minors[1]}? PASSED*"]
    )
    seen = {f["test"]: f["version"] for f in scenario.facts()}
    assert seen == {f"test_version[k8s-{m}]": stack.version_map[m] for m in minors}


def test_pause_on_teardown_then_the_next_run_resumes_it(scenario: Scenario) -> None:
    scenario.write("""
        from kubernetes import client

        def test_state_survives(vcluster):
            core = client.CoreV1Api(vcluster.api_client)
            existing = [cm.metadata.name for cm in core.list_namespaced_config_map("default").items]
            found = "from-first-run" in existing
            if not found:
                core.create_namespaced_config_map("default", client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name="from-first-run")))
            record(name=vcluster.name, namespace=vcluster.namespace, reused=vcluster.reused,
                   found=found)
    """)
    first = scenario.run("--vcluster-teardown=pause")
    assert_outcomes(first, passed=1)
    [before] = scenario.facts()
    assert before["reused"] is False
    assert before["found"] is False
    sts = json.loads(
        scenario.kubectl(
            "-n", before["namespace"], "get", "statefulset", before["name"], "-o", "json"
        ).stdout
    )
    assert sts["spec"]["replicas"] == 0
    first.stdout.fnmatch_lines(["*vclusters: created 1*paused 1*"])

    second = scenario.run("--vcluster-teardown=delete")
    assert_outcomes(second, passed=1)
    [after] = scenario.facts()
    assert after["name"] == before["name"]
    assert after["reused"] is True
    assert after["found"] is True
    second.stdout.fnmatch_lines(["*vclusters: *resumed 1*deleted 1*"])
    assert scenario.namespaces_gone([after["namespace"]])


def test_keep_on_failure_keeps_only_the_failing_tests_vcluster(scenario: Scenario) -> None:
    scenario.write("""
        def test_passes(vcluster):
            record(test="passes", name=vcluster.name, namespace=vcluster.namespace)

        def test_fails(vcluster):
            record(test="fails", name=vcluster.name, namespace=vcluster.namespace)
            assert False, "deliberate failure"
    """)
    # Created the way a user of the CLI would: `vcluster create` stays supported.
    result = scenario.run("--vcluster-teardown=keep-on-failure", "--vcluster-create-with=cli")
    assert_outcomes(result, passed=1, failed=1)
    facts = {f["test"]: f for f in scenario.facts()}
    kept = facts["fails"]["namespace"]
    try:
        assert scenario.namespaces_gone([facts["passes"]["namespace"]])
        assert scenario.namespace_exists(kept)
        pods = json.loads(
            scenario.kubectl("-n", kept, "get", "pods", "-l", "app=vcluster", "-o", "json").stdout
        )
        assert [p["status"]["phase"] for p in pods["items"]] == ["Running"]
    finally:
        scenario.kubectl("delete", "namespace", kept, "--wait=false")


def test_xdist_workers_share_one_host_created_once(scenario: Scenario, stack: Stack) -> None:
    host = "pvc-e2e-xdist"
    stack.run(stack.tool("kind"), "delete", "cluster", "--name", host, timeout=180)
    scenario.write("""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_worker(vcluster_worker, vcluster_host, i):
            record(worker=os.environ.get("PYTEST_XDIST_WORKER"), name=vcluster_worker.name,
                   host=vcluster_host.name, host_created=vcluster_host.created,
                   server=vcluster_worker.version)
    """)
    try:
        result = scenario.run("-n", "2", host=host)
        assert_outcomes(result, passed=4)
    finally:
        clusters = stack.run(stack.tool("kind"), "get", "clusters").stdout.split()
        if host in clusters:
            stack.run(
                stack.tool("kind"),
                "delete",
                "cluster",
                "--name",
                host,
                timeout=180,
                check=False,
            )
    facts = scenario.facts()
    workers = {f["worker"] for f in facts}
    assert workers == {"gw0", "gw1"}
    names_by_worker = {w: {f["name"] for f in facts if f["worker"] == w} for w in workers}
    assert all(len(names) == 1 for names in names_by_worker.values())
    assert names_by_worker["gw0"] != names_by_worker["gw1"]
    assert {f["host"] for f in facts} == {host}
    # The controller deletes a host this run created once every worker is done.
    assert host not in clusters
    # One worker created the host; the controller, holding it for the workers, deleted it.
    result.stdout.fnmatch_lines(
        [
            f"kind host '{host}': created by this run in *s; deleted (last user)",
            "*vclusters: created 2*",
        ]
    )


LOOKAHEAD_SUITE = """
    import time

    import pytest
    from kubernetes import client

    @pytest.mark.parametrize("i", range({count}))
    def test_work(vcluster, i):
        core = client.CoreV1Api(vcluster.api_client)
        core.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="work"), data={{"i": str(i)}}))
        assert core.read_namespaced_config_map("work", "default").data == {{"i": str(i)}}
        # About as long as a small real test; the next test's cluster starts meanwhile.
        time.sleep({work})
        record(name=vcluster.name, namespace=vcluster.namespace)
"""


def records_of(scenario: Scenario, path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_lookahead_hands_each_test_a_ready_cluster_and_leaves_none(scenario: Scenario) -> None:
    scenario.write(LOOKAHEAD_SUITE.format(count=4, work=12))
    records = scenario.pytester.path / "records.json"
    # Lookahead alone: recycling would hand some tests the cluster of an earlier one.
    result = scenario.run(f"--vcluster-records={records}", "--vcluster-recycle=false")
    assert_outcomes(result, passed=4)
    data = records_of(scenario, records)
    waits = sorted(setup["wait_seconds"] for setup in data["setups"])
    print("setup waits:", waits, "clusters:", [c["ready_seconds"] for c in data["clusters"]])
    assert [setup["source"] for setup in data["setups"]].count("prepared") >= 3
    assert waits[len(waits) // 2] < 1.0  # the median test found its cluster ready
    assert len(data["clusters"]) == 4  # no cluster made for nobody
    assert not [t for t in data["teardowns"] if t["error"]]
    assert scenario.namespaces_gone([c["namespace"] for c in data["clusters"]], timeout=60)
    phases = [phase for phase, _ in data["clusters"][0]["phases"]]
    assert phases == [
        "objects", "scheduled", "initialized", "kubeconfig", "readyz", "service-account", "coredns"
    ]  # fmt: skip


def test_lookahead_under_xdist_makes_at_most_one_spare_per_worker(scenario: Scenario) -> None:
    scenario.write(LOOKAHEAD_SUITE.format(count=4, work=4))
    records = scenario.pytester.path / "records.json"
    result = scenario.run("-n", "2", f"--vcluster-records={records}", "--vcluster-recycle=false")
    assert_outcomes(result, passed=4)
    data = records_of(scenario, records)
    assert {setup["worker"] for setup in data["setups"]} == {"gw0", "gw1"}
    assert len(data["clusters"]) <= 4 + 2
    assert scenario.namespaces_gone([c["namespace"] for c in data["clusters"]], timeout=60)


# -- recycling -------------------------------------------------------------------------------

RECYCLE_SUITE = """
    import json

    from bearer import list_status, probe_account, probe_token
    from pytest_vcluster.cluster.inventory import diff, take_inventory

    IMAGE = {image!r}
    WEBHOOK = {{
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {{"name": "refuses-config-maps"}},
        "webhooks": [{{
            "name": "refuse.e2e.example.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            # Its service never exists: with Fail, every ConfigMap write in t1 is refused, the
            # reset's own deletes included unless the webhook goes first.
            "failurePolicy": "Fail",
            "clientConfig": {{"service": {{"name": "nobody", "namespace": "t1", "port": 443}}}},
            "namespaceSelector": {{"matchLabels": {{"kubernetes.io/metadata.name": "t1"}}}},
            "rules": [{{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"],
                        "resources": ["configmaps"]}}],
        }}],
    }}
    MANIFESTS = '''
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {{name: widgets.e2e.example.com}}
    spec:
      group: e2e.example.com
      scope: Namespaced
      names: {{plural: widgets, singular: widget, kind: Widget}}
      versions:
        - name: v1
          served: true
          storage: true
          schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {{name: t1}}
    ---
    apiVersion: e2e.example.com/v1
    kind: Widget
    metadata: {{name: w, namespace: t1}}
    spec: {{size: 3}}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {{name: held, namespace: t1, finalizers: [e2e.example.com/hold]}}
    data: {{a: b}}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: web, namespace: t1}}
    spec:
      replicas: 1
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata: {{labels: {{app: web}}}}
        spec:
          terminationGracePeriodSeconds: 30
          containers:
            - name: web
              image: ''' + IMAGE + '''
              imagePullPolicy: IfNotPresent
    ---
    apiVersion: v1
    kind: Service
    metadata: {{name: web, namespace: t1}}
    spec:
      selector: {{app: web}}
      ports: [{{port: 80, targetPort: 8080}}]
    '''

    def can_list_with(vcluster, token):
        status, body = list_status(vcluster, token)
        if status != 200:
            record(test="denied", status=status, body=body)  # 403 would be a leak
        return status

    def test_leaves_a_mess(vcluster):
        vcluster.apply(MANIFESTS)
        vcluster.apply(probe_account("t1"))
        vcluster.apply(WEBHOOK)
        vcluster.wait_for("deployment", "web", namespace="t1", timeout=120)
        token = probe_token(vcluster.api_client, "t1")
        assert can_list_with(vcluster, token) == 200
        record(test="mess", name=vcluster.name, namespace=vcluster.namespace,
               recycled=vcluster.recycled, token=token)

    def test_gets_it_back_as_new(vcluster):
        before = take_inventory(vcluster.api_client, timeout=60)
        found = diff(vcluster._baseline.inventory, before)
        record(test="clean", name=vcluster.name, namespace=vcluster.namespace,
               recycled=vcluster.recycled, tests_before=vcluster.tests_before,
               drift=found.reasons(), host_baseline={{
                   k: sorted(v) for k, v in vcluster._baseline.host.names.items()}})
        assert found.clean, found.reasons()
        # Same name, new identity: the first test's token is refused.
        vcluster.apply('''
    apiVersion: v1
    kind: Namespace
    metadata: {{name: t1}}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {{name: probe, namespace: t1}}
    ''')
        first = [json.loads(line) for line in open({out!r})][0]
        assert can_list_with(vcluster, first["token"]) == 401
"""


def host_names(scenario: Scenario, namespace: str) -> dict[str, list[str]]:
    found = {}
    for plural in ("pods", "services", "persistentvolumeclaims"):
        out = scenario.kubectl("get", plural, "-n", namespace, "-o", "name").stdout
        found[plural] = sorted(line.split("/", 1)[1] for line in out.split())
    return found


def test_a_recycled_cluster_is_indistinguishable_from_a_fresh_one(
    scenario: Scenario, stack: Stack
) -> None:
    scenario.write(RECYCLE_SUITE.format(image=stack.workload_image, out=str(scenario.out)))
    scenario.pytester.makepyfile(bearer=BEARER)
    records = scenario.pytester.path / "records.json"
    # No lookahead: the second test takes the first one's cluster, not one made meanwhile.
    result = scenario.run("--vcluster-lookahead=0", f"--vcluster-records={records}")
    facts = {f["test"]: f for f in scenario.facts()}
    clean = facts.get("clean", {})
    print("drift:", clean.get("drift"))
    assert_outcomes(result, passed=2)
    data = records_of(scenario, records)
    print("resets:", data["resets"])
    assert (clean["name"], clean["recycled"], clean["tests_before"]) == (
        facts["mess"]["name"],
        True,
        1,
    )
    assert [s["source"] for s in data["setups"]] == ["created", "recycled"]
    [reset] = data["resets"]
    assert reset["clean"] is True
    # The host namespace was checked by the reset; after the run it is gone with the cluster.
    assert clean["host_baseline"]["pods"]  # the control plane and CoreDNS
    assert scenario.namespaces_gone([clean["namespace"]], timeout=120)
    result.stdout.fnmatch_lines(
        [
            "vclusters: created 1, resumed 0, recycled 1, *deleted 1*",
            "*1 recycled)",
            "resets for recycling: p50 *s over 1, then held p50 1?.?s *; 0 not proven clean*",
        ]
    )


def test_a_test_that_changes_the_baseline_makes_the_next_cluster_fresh(
    scenario: Scenario,
) -> None:
    scenario.write("""
        from kubernetes import client

        def test_edits_default_service_account(vcluster):
            client.CoreV1Api(vcluster.api_client).patch_namespaced_service_account(
                "default", "default", {"metadata": {"labels": {"touched": "yes"}}})
            record(test="sa", name=vcluster.name)

        def test_edits_a_kube_system_config_map(vcluster):
            record(test="cm", name=vcluster.name, recycled=vcluster.recycled)
            core = client.CoreV1Api(vcluster.api_client)
            # Not kube-root-ca.crt: its controller rewrites it, so its changes are ignored.
            first = next(cm for cm in core.list_namespaced_config_map("kube-system").items
                         if cm.metadata.name != "kube-root-ca.crt")
            core.patch_namespaced_config_map(
                first.metadata.name, "kube-system", {"metadata": {"labels": {"touched": "yes"}}})

        def test_last(vcluster):
            record(test="last", name=vcluster.name, recycled=vcluster.recycled)
    """)
    records = scenario.pytester.path / "records.json"
    result = scenario.run("--vcluster-lookahead=0", f"--vcluster-records={records}")
    assert_outcomes(result, passed=3)
    facts = {f["test"]: f for f in scenario.facts()}
    assert len({facts[t]["name"] for t in ("sa", "cm", "last")}) == 3
    assert facts["cm"]["recycled"] is False
    assert facts["last"]["recycled"] is False
    data = records_of(scenario, records)
    reasons = [r["reasons"] for r in data["resets"]]
    print("resets:", data["resets"])
    assert [r["clean"] for r in data["resets"]] == [False, False]
    assert any("ServiceAccount default/default" in line for line in reasons[0])
    assert any("ConfigMap kube-system/" in line for line in reasons[1])
    assert [s["source"] for s in data["setups"]] == ["created"] * 3


WARM_SUITE = """
import pathlib
from kubernetes import client
from bearer import list_status, probe_account, probe_token

TOKEN = pathlib.Path({token!r})
NAMESPACE = {{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "w1"}}}}

def test_uses_a_cluster(vcluster):
    core = client.CoreV1Api(vcluster.api_client)
    left = "w1" in [ns.metadata.name for ns in core.list_namespace().items]
    vcluster.apply(NAMESPACE)
    vcluster.apply(probe_account("w1"))
    old = TOKEN.read_text() if TOKEN.exists() else None
    old_status = list_status(vcluster, old)[0] if old else None
    token = probe_token(vcluster.api_client, "w1")
    TOKEN.write_text(token)
    record(name=vcluster.name, namespace=vcluster.namespace, warm=vcluster.warm,
           recycled=vcluster.recycled, tests_before=vcluster.tests_before, left=left,
           old_status=old_status, new_status=list_status(vcluster, token)[0])
"""


def test_a_warm_cluster_parked_by_one_run_is_adopted_proven_by_the_next(
    scenario: Scenario,
) -> None:
    token = scenario.pytester.path / "token"
    scenario.write(WARM_SUITE.format(token=str(token)))
    scenario.pytester.makepyfile(bearer=BEARER)
    records = scenario.pytester.path / "records.json"
    warm = ("--vcluster-warm-pool=1", "--vcluster-lookahead=0", f"--vcluster-records={records}")

    first = scenario.run(*warm)
    assert_outcomes(first, passed=1)
    [made] = scenario.facts()
    assert (made["warm"], made["recycled"], made["new_status"]) == (False, False, 200)
    first.stdout.fnmatch_lines(["vclusters: created 1, *deleted 0*parked 1"])
    labels = json.loads(
        scenario.kubectl("get", "namespace", made["namespace"], "-o", "json").stdout
    )["metadata"]["labels"]
    assert labels["pytest-vcluster/state"] == "warm"
    baseline = scenario.kubectl("-n", made["namespace"], "get", "configmap",
                                "pytest-vcluster-baseline")  # fmt: skip
    assert baseline.returncode == 0, baseline.stderr

    try:
        # A claimer waits at most 10 s for the token caches (parked 16.5 s before it is
        # usable): a moment here, so that the second run adopts it and waits out the rest.
        time.sleep(6)
        second = scenario.run(*warm)
        assert_outcomes(second, passed=1)
        [adopted] = scenario.facts()
        data = records_of(scenario, records)
        print("adopted:", adopted, "setups:", data["setups"], "clusters:", data["clusters"])
        assert adopted["name"] == made["name"]
        assert (adopted["warm"], adopted["recycled"], adopted["tests_before"]) == (True, True, 1)
        assert adopted["left"] is False  # the first run's namespace is gone
        # The first run's token is refused, though an account of the same name exists again.
        assert adopted["old_status"] == 401
        assert [s["source"] for s in data["setups"]] == ["warm"]
        [cluster] = data["clusters"]
        assert cluster["event"] == "adopted"
        # Connected, the caches waited out, the reset's proof: the phases an adoption has.
        assert [phase for phase, _ in cluster["phases"]][-1] == "proven"
        second.stdout.fnmatch_lines(
            ["vclusters: created 0, *adopted 1, parked 1", "*1 adopted warm)"]
        )

        # The warm pool off (the default): a run neither adopts nor touches warm clusters.
        third = scenario.run("--vcluster-lookahead=0")
        assert_outcomes(third, passed=1)
        [fresh] = scenario.facts()
        assert fresh["name"] != made["name"]
        assert fresh["warm"] is False
        third.stdout.fnmatch_lines(["vclusters: created 1, *deleted 1, kept 0, failed 0"])
        assert scenario.namespaces_gone([fresh["namespace"]], timeout=120)
        assert scenario.namespace_exists(made["namespace"])
    finally:
        scenario.kubectl("delete", "namespace", made["namespace"], "--wait=false")
    assert scenario.namespaces_gone([made["namespace"]], timeout=120)
