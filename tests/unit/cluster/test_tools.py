"""kubectl and helm against a vcluster's kubeconfig, with fake binaries that record their
arguments, environment and stdin; and the handle's helpers wired to them."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeTool
from test_manifests import FakeApi

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.tools import ClusterTools, release_name
from pytest_vcluster.core.errors import CommandError, ConfigError, ToolNotFoundError

# Records argv, KUBECONFIG, HELM_KUBECONTEXT, stdin and a copy of any --values file; fails on
# demand.
RECORDER = """
record = {"argv": sys.argv[1:], "kubeconfig": os.environ.get("KUBECONFIG"),
          "context": os.environ.get("HELM_KUBECONTEXT"), "stdin": None, "values": None}
if "--values" in sys.argv:
    values = sys.argv[sys.argv.index("--values") + 1]
    record["values"] = open(values).read()
    record["values_mode"] = oct(os.stat(values).st_mode & 0o777)
    record["values_path"] = values
if "-" in sys.argv:
    record["stdin"] = sys.stdin.read()
with open(os.environ["FAKE_TOOL_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if "fail" in sys.argv:
    sys.stderr.write("Error from server (NotFound): deployments.apps \\"nope\\" not found\\n")
    sys.exit(1)
print("stdout of", os.path.basename(sys.argv[0]))
"""


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TOOL_LOG", str(path))
    return path


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def tools(
    fake_tool: FakeTool, tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> ClusterTools:
    kubectl = fake_tool("kubectl", RECORDER)
    fake_tool("helm", RECORDER)
    # kubectl is found on PATH; helm through the configured binary, as the plugin sets it.
    monkeypatch.setenv("PATH", str(kubectl.parent))
    monkeypatch.setenv("KUBECONFIG", "/somewhere/else")
    monkeypatch.setenv("HELM_KUBECONTEXT", "other-context")
    return ClusterTools(tmp_path / "kubeconfig", helm_binary=str(tmp_path / "bin" / "helm"))


def test_kubectl_gets_the_kubeconfig_as_flag_and_environment(
    tools: ClusterTools, log: Path, tmp_path: Path
) -> None:
    out = tools.kubectl("apply", "-f", "-", input="kind: ConfigMap\n", timeout=10)
    assert out == "stdout of kubectl\n"
    [call] = calls(log)
    assert call["argv"] == [f"--kubeconfig={tmp_path / 'kubeconfig'}", "apply", "-f", "-"]
    assert call["kubeconfig"] == str(tmp_path / "kubeconfig")  # not the user's
    assert call["stdin"] == "kind: ConfigMap\n"


def test_a_failing_command_raises_with_its_stderr(tools: ClusterTools) -> None:
    with pytest.raises(CommandError) as info:
        tools.kubectl("get", "deployment", "nope", "fail")
    error = info.value
    assert error.exit_code == 1
    assert 'deployments.apps "nope" not found' in error.stderr
    assert 'deployments.apps "nope" not found' in str(error)
    assert error.command[-4:] == ["get", "deployment", "nope", "fail"]


def test_a_missing_kubectl_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFoundError, match=r"kubectl not found .* Install kubectl"):
        ClusterTools(tmp_path / "kubeconfig").kubectl("version")
    with pytest.raises(ToolNotFoundError, match="helm not found"):
        ClusterTools(tmp_path / "kubeconfig").helm("version")


def test_helm_runs_the_configured_binary_with_the_kubeconfig(
    tools: ClusterTools, log: Path, tmp_path: Path
) -> None:
    assert tools.helm("list", "-A") == "stdout of helm\n"
    [call] = calls(log)
    assert call["argv"] == [f"--kubeconfig={tmp_path / 'kubeconfig'}", "list", "-A"]
    assert call["kubeconfig"] == str(tmp_path / "kubeconfig")
    assert call["context"] == ""  # the user's HELM_KUBECONTEXT would name a foreign context


def chart(tmp_path: Path, name: str = "hello") -> Path:
    directory = tmp_path / "charts" / "my-chart"
    directory.mkdir(parents=True)
    (directory / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
    return directory


def test_helm_install_writes_private_values_and_waits(
    tools: ClusterTools, log: Path, tmp_path: Path
) -> None:
    directory = chart(tmp_path)
    release = tools.helm_install(
        directory, namespace="web", values={"replicaCount": 2, "token": "s3cret"}, timeout=90
    )
    assert release == "hello"  # the name in Chart.yaml
    [call] = calls(log)
    argv = call["argv"]
    assert argv[:4] == [
        f"--kubeconfig={tmp_path / 'kubeconfig'}",
        "install",
        "hello",
        str(directory),
    ]
    assert argv[argv.index("--namespace") + 1] == "web"
    assert "--create-namespace" in argv
    assert argv[argv.index("--timeout") + 1] == "90s"
    assert "--wait" in argv
    assert call["values"] == "replicaCount: 2\ntoken: s3cret\n"
    assert call["values_mode"] == oct(stat.S_IRUSR | stat.S_IWUSR)
    assert not Path(call["values_path"]).exists()  # removed after the install


def test_helm_install_without_wait_and_with_a_release_and_values_file(
    tools: ClusterTools, log: Path, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("a: 1\n")
    assert tools.helm_install(chart(tmp_path), release="mine", values=values, wait=False) == "mine"
    argv = calls(log)[0]["argv"]
    assert argv[2] == "mine"
    assert "--wait" not in argv
    assert "--timeout" not in argv
    assert argv[argv.index("--values") + 1] == str(values)


def test_helm_install_refuses_charts_that_are_not_there(
    tools: ClusterTools, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"no chart at \./missing"):
        tools.helm_install("./missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no Chart\.yaml"):
        tools.helm_install(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no values file"):
        tools.helm_install(chart(tmp_path), values=tmp_path / "nope.yaml")


def test_release_names_from_charts(tmp_path: Path) -> None:
    assert release_name(str(chart(tmp_path, "Web_App"))) == "web-app"
    assert release_name("/charts/hello-0.1.0.tgz") == "hello"
    assert release_name("/charts/my-chart-v1.2.3-rc.1.tgz") == "my-chart"
    assert release_name("bitnami/nginx") == "nginx"


def handle(tmp_path: Path, **extra: Any) -> VCluster:
    # Built as the tests of other modules build it: the new fields have defaults.
    return VCluster(
        name="vc", namespace="vc", version="v1.33.4", requested_version=None,
        kubeconfig=tmp_path / "kubeconfig", api_client=FakeApi(), spec_hash="h", **extra,
    )  # fmt: skip


def test_the_handle_runs_its_tools_and_gives_an_environment(
    fake_tool: FakeTool, tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/somewhere/else")
    kubectl = fake_tool("kubectl", RECORDER)
    helm = fake_tool("helm", RECORDER)
    vcluster = handle(tmp_path, helm_binary=str(helm), kubectl_binary=str(kubectl))
    assert vcluster.kubectl("get", "pods") == "stdout of kubectl\n"
    assert vcluster.helm("version") == "stdout of helm\n"
    assert vcluster.helm_install(chart(tmp_path), wait=False) == "hello"
    assert [call["argv"][1] for call in calls(log)] == ["get", "version", "install"]
    env = vcluster.env()
    assert env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert env["PATH"]  # the rest of the environment stays


def test_the_handle_applies_and_waits_through_its_client(tmp_path: Path) -> None:
    vcluster = handle(tmp_path)
    api = vcluster.api_client
    assert isinstance(api, FakeApi)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    [applied] = vcluster.apply(cm, namespace="team")
    assert applied["metadata"]["namespace"] == "team"
    assert vcluster.wait_for(applied, condition="exists")["metadata"]["name"] == "c"
    api.logs["/api/v1/namespaces/team/pods/p/log"] = "line\n"
    api.objects["/api/v1/namespaces/team/pods/p"] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"},
        "spec": {"containers": [{"name": "app"}]},
    }  # fmt: skip
    assert vcluster.logs("p", namespace="team") == "line\n"
