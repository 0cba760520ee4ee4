"""The connection to one vcluster: a local port forward, a kubeconfig file and an API client.

The vcluster's kubeconfig comes from its secret; its server is rewritten to the forward on
127.0.0.1 (TLS still verifies the certificate's ``localhost`` name). A :class:`Connection` is
a context manager: closing it stops the forward and closes the client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from kubernetes import client, config

from pytest_vcluster.connect.tunnel import PodPortForwarder
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.core.files import write_private

__all__ = ["Connection", "rewrite_kubeconfig"]


def rewrite_kubeconfig(text: str, server: str, tls_server_name: str = "localhost") -> str:
    """Point every cluster of a kubeconfig at ``server``, verifying TLS as ``tls_server_name``.

    The vcluster certificate is issued for ``localhost``; the forward listens on 127.0.0.1 so
    the name to verify is given separately (kubectl, helm and the Python client honour it).
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not data.get("clusters"):
        raise VClusterError("the vcluster kubeconfig secret holds no clusters")
    for entry in data["clusters"]:
        cluster = entry.setdefault("cluster", {})
        cluster["server"] = server
        cluster["tls-server-name"] = tls_server_name
    return yaml.safe_dump(data, sort_keys=False)


class Connection:
    """Forward, kubeconfig and client of one vcluster, made by :meth:`open`."""

    def __init__(
        self,
        host_api_factory: Callable[[], client.ApiClient],
        namespace: str,
        selector: str,
        directory: Path,
        remote_port: int = 8443,
    ) -> None:
        self.directory = directory
        self.forwarder = PodPortForwarder(host_api_factory, namespace, selector, remote_port)
        self.kubeconfig = directory / "kubeconfig"
        self._api_client: client.ApiClient | None = None
        self.closed = False

    @property
    def api_client(self) -> client.ApiClient:
        """The vcluster's API client (only after :meth:`open`)."""
        if self._api_client is None:
            raise VClusterError("the vcluster connection is not open")
        return self._api_client

    def open(self, raw_kubeconfig: str) -> Connection:
        """Start the forward and build the kubeconfig and client from the secret's text."""
        port = self.forwarder.start()
        write_private(
            self.kubeconfig, rewrite_kubeconfig(raw_kubeconfig, f"https://127.0.0.1:{port}")
        )
        configuration = client.Configuration()
        certs = self.directory / "certs"
        certs.mkdir(mode=0o700, exist_ok=True)
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig),
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(certs),
        )
        self._api_client = client.ApiClient(configuration)
        return self

    def forward_error(self) -> str | None:
        """The last error of the port forward, if any (for timeout messages)."""
        return self.forwarder.last_error

    def close(self) -> None:
        """Stop the forward and close the client; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.forwarder.stop()
        if self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
