"""Settings of the offline stack (written by ``.ci/stack/up``) for the end-to-end tier."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SETTINGS_ENV = "PYTEST_VCLUSTER_STACK"
DEFAULT_SETTINGS = Path.home() / ".cache" / "pytest-vcluster-stack" / "stack.json"


class StackMissingError(RuntimeError):
    """The stack settings file is absent: the e2e tier cannot run."""


@dataclass(frozen=True)
class Stack:
    node_image: str
    chart_dir: str
    values_file: str
    version_map: dict[str, str]
    path_dir: str
    workload_image: str
    host_kubernetes_version: str
    #: The plugin's settings for this stack (PYTEST_VCLUSTER_SETTINGS_FILE), next to stack.json.
    plugin_settings_file: Path

    @property
    def minors(self) -> list[str]:
        return list(self.version_map)

    def env(self) -> dict[str, str]:
        """The process environment with the stack's tools first on PATH."""
        env = dict(os.environ)
        env["PATH"] = self.path_dir + os.pathsep + env.get("PATH", "")
        return env

    def tool(self, name: str) -> str:
        found = shutil.which(name, path=self.path_dir)
        if found is None:
            raise StackMissingError(f"{name} is not in {self.path_dir}; run .ci/stack/up")
        return found

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs a command with the stack's tools on PATH; fails the test with its stderr."""
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}"
            )
        return proc

    @contextlib.contextmanager
    def kind_host(self, name: str, kubeconfig: Path) -> Iterator[float]:
        """A kind host from the stack's node image for the block; yields its create seconds."""
        kind = self.tool("kind")
        self.run(kind, "delete", "cluster", "--name", name, timeout=180)
        started = time.monotonic()
        self.run(
            kind, "create", "cluster", "--name", name, "--image", self.node_image,
            "--kubeconfig", str(kubeconfig), "--wait", "5m", timeout=420,
        )  # fmt: skip
        try:
            yield time.monotonic() - started
        finally:
            self.run(kind, "delete", "cluster", "--name", name, timeout=180, check=False)

    def plugin_args(self) -> list[str]:
        """Command-line options that point pytest-vcluster at this stack: its settings file,
        the one place a user's run takes them from too."""
        return [f"--vcluster-settings-file={self.plugin_settings_file}"]


def load_stack() -> Stack:
    path = Path(os.environ.get(SETTINGS_ENV, DEFAULT_SETTINGS))
    if not path.is_file():
        raise StackMissingError(
            f"offline stack settings not found at {path}: run `bash .ci/stack/up` first "
            f"(or set {SETTINGS_ENV} to the stack.json it wrote)"
        )
    raw = json.loads(path.read_text())
    return Stack(
        node_image=raw["node_image"],
        chart_dir=raw["chart_dir"],
        values_file=raw["values_file"],
        version_map=dict(raw["version_map"]),
        path_dir=raw["path_dir"],
        workload_image=raw["images"]["workload"],
        host_kubernetes_version=raw["host_kubernetes_version"],
        plugin_settings_file=path.parent / "pytest-vcluster.yaml",
    )


#: Module ``bearer`` for inner test runs (``makepyfile(bearer=BEARER)``): what the API answers a
#: bearer token, and the ``probe`` ServiceAccount the token checks use.
BEARER = """
from kubernetes import client
from kubernetes.client.exceptions import ApiException


def answer_as(vcluster, token, call):
    # (status, body) of call(api) made with token as the bearer.
    configuration = client.Configuration()
    configuration.host = vcluster.api_client.configuration.host
    configuration.ssl_ca_cert = vcluster.api_client.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": "Bearer " + token}
    with client.ApiClient(configuration) as api:
        try:
            call(api)
        except ApiException as exc:
            return exc.status, exc.body
    return 200, ""


def list_status(vcluster, token):
    return answer_as(
        vcluster, token, lambda api: client.CoreV1Api(api).list_namespace(_request_timeout=15))


def probe_account(namespace):
    # ServiceAccount probe in namespace (which must exist), bound to cluster-admin.
    return f'''
apiVersion: v1
kind: ServiceAccount
metadata: {{name: probe, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: probe-admin}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{kind: ServiceAccount, name: probe, namespace: {namespace}}}]
'''


def probe_token(api, namespace):
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    core = client.CoreV1Api(api)
    return core.create_namespaced_service_account_token("probe", namespace, request).status.token
"""
