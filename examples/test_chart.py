"""Test a Helm chart the way its author would: install it, reach it, read it back, upgrade it.

The chart is ``examples/charts/hello``: a Deployment whose index page is a greeting kept in a
ConfigMap, a Service in front of it and a ServiceAccount. Each test run installs it into a
fresh vcluster, so the chart's cluster-wide effects (and a failed install) touch nothing else.
``pytest --vcluster-versions=all examples/test_chart.py`` runs it once per Kubernetes version
the environment serves.

The image comes from the same environment variables as ``test_workload.py``:

* ``EXAMPLE_HTTP_IMAGE``: default ``nginx:1.27-alpine``; the offline stack's image is
  ``pytest-vcluster/workload:1`` (busybox ``httpd``);
* ``EXAMPLE_HTTP_PORT``: the port the image serves HTTP on; default 80 (8080 for the offline
  stack's image);
* ``EXAMPLE_HTTP_ROOT``: the directory the image serves, where the chart mounts the greeting;
  default ``/usr/share/nginx/html`` for an nginx image, else ``/www`` (the stack's image).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pytest_vcluster import VCluster

IMAGE = os.environ.get("EXAMPLE_HTTP_IMAGE", "nginx:1.27-alpine")
PORT = int(os.environ.get("EXAMPLE_HTTP_PORT", "80"))
WEB_ROOT = os.environ.get(
    "EXAMPLE_HTTP_ROOT", "/usr/share/nginx/html" if "nginx" in IMAGE else "/www"
)
CHART = Path(__file__).parent / "charts" / "hello"
RELEASE = "hello"
NAMESPACE = "hello"
SERVICE_PORT = 80


def values(greeting: str) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "containerPort": PORT,
        "webRoot": WEB_ROOT,
        "greeting": greeting,
    }


def get_page(vcluster: VCluster, expected: str, timeout: float = 30.0) -> str:
    """GET ``/`` through the Service until it serves ``expected``, or the deadline passes.

    Right after a rollout, a connection may still land on an old pod that is shutting down,
    so an old page is retried for a short while; what was last seen is returned either way.
    """
    deadline = time.monotonic() + timeout
    page = "nothing yet"
    while True:
        with vcluster.port_forward(f"svc/{RELEASE}", SERVICE_PORT, namespace=NAMESPACE) as web:
            try:
                # S310: the URL is Forward.url's http://127.0.0.1:PORT/, no user-given scheme.
                with urllib.request.urlopen(web.url("/"), timeout=10) as response:  # noqa: S310
                    page = response.read().decode().strip()
            except (urllib.error.URLError, ConnectionError) as exc:
                page = f"no answer: {exc}"
        if page == expected or time.monotonic() > deadline:
            return page
        time.sleep(1)


def test_install_serve_and_upgrade(vcluster: VCluster) -> None:
    # helm install --wait: it returns once the pods are Ready (and creates the namespace).
    release = vcluster.helm_install(
        CHART, release=RELEASE, namespace=NAMESPACE, values=values("Hello, tester!")
    )
    assert release == RELEASE

    deployment = vcluster.wait_for("deployment", RELEASE, namespace=NAMESPACE)
    assert deployment["status"]["availableReplicas"] == 1
    assert get_page(vcluster, "Hello, tester!") == "Hello, tester!"

    # The values reached the objects the chart rendered.
    image = vcluster.kubectl(
        "get", "deployment", RELEASE, "-n", NAMESPACE,
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    )  # fmt: skip
    assert image == IMAGE
    service_account = vcluster.kubectl(
        "get", "serviceaccount", RELEASE, "-n", NAMESPACE,
        "-o", "jsonpath={.automountServiceAccountToken}",
    )  # fmt: skip
    assert service_account == "false"

    # Both servers log each request they answered with its status (nginx's access log,
    # busybox httpd -v's "response:200"); the readiness probe alone makes some.
    logs = vcluster.logs(f"deployment/{RELEASE}", namespace=NAMESPACE)
    assert re.search(r"\b200\b", logs), logs[-2000:]

    # An upgrade with a new greeting changes the ConfigMap, and the chart's checksum
    # annotation rolls the pods onto it.
    vcluster.helm(
        "upgrade", RELEASE, CHART, "--namespace", NAMESPACE, "--reuse-values",
        "--set", "greeting=Hello again", "--wait",
    )  # fmt: skip
    vcluster.wait_for("deployment", RELEASE, namespace=NAMESPACE)
    assert get_page(vcluster, "Hello again") == "Hello again"
    history = json.loads(vcluster.helm("history", RELEASE, "--namespace", NAMESPACE, "-o", "json"))
    assert [entry["status"] for entry in history] == ["superseded", "deployed"], history
