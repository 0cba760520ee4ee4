"""Proves the offline stack itself with the plain CLIs: kind host, vclusters per version, workloads.

These tests drive kind, vcluster and kubectl directly (not through pytest-vcluster), so a failure
here points at the stack rather than at the plugin.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack, StackMissingError, load_stack

pytestmark = pytest.mark.e2e

HOST = "pvc-smoke"


def run(stack: Stack, *args: str, timeout: float = 120) -> str:
    return stack.run(*args, timeout=timeout).stdout


def wait_until(what: str, probe: Callable[[], tuple[bool, str]], timeout: float) -> float:
    """Polls probe until it reports done; returns the seconds it took."""
    started = time.monotonic()
    seen = ""
    while time.monotonic() - started < timeout:
        done, seen = probe()
        if done:
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortForward:
    """kubectl port-forward on 127.0.0.1, stopped on exit."""

    def __init__(self, stack: Stack, kubeconfig: Path, namespace: str, target: str, remote: int):
        self.port = free_port()
        self._proc = subprocess.Popen(
            [
                stack.tool("kubectl"),
                "--kubeconfig",
                str(kubeconfig),
                "-n",
                namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f"{self.port}:{remote}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=stack.env(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if "Forwarding" not in line:
            stderr = self.close()
            raise AssertionError(f"port-forward to {target} failed: {line} {stderr}")

    def close(self) -> str:
        """Stops kubectl and returns what it wrote to stderr."""
        self._proc.terminate()
        try:
            _, stderr = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, stderr = self._proc.communicate()
        return stderr or ""


@pytest.fixture(scope="module")
def host(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    kubeconfig = tmp_path_factory.mktemp("smoke") / "host.kubeconfig"
    with stack.kind_host(HOST, kubeconfig) as seconds:
        print(f"\nkind create cluster took {seconds:.1f}s")
        yield kubeconfig


def kubectl_json(stack: Stack, kubeconfig: Path, *args: str) -> Any:
    return json.loads(
        run(stack, stack.tool("kubectl"), "--kubeconfig", str(kubeconfig), *args, "-o", "json")
    )


def test_host_node_ready_and_system_pods_running(stack: Stack, host: Path) -> None:
    nodes = kubectl_json(stack, host, "get", "nodes")["items"]
    assert len(nodes) == 1
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == stack.host_kubernetes_version

    def all_running() -> tuple[bool, str]:
        pods = kubectl_json(stack, host, "get", "pods", "-A")["items"]
        phases = {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"].get("phase")
            for p in pods
        }
        system = {
            k: v for k, v in phases.items() if k.startswith(("kube-system/", "local-path-storage/"))
        }
        return bool(system) and all(v == "Running" for v in system.values()), str(system)

    wait_until("every kube-system and local-path-storage pod Running", all_running, 180)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Spreads the stack's served versions over the two per-version tests: the default and the
    oldest get the whole lifecycle, every other one a cluster that reports its version, so each
    version the stack serves runs in one vcluster and none twice."""
    if "minor" not in metafunc.fixturenames:
        return
    try:
        minors = load_stack().minors
    except StackMissingError:
        # One case each, which the stack fixture fails with the fix: never a silent skip.
        metafunc.parametrize("minor", ["no-stack"])
        return
    lifecycle = list(dict.fromkeys([*minors[:1], *minors[-1:]]))
    chosen = (
        lifecycle
        if metafunc.function is test_vcluster_lifecycle_per_version
        else [m for m in minors if m not in lifecycle]
    )
    metafunc.parametrize("minor", chosen)


def virtual_args(kubeconfig: Path) -> list[str]:
    """kubectl arguments for a vcluster's kubeconfig: its certificate is for localhost, and the
    kubeconfig points at 127.0.0.1."""
    return ["--kubeconfig", str(kubeconfig), "--tls-server-name", "localhost"]


class SmokeCluster:
    """A vcluster of one served version, driven with the vcluster CLI and kubectl only."""

    def __init__(self, stack: Stack, host: Path, minor: str) -> None:
        self.stack = stack
        self.host = host
        self.version = stack.version_map[minor]
        self.name = f"smoke-{minor.replace('.', '-')}"
        self.namespace = f"vcluster-{self.name}"

    def cli(self, *args: str, timeout: float = 300) -> str:
        return run(
            self.stack,
            "env",
            f"KUBECONFIG={self.host}",
            "VCLUSTER_SKIP_VERSION_CHECK=true",
            self.stack.tool("vcluster"),
            *args,
            timeout=timeout,
        )

    def create(self) -> None:
        self.cli(
            "create",
            self.name,
            "-n",
            self.namespace,
            "--connect=false",
            "--driver",
            "helm",
            "--local-chart-dir",
            self.stack.chart_dir,
            "-f",
            self.stack.values_file,
            "--set",
            f"controlPlane.distro.k8s.image.tag={self.version}",
        )

    def control_plane_pods(self) -> list[dict[str, Any]]:
        selector = f"app=vcluster,release={self.name}"
        items: list[dict[str, Any]] = kubectl_json(
            self.stack, self.host, "-n", self.namespace, "get", "pods", "-l", selector
        )["items"]
        return items

    def control_plane_ready(self) -> tuple[bool, str]:
        pods = self.control_plane_pods()
        if not pods:
            return False, "no control-plane pod yet"
        conds = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
        return conds.get("Ready") == "True", f"{pods[0]['status'].get('phase')} {conds}"

    def wait_ready(self) -> None:
        wait_until(f"vcluster {self.name} control-plane pod Ready", self.control_plane_ready, 300)

    def wait_kubeconfig_secret(self) -> str:
        """The kubeconfig vcluster writes to `vc-NAME`. The pod can turn Ready a moment before
        the syncer has written that secret (seen once in CI on 1.35), so it is waited for."""
        found: dict[str, str] = {}

        def written() -> tuple[bool, str]:
            try:
                secret = kubectl_json(
                    self.stack, self.host, "-n", self.namespace, "get", "secret", f"vc-{self.name}"
                )
            except AssertionError as exc:  # kubectl failed: NotFound until the syncer wrote it
                return False, str(exc)[-300:]
            config = secret.get("data", {}).get("config")
            if not config:
                return False, "secret has no config key yet"
            found["config"] = base64.b64decode(config).decode()
            return True, ""

        wait_until(f"secret vc-{self.name} with the virtual kubeconfig", written, 120)
        return found["config"]

    @contextlib.contextmanager
    def connected(self, tmp_path: Path) -> Iterator[Path]:
        """A kubeconfig of the virtual API, through a port-forward to the control plane that
        lasts for the block (see virtual_args); the API answers /readyz when the block starts."""
        kubeconfig_text = self.wait_kubeconfig_secret()
        pod_name = self.control_plane_pods()[0]["metadata"]["name"]
        forward = PortForward(self.stack, self.host, self.namespace, f"pod/{pod_name}", 8443)
        try:
            virtual = tmp_path / f"{self.name}.kubeconfig"
            virtual.write_text(
                kubeconfig_text.replace(
                    "https://localhost:8443", f"https://127.0.0.1:{forward.port}"
                )
            )
            virtual.chmod(0o600)
            vk = virtual_args(virtual)

            def api_ready() -> tuple[bool, str]:
                out = subprocess.run(
                    [self.stack.tool("kubectl"), *vk, "get", "--raw", "/readyz"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=False,
                )
                return out.stdout.strip() == "ok", out.stdout + out.stderr

            wait_until("virtual API /readyz", api_ready, 180)
            yield virtual
        finally:
            forward.close()

    def server_version(self, vk: list[str]) -> str:
        """``gitVersion`` of the virtual API server's /version."""
        out = run(self.stack, self.stack.tool("kubectl"), *vk, "version", "-o", "json")
        return str(json.loads(out)["serverVersion"]["gitVersion"])


def test_vcluster_lifecycle_per_version(
    stack: Stack, host: Path, minor: str, tmp_path: Path
) -> None:
    cluster = SmokeCluster(stack, host, minor)
    name, namespace, version = cluster.name, cluster.namespace, cluster.version
    started = time.monotonic()
    cluster.create()
    cluster.wait_ready()
    with cluster.connected(tmp_path) as virtual:
        vk = virtual_args(virtual)
        ready_seconds = time.monotonic() - started
        print(f"\nvcluster {name} ({version}) create-to-ready {ready_seconds:.1f}s")
        assert cluster.server_version(vk) == version

        run(
            stack,
            stack.tool("kubectl"),
            *vk,
            "run",
            "web",
            f"--image={stack.workload_image}",
            "--port=8080",
        )

        def web_running() -> tuple[bool, str]:
            pod = json.loads(
                run(stack, stack.tool("kubectl"), *vk, "get", "pod", "web", "-o", "json")
            )
            return pod["status"].get("phase") == "Running", str(
                pod["status"].get("containerStatuses")
            )

        wait_until("workload pod web Running in the vcluster", web_running, 180)
        synced = kubectl_json(
            stack, host, "-n", namespace, "get", "pods", "-l", f"vcluster.loft.sh/managed-by={name}"
        )["items"]
        assert any(p["metadata"]["name"].startswith("web-x-default-x-") for p in synced)
        web = PortForward(stack, virtual, "default", "pod/web", 8080)
        try:
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{web.port}/", timeout=10).read().decode()
            )
        finally:
            web.close()
        assert "pytest-vcluster workload" in body

    cluster.cli("pause", name, "-n", namespace, "--driver", "helm")
    listed = json.loads(cluster.cli("list", "--output", "json", "--driver", "helm"))
    assert any(v["Name"] == name and v["Status"] == "Paused" for v in listed), listed
    cluster.cli("resume", name, "-n", namespace, "--driver", "helm")
    wait_until(f"vcluster {name} Ready again after resume", cluster.control_plane_ready, 300)

    cluster.cli("delete", name, "-n", namespace, "--driver", "helm", "--delete-namespace", "--wait")

    def namespace_gone() -> tuple[bool, str]:
        out = subprocess.run(
            [stack.tool("kubectl"), "--kubeconfig", str(host), "get", "ns", namespace],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return out.returncode != 0 and "NotFound" in out.stderr, out.stdout + out.stderr

    wait_until(f"namespace {namespace} deleted", namespace_gone, 180)


def test_served_version_reports_itself(
    stack: Stack, host: Path, minor: str, tmp_path: Path
) -> None:
    """A served version the lifecycle test leaves out: one cluster, whose /version must be the
    tag the stack's version map names for it."""
    cluster = SmokeCluster(stack, host, minor)
    started = time.monotonic()
    cluster.create()
    try:
        cluster.wait_ready()
        with cluster.connected(tmp_path) as virtual:
            print(f"\nvcluster {cluster.name} ready after {time.monotonic() - started:.1f}s")
            assert cluster.server_version(virtual_args(virtual)) == cluster.version
    finally:
        # Not waited for: the lifecycle test proves deletion, and the host goes at the end.
        cluster.cli("delete", cluster.name, "-n", cluster.namespace, "--driver", "helm",
                    "--delete-namespace")  # fmt: skip
