"""The behaviour check: what tests rely on a cluster doing, as one test for an inner run.

RBAC, ServiceAccount tokens, CRDs, admission webhooks, garbage collection of owned objects,
Deployment -> ReplicaSet -> Pod, Job completion, DNS and namespace deletion with finalizers.
:data:`BEHAVIOUR` is the test file (``@VERSION@``, ``@IMAGE@`` and ``@FACTS@`` to fill in; it
needs ``bearer.py`` beside it, :data:`~e2e.stack.BEARER`), which records one fact ``behaviour``;
:func:`assert_behaviour` checks that fact. Used on a cluster made with the plugin's defaults and
on one started from a seed.
"""

from __future__ import annotations

from typing import Any

BEHAVIOUR = """
import copy, json, pathlib, time

import pytest
from bearer import answer_as
from kubernetes import client
from kubernetes.client.exceptions import ApiException

VERSION = "@VERSION@"
IMAGE = "@IMAGE@"
FACTS = pathlib.Path("@FACTS@")
NS = "behaviour"


def record(**fields):
    with FACTS.open("a") as f:
        f.write(json.dumps(fields) + "\\n")


def until(what, check, timeout=120.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s (last seen: {last!r})")


def gone(read):
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def status_as(vcluster, token, call):
    return answer_as(vcluster, token, call)[0]


def pod_spec(command):
    return {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": command}]}


@pytest.mark.vcluster(version=VERSION)
def test_what_tests_rely_on(vcluster):
    api = vcluster.api_client
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    rbac, ext = client.RbacAuthorizationV1Api(api), client.ApiextensionsV1Api(api)
    custom, adm = client.CustomObjectsApi(api), client.AdmissionregistrationV1Api(api)
    seen = {}
    core.create_namespace({"metadata": {"name": NS}})

    # ServiceAccount tokens and RBAC: a token names its ServiceAccount, a Role grants exactly
    # what it lists.
    core.create_namespaced_service_account(NS, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(NS, {"metadata": {"name": "pod-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(NS, {"metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}]})
    token = core.create_namespaced_service_account_token(
        "reader", NS, {"spec": {"expirationSeconds": 600}}).status.token
    review = status_as(vcluster, token, lambda a: seen.__setitem__("whoami",
        client.AuthenticationV1Api(a).create_self_subject_review({}).status.user_info.username))
    seen["rbac"] = {
        "whoami": review,
        "list pods in its namespace": until("the RoleBinding to take effect", lambda: (
            status_as(vcluster, token, lambda a: client.CoreV1Api(a).list_namespaced_pod(NS))
            == 200) and 200),
        "list secrets in its namespace": status_as(
            vcluster, token, lambda a: client.CoreV1Api(a).list_namespaced_secret(NS)),
        "list pods in default": status_as(
            vcluster, token, lambda a: client.CoreV1Api(a).list_namespaced_pod("default")),
    }

    # A CRD becomes Established and serves its objects.
    ext.create_custom_resource_definition({"metadata": {"name": "gadgets.behaviour.dev"},
        "spec": {"group": "behaviour.dev", "scope": "Namespaced",
                 "names": {"kind": "Gadget", "plural": "gadgets"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]}})
    vcluster.wait_for("crd", "gadgets.behaviour.dev")
    def make_gadget():
        try:
            return custom.create_namespaced_custom_object("behaviour.dev", "v1", NS, "gadgets",
                {"apiVersion": "behaviour.dev/v1", "kind": "Gadget", "metadata": {"name": "g1"}})
        except ApiException as exc:
            return None if exc.status == 404 else exc
    until("a Gadget to be accepted", make_gadget)
    gadgets = custom.list_namespaced_custom_object("behaviour.dev", "v1", NS, "gadgets")
    seen["crd"] = [g["metadata"]["name"] for g in gadgets["items"]]

    # An admission webhook is called: one that cannot be reached, with failurePolicy Fail,
    # rejects what it matches.
    adm.create_validating_webhook_configuration({"metadata": {"name": "deny-guarded"},
        "webhooks": [{"name": "deny.behaviour.dev", "admissionReviewVersions": ["v1"],
                      "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 2,
                      "clientConfig": {"service": {"namespace": NS, "name": "nobody", "port": 443}},
                      "objectSelector": {"matchLabels": {"guarded": "yes"}},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["configmaps"]}]}]})
    def rejected():
        try:
            core.create_namespaced_config_map(NS, {"metadata": {
                "generateName": "guarded-", "labels": {"guarded": "yes"}}})
        except ApiException as exc:
            return exc.body if "deny.behaviour.dev" in (exc.body or "") else None
        return None
    seen["webhook"] = until("the webhook to reject a guarded ConfigMap", rejected)[:300]
    adm.delete_validating_webhook_configuration("deny-guarded")

    # Garbage collection of owned objects.
    owner = core.create_namespaced_config_map(NS, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "owned", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
    core.delete_namespaced_config_map("owner", NS)
    vcluster.wait_for("configmap", "owned", namespace=NS, condition="deleted")
    seen["gc"] = gone(lambda: core.read_namespaced_config_map("owned", NS))

    # Deployment -> ReplicaSet -> Pod, Ready.
    apps.create_namespaced_deployment(NS, {"metadata": {"name": "web"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]}}}})
    vcluster.wait_for("deployment", "web", namespace=NS)
    replica_sets = apps.list_namespaced_replica_set(NS, label_selector="app=web").items
    pods = core.list_namespaced_pod(NS, label_selector="app=web").items
    seen["deployment"] = {
        "replicasets": len(replica_sets),
        "pod owned by the replicaset": [
            r.kind for p in pods for r in p.metadata.owner_references or []],
        "ready pods": sum(1 for p in pods if p.status.phase == "Running"),
    }

    # A Job runs to completion; DNS answers from inside a pod.
    lookup = ["sh", "-c", "nslookup kubernetes.default.svc.cluster.local"]
    batch.create_namespaced_job(NS, {"metadata": {"name": "done"}, "spec": {"backoffLimit": 0,
        "template": {"spec": pod_spec(lookup)}}})
    vcluster.wait_for("job", "done", namespace=NS, timeout=180)
    job_pods = core.list_namespaced_pod(NS, label_selector="job-name=done").items
    seen["job"] = {"succeeded": batch.read_namespaced_job("done", NS).status.succeeded,
                   "dns": core.read_namespaced_pod_log(job_pods[0].metadata.name, NS)[-400:]}

    # Namespace deletion waits for a finalizer, then finishes.
    core.create_namespace({"metadata": {"name": "held"}})
    core.create_namespaced_config_map("held", {"metadata": {
        "name": "held", "finalizers": ["behaviour.dev/hold"]}})
    core.delete_namespace("held")
    time.sleep(3)
    phase = core.read_namespace("held").status.phase
    core.patch_namespaced_config_map("held", "held", {"metadata": {"finalizers": None}})
    vcluster.wait_for("namespace", "held", condition="deleted")
    seen["namespace finalizer"] = {"while held": phase,
                                   "after release": gone(lambda: core.read_namespace("held"))}
    record(case="behaviour", **seen)
"""


def assert_behaviour(fact: dict[str, Any]) -> None:
    """The ``behaviour`` fact of a cluster that does everything tests rely on."""
    assert fact["rbac"] == {
        "whoami": 200,
        "list pods in its namespace": 200,
        "list secrets in its namespace": 403,
        "list pods in default": 403,
    }, fact
    assert fact["whoami"] == "system:serviceaccount:behaviour:reader", fact
    assert fact["crd"] == ["g1"], fact
    assert "failed calling webhook" in fact["webhook"], fact
    assert fact["gc"] is True, fact
    assert fact["deployment"] == {
        "replicasets": 1,
        "pod owned by the replicaset": ["ReplicaSet"],
        "ready pods": 1,
    }, fact
    assert fact["job"]["succeeded"] == 1, fact
    dns = fact["job"]["dns"]
    assert "Name:" in dns, fact
    assert dns.count("Address") >= 2, fact  # the server's address, then the answer
    assert fact["namespace finalizer"] == {"while held": "Terminating", "after release": True}
