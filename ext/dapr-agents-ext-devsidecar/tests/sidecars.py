"""Helpers for tests that start their own sidecar with ``dapr_sidecar_factory``: a dev sidecar,
or a real daprd with ``DAPR_TEST_SIDECAR=daprd``, on a components folder the test writes."""

from __future__ import annotations

import contextlib
import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint


def endpoint_of(sidecar: Any) -> SidecarEndpoint:
    """The endpoint of a ``DevSidecar`` (``endpoint()``) or a ``DaprdProcess`` (``endpoint``)."""
    endpoint = sidecar.endpoint
    return endpoint() if callable(endpoint) else endpoint


def components(folder: Path, *documents: str) -> Path:
    """Write the YAML documents to ``folder/components.yaml``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "---\n".join(textwrap.dedent(d).strip("\n") + "\n" for d in documents)
    (folder / "components.yaml").write_text(text, encoding="utf-8")
    return folder


def component(name: str, type_: str, metadata: dict[str, str] | None = None, extra: str = "") -> str:
    """One ``kind: Component`` document with plain metadata values (and raw YAML ``extra``)."""
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {type_}",
        "  version: v1",
    ]
    if metadata:
        lines.append("  metadata:")
        for key, value in metadata.items():
            lines += [f"  - name: {key}", f"    value: {json.dumps(value)}"]
    else:
        lines.append("  metadata: []")
    return "\n".join(lines) + "\n" + textwrap.dedent(extra).strip("\n") + "\n"


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def http(endpoint: SidecarEndpoint, method: str, path: str, body: bytes | str | None = None) -> HttpAnswer:
    """One HTTP call to the sidecar; error statuses are answers too."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(endpoint.http_endpoint + path, data=data, method=method)
    if endpoint.api_token:
        request.add_header("dapr-api-token", endpoint.api_token)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return HttpAnswer(answer.status, answer.read(), answer.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, error.read(), error.headers.get("Content-Type", ""))


@contextlib.contextmanager
def raw_stub(endpoint: SidecarEndpoint) -> Iterator[dapr_pb2_grpc.DaprStub]:
    """The generated stub, for calls the SDK validates away or does not make."""
    with grpc.insecure_channel(endpoint.grpc_address) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)
