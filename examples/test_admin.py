"""Cluster-scoped changes a namespace-scoped tenant of a shared cluster cannot make.

Each test gets a fresh vcluster in which it is cluster-admin: it installs a
CustomResourceDefinition and creates an object of the new kind, and it grants a ServiceAccount
read access through a ClusterRole and a ClusterRoleBinding, then asks the API server (a
SubjectAccessReview) whether the grant works. Nothing leaks to other tests: the next test's
vcluster has never seen the CRD or the role.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from pytest_vcluster import VCluster

GROUP = "examples.pytest-vcluster.dev"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
VERSION = "v1"


def widget_crd() -> client.V1CustomResourceDefinition:
    """A namespaced ``Widget`` kind with a small validated spec."""
    spec_schema = client.V1JSONSchemaProps(
        type="object",
        required=["size"],
        properties={
            "size": client.V1JSONSchemaProps(type="integer", minimum=1),
            "color": client.V1JSONSchemaProps(type="string"),
        },
    )
    return client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=CRD_NAME),
        spec=client.V1CustomResourceDefinitionSpec(
            group=GROUP,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(
                kind="Widget", plural=PLURAL, singular="widget", list_kind="WidgetList"
            ),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name=VERSION,
                    served=True,
                    storage=True,
                    schema=client.V1CustomResourceValidation(
                        open_apiv3_schema=client.V1JSONSchemaProps(
                            type="object", properties={"spec": spec_schema}
                        )
                    ),
                )
            ],
        ),
    )


def wait_established(ext: client.ApiextensionsV1Api, timeout: float = 60.0) -> None:
    """Wait until the API server serves the new kind (condition ``Established``)."""
    deadline = time.monotonic() + timeout
    seen = "no conditions yet"
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(CRD_NAME)
        conditions = (crd.status.conditions if crd.status else None) or []
        seen = ", ".join(f"{c.type}={c.status}" for c in conditions) or seen
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(1)
    raise AssertionError(f"CRD {CRD_NAME} not established after {timeout:g}s: {seen}")


def test_install_crd_and_create_custom_object(vcluster: VCluster) -> None:
    ext = client.ApiextensionsV1Api(vcluster.api_client)
    custom = client.CustomObjectsApi(vcluster.api_client)

    ext.create_custom_resource_definition(widget_crd())
    wait_established(ext)
    widget: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "blue-one"},
        "spec": {"size": 3, "color": "blue"},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget)

    stored = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "blue-one")
    assert isinstance(stored, dict)
    assert stored["spec"] == {"size": 3, "color": "blue"}
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert isinstance(listed, dict)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["blue-one"]


def can(authz: client.AuthorizationV1Api, user: str, verb: str) -> bool:
    """Whether ``user`` may ``verb`` widgets in namespace ``default``, as the API server says."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                group=GROUP, resource=PLURAL, verb=verb, namespace="default"
            ),
        )
    )
    result = authz.create_subject_access_review(review)
    return bool(result.status and result.status.allowed)


def wait_allowed(authz: client.AuthorizationV1Api, user: str, verb: str) -> None:
    """Wait for a new binding to reach the RBAC authorizer (it watches roles, with a lag)."""
    deadline = time.monotonic() + 30.0
    while not can(authz, user, verb):
        if time.monotonic() > deadline:
            raise AssertionError(f"{user} still may not {verb} {PLURAL} after 30s")
        time.sleep(0.5)


def test_cluster_role_and_binding(vcluster: VCluster) -> None:
    core = client.CoreV1Api(vcluster.api_client)
    rbac = client.RbacAuthorizationV1Api(vcluster.api_client)
    authz = client.AuthorizationV1Api(vcluster.api_client)
    user = "system:serviceaccount:default:widget-reader"
    core.create_namespaced_service_account(
        "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="widget-reader"))
    )
    assert not can(authz, user, "list")

    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name="widget-reader"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[GROUP], resources=[PLURAL], verbs=["get", "list", "watch"]
                )
            ],
        )
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="widget-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="widget-reader"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="ServiceAccount", name="widget-reader", namespace="default"
                )
            ],
        )
    )

    wait_allowed(authz, user, "list")
    assert can(authz, user, "get")
    assert not can(authz, user, "delete")
