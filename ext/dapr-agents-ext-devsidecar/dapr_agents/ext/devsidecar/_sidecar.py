"""The sidecar process model: components, the gRPC server, the HTTP port, start and stop.

A :class:`DevSidecar` can run on the caller's event loop (``await sidecar.start_async()``) or on
a private loop in a background thread (``sidecar.start()``), which is what tests and the CLI use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence

import grpc
from dapr.ext.workflow._durabletask.internal.orchestrator_service_pb2_grpc import (
    add_TaskHubSidecarServiceServicer_to_server,
)
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from ._acl import parse_access_control
from ._actors import ActorsBlock
from ._api import DAPR_RUNTIME_VERSION, DaprApi, StateStoreEntry
from ._app_channel import AppChannel, AppConnection, AppHealthCheck, connection_properties, open_channel
from ._auth import ApiTokenInterceptor
from ._components import Component, Resources, load_resources
from ._config_file import read_configuration
from ._configuration import ConfigurationBlock, RedisConfigurationStore, open_configuration_store
from ._conversation import ConversationBackend, EchoConversation, OpenAIConversation
from ._errors import ComponentError
from ._http import HttpApiServer
from ._invoke import ServiceInvocation
from ._jobs import JobsBlock
from ._lock import LockBlock, RedisLockStore, open_lock_store
from ._nameresolution import Registry
from ._outbox import StateOutbox, outbox_configs
from ._pubsub import PubSub, open_pubsub
from ._secrets import SecretsBlock, open_secret_stores, resolve_secret_refs, secret_scopes
from ._state import StateBackend
from ._state_memory import InMemoryStateBackend
from ._subscriptions import AppSubscriptions, parse_declarative
from ._workflow import WorkflowEngine
from ._workflow_api import TaskHubApi
from .testing import SidecarEndpoint

_log = logging.getLogger(__name__)

#: daprd's default limit for a gRPC request body (``--max-body-size`` 4Mi).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _key_prefix(component: Component, app_id: str, namespace: str) -> str | None:
    # daprd lower-cases the value, so a literal prefix "MyApp" stores keys as "myapp||key".
    configured = component.metadata_value("keyPrefix")
    strategy = ("appid" if configured is None else configured).lower()
    lowered = strategy
    if lowered == "appid":
        return app_id or None
    if lowered == "name":
        return component.name
    if lowered == "namespace":
        if not app_id:
            return None
        return f"{namespace}.{app_id}" if namespace else app_id
    if lowered == "none":
        return None
    if "||" in strategy:
        raise ComponentError(
            f"{component.source}: component {component.name!r}: keyPrefix {strategy!r} can't contain '||'"
        )
    return strategy


def _state_backend(component: Component) -> StateBackend:
    if component.type == "state.in-memory":
        return InMemoryStateBackend()
    if component.type == "state.sqlite":
        from ._state_sqlite import SqliteStateBackend

        return SqliteStateBackend(component)
    if component.type == "state.redis":
        from ._state_redis import RedisStateBackend

        return RedisStateBackend(component)
    raise ComponentError(
        f"{component.source}: component {component.name!r}: no state backend for {component.type}"
    )


def _conversation_backend(component: Component, env: Mapping[str, str]) -> ConversationBackend:
    if component.type == "conversation.echo":
        return EchoConversation(component)
    return OpenAIConversation(component, env)


class DevSidecar:
    """A Dapr-compatible sidecar serving the components it was given.

    Parameters mirror ``daprd``/``dapr run``: ``app_id``, ``resources_paths`` (folders or files
    of component YAML), the gRPC and HTTP ports (0 picks free ports) and the listen address,
    loopback unless told otherwise. ``api_token`` defaults to ``DAPR_API_TOKEN`` from the
    environment; when set, every call but the health checks must present it.

    With ``app_port`` the sidecar has an app channel (``app_protocol`` ``"http"`` or ``"grpc"``,
    on ``app_channel_address``), sends the app ``APP_API_TOKEN`` (or ``app_api_token``) as
    ``dapr-api-token``, reports ready on ``/v1.0/healthz`` only once the app listens, and probes
    it when ``app_health_check`` is true (or an :class:`AppHealthCheck`). Other apps reach it by
    app id through the machine's registry in ``registry_home`` (``DAPR_DEVSIDECAR_HOME`` or
    ``~/.dapr/devsidecar``), sidecar to sidecar over ``internal_grpc_port``. ``config`` is a
    Dapr Configuration file (``--config``); the dev sidecar applies its secret scopes and its
    service-invocation access control (``accessControl``), whose per-app policies need
    ``enable_mtls`` (daprd's ``--enable-mtls``) as on daprd.
    """

    def __init__(
        self,
        *,
        app_id: str = "app",
        resources_paths: Iterable[str | os.PathLike[str]] = (),
        components: Sequence[Component] = (),
        grpc_port: int = 0,
        http_port: int = 0,
        host: str = "127.0.0.1",
        api_token: str | None = None,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        app_port: int | None = None,
        app_protocol: str = "http",
        app_channel_address: str = "127.0.0.1",
        app_api_token: str | None = None,
        app_health_check: bool | AppHealthCheck = False,
        internal_grpc_port: int = 0,
        registry_home: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        enable_mtls: bool = False,
    ) -> None:
        self.app_id = app_id
        self.host = host
        self._env = dict(os.environ if env is None else env)
        self.namespace = namespace if namespace is not None else self._env.get("NAMESPACE", "")
        self.api_token = api_token if api_token is not None else (self._env.get("DAPR_API_TOKEN") or None)
        self._requested_grpc_port = grpc_port
        self._requested_http_port = http_port
        token = app_api_token if app_api_token is not None else (self._env.get("APP_API_TOKEN") or None)
        check = AppHealthCheck() if app_health_check is True else (app_health_check or None)
        self.app_connection = (
            AppConnection(app_port, app_protocol, app_channel_address, token or None, check)
            if app_port
            else None
        )
        self._internal_grpc_port = internal_grpc_port
        self._registry_home = registry_home
        self._invocation: ServiceInvocation | None = None
        self.app_channel: AppChannel | None = None  # how building blocks reach the app
        self._subscriptions: AppSubscriptions | None = None
        self._outbox: StateOutbox | None = None
        self._resources: Resources = load_resources(resources_paths, app_id=app_id, env=self._env)
        self.components: list[Component] = list(components) + self._resources.components
        names = [c.name for c in self.components]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ComponentError(f"component names must be unique; defined twice: {', '.join(duplicates)}")
        self._server: grpc.aio.Server | None = None
        self._http: HttpApiServer | None = None
        self._api: DaprApi | None = None
        self._stores: dict[str, StateStoreEntry] = {}
        self._pubsubs: dict[str, PubSub] = {}
        self._grpc_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._engine: WorkflowEngine | None = None
        self._config_path = config
        self._config_spec = read_configuration(config, self._env) if config else {}
        #: daprd's ``--enable-mtls``: callers are identified (here: by what their sidecar states),
        #: so the access control list's per-app policies apply; without it only its defaultAction.
        self.enable_mtls = enable_mtls
        self.access_control = parse_access_control(
            self._config_spec, str(config or ""), is_http=app_protocol != "grpc"
        )
        if self.access_control is not None and self.access_control.policies and not enable_mtls:
            # daprd says nothing here, and its policies silently never match: say it once.
            _log.warning(
                "configuration file %s: accessControl policies apply only with mTLS (--enable-mtls), "
                "as on daprd; without it every call gets the defaultAction %r",
                config,
                self.access_control.default_action,
            )
        # Secrets, configuration, locks and jobs: each serves its own gRPC methods and HTTP routes.
        self._blocks: list[SecretsBlock | ConfigurationBlock | LockBlock | JobsBlock | ActorsBlock] = []
        self._capabilities: dict[str, Sequence[str]] = {}

    # -- addresses ----------------------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def http_port(self) -> int:
        return self._http.port if self._http is not None else 0

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def endpoint(self) -> SidecarEndpoint:
        """Where this sidecar listens; ``endpoint().sdk_configured()`` points the SDK at it."""
        return SidecarEndpoint(
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            host=self.host if self.host not in {"0.0.0.0", "::"} else "127.0.0.1",
            api_token=self.api_token or None,
            app_id=self.app_id,
        )

    def client_env(self) -> dict[str, str]:
        """The environment ``dapr run`` gives an app, pointing the SDK at this sidecar."""
        return self.endpoint().env()

    # -- lifecycle on the caller's loop --------------------------------------------------------

    def _registered_components(self) -> list[tuple[str, str, str, Sequence[str]]]:
        registered = []
        # daprd initialises secret stores first and lists components in that order.
        ordered = sorted(self.components, key=lambda c: c.category != "secretstores")
        for component in ordered:
            capabilities: Sequence[str] = self._capabilities.get(component.name, ())
            if component.name in self._stores:
                capabilities = self._stores[component.name].backend.capabilities
            elif component.name in self._pubsubs:
                capabilities = self._pubsubs[component.name].capabilities
            registered.append((component.name, component.type, component.version, capabilities))
        return registered

    async def _metadata_document(self) -> dict[str, object]:
        return {
            "id": self.app_id,
            "runtimeVersion": DAPR_RUNTIME_VERSION,
            "extended": {"daprRuntimeVersion": DAPR_RUNTIME_VERSION},
            "components": [
                # daprd leaves out an empty version and capability list (omitempty)
                {
                    "name": name,
                    "type": ctype,
                    **({"version": version} if version else {}),
                    **({"capabilities": list(caps)} if caps else {}),
                }
                for name, ctype, version, caps in self._registered_components()
            ],
            "subscriptions": (self._subscriptions.metadata() if self._subscriptions else [])
            + (self._api.stream_subscriptions() if self._api else []),
            "appConnectionProperties": connection_properties(self.app_connection),
        }

    async def start_async(self) -> None:
        """Open the components and start serving on the current event loop."""
        conversations: dict[str, ConversationBackend] = {}
        try:
            await self._open_blocks()
            for component in self.components:
                if component.category == "state":
                    prefix = _key_prefix(component, self.app_id, self.namespace)
                    self._stores[component.name] = StateStoreEntry(
                        component.name, component.type, _state_backend(component), prefix
                    )
                elif component.category == "pubsub":
                    self._pubsubs[component.name] = await open_pubsub(
                        component, self._resources.inbound.get(component.name), app_id=self.app_id
                    )
                elif component.category == "conversation":
                    conversations[component.name] = _conversation_backend(component, self._env)
        except BaseException:
            await self._close_components()
            raise
        actor_stores = [c for c in self.components if c.category == "state" and c.flag("actorStateStore")]
        if len(actor_stores) > 1:
            await self._close_components()
            raise ComponentError(
                "only one state store may set actorStateStore; found "
                + ", ".join(f"{c.name!r} ({c.source})" for c in actor_stores)
            )
        if actor_stores:
            self._engine = WorkflowEngine(
                app_id=self.app_id,
                backend=self._stores[actor_stores[0].name].backend,
                namespace=self.namespace,
            )
            try:
                await self._engine.start()
            except BaseException:
                await self._close_components()
                raise
        engine = self._engine
        if self.app_connection is not None:
            self.app_channel = open_channel(self.app_connection, self.app_id)
            try:
                declared = parse_declarative(
                    self._resources.subscription_documents, app_id=self.app_id, namespace=self.namespace
                )
            except ComponentError:
                await self._close_components()
                raise
            channel, subscriptions = self.app_channel, AppSubscriptions(self._pubsubs, declared)
            self._subscriptions = subscriptions
            self.app_channel.on_health_change(lambda up: subscriptions.start(channel) if up else None)
        # Jobs live where workflow state does (the actor state store), else in memory.
        jobs = JobsBlock(
            app_id=self.app_id,
            namespace=self.namespace,
            backend=self._stores[actor_stores[0].name].backend if actor_stores else InMemoryStateBackend(),
            durable=bool(actor_stores),
        )
        self._blocks.append(jobs)
        try:
            await jobs.start(self.app_channel)
        except BaseException:
            await self._close_components()
            raise
        # Actors: the app's types (from its /dapr/config), state and reminders in the actor store.
        actors = ActorsBlock(
            app_id=self.app_id,
            namespace=self.namespace,
            backend=self._stores[actor_stores[0].name].backend if actor_stores else None,
            host=self.host,
            registry_home_path=self._registry_home,
        )
        self._blocks.append(actors)
        await actors.start(self.app_channel)
        self._invocation = ServiceInvocation(
            app_id=self.app_id,
            namespace=self.namespace,
            host=self.host,
            channel=self.app_channel,
            registry=Registry(self._registry_home),
            internal_port=self._internal_grpc_port,
            access_control=self.access_control,
            mtls=self.enable_mtls,
        )
        try:
            if self.app_channel is not None:
                await self.app_channel.start()
            await self._invocation.start()
        except BaseException:
            await self._close_components()
            raise
        configs = outbox_configs(self.components)
        if configs:
            self._outbox = StateOutbox(
                app_id=self.app_id,
                namespace=self.namespace,
                configs=configs,
                backends={name: self._stores[name].backend for name in configs},
                pubsubs=self._pubsubs,
            )
            try:
                await self._outbox.start()
            except BaseException:
                await self._close_components()
                raise
        self._api = DaprApi(
            outbox=self._outbox,
            app_id=self.app_id,
            state_stores=self._stores,
            pubsubs=self._pubsubs,
            conversations=conversations,
            components=self._registered_components(),
            connected_workers=lambda: engine.connected_workers if engine is not None else 0,
            block_methods={
                **{name: method for block in self._blocks for name, method in block.grpc_methods().items()},
                "InvokeService": self._invocation.invoke_service,
            },
            app_connection=connection_properties(self.app_connection),
        )
        if self._subscriptions is not None:
            self._api.add_app_subscriptions = self._subscriptions.add_to_metadata
        interceptors = [ApiTokenInterceptor(self.api_token)] if self.api_token else []
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        dapr_pb2_grpc.add_DaprServicer_to_server(self._api, self._server)
        add_TaskHubSidecarServiceServicer_to_server(TaskHubApi(self._engine), self._server)
        # Last: any other method is proxied to the app named by dapr-app-id (gRPC proxying).
        self._server.add_generic_rpc_handlers((self._invocation.proxy_handler(),))
        port = self._server.add_insecure_port(f"{self.host}:{self._requested_grpc_port}")
        if port == 0:
            await self._close_components()
            raise OSError(f"cannot listen on {self.host}:{self._requested_grpc_port} for gRPC (port in use?)")
        self._grpc_port = port
        await self._server.start()
        self._http = HttpApiServer(
            host=self.host,
            port=self._requested_http_port,
            api_token=self.api_token or None,  # "" is no token, as on the gRPC port
            metadata=self._metadata_document,
            routes=[route for block in self._blocks for route in block.http_routes()],
            ready=self.ready,
            app_id=self.app_id,
            fallback=self._invocation.handle_http,
        )
        try:
            await self._http.start()
        except OSError:
            await self._server.stop(None)
            await self._close_components()
            raise
        _log.debug(
            "dev sidecar for app %r serving gRPC on %s and HTTP on %s with %d component(s)",
            self.app_id,
            self.grpc_address,
            self.http_endpoint,
            len(self.components),
        )

    async def _open_blocks(self) -> None:
        """Open the secret stores, resolve ``secretKeyRef`` metadata (daprd's order: secret stores
        first, each after the store it reads from), then the configuration and lock stores."""
        secret_stores = open_secret_stores(self.components, self.app_id, self._env)
        scopes = secret_scopes(self._config_spec, str(self._config_path or ""))
        self.components = [
            c
            if c.category == "secretstores"
            else resolve_secret_refs(c, secret_stores, self.app_id, self._env)
            for c in self.components
        ]
        self._blocks.append(SecretsBlock(secret_stores, scopes))
        configuration_stores: dict[str, RedisConfigurationStore] = {}
        lock_stores: dict[str, RedisLockStore] = {}
        try:
            for component in self.components:
                if component.category == "configuration":
                    configuration_stores[component.name] = await open_configuration_store(component)
                elif component.category == "lock":
                    lock_stores[component.name] = await open_lock_store(component, self.app_id)
        finally:  # registered even on failure, so what did open is closed with the rest
            self._blocks += [ConfigurationBlock(configuration_stores), LockBlock(lock_stores)]
        for block in self._blocks:
            self._capabilities.update(block.capabilities())

    def ready(self) -> bool:
        """True once the app's port accepts connections (at once without an app port); until
        then ``/v1.0/healthz`` answers 500, as daprd's does."""
        return self.app_channel is None or self.app_channel.listening.is_set()

    async def _close_components(self) -> None:
        for block in self._blocks:
            if isinstance(block, (JobsBlock, ActorsBlock)):  # first: no trigger cut off by the channel
                await block.close()
        if self._invocation is not None:
            await self._invocation.stop()
            self._invocation = None
        if self._subscriptions is not None:
            await self._subscriptions.close()
            self._subscriptions = None
        if self._outbox is not None:
            await self._outbox.close()
            self._outbox = None
        if self.app_channel is not None:
            await self.app_channel.close()
            self.app_channel = None
        for block in self._blocks:
            try:
                await block.close()
            except Exception:
                _log.exception("closing %s failed", type(block).__name__)
        self._blocks.clear()
        for pubsub in self._pubsubs.values():
            await pubsub.close()
        for entry in self._stores.values():
            try:
                await entry.backend.close()
            except Exception:
                _log.exception("closing state store %r failed", entry.name)

    async def stop_async(self, grace: float | None = 1.0) -> None:
        """Stop serving and close every component; safe to call twice."""
        if self._invocation is not None:  # first, so other apps stop resolving this one
            await self._invocation.stop()
            self._invocation = None
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._engine is not None:
            await self._engine.stop()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        self._engine = None
        await self._close_components()
        self._stores.clear()
        self._pubsubs.clear()

    async def serve_forever(self) -> None:
        """Run until :meth:`stop` (or cancellation)."""
        self._stopped = asyncio.Event()
        await self.start_async()
        try:
            await self._stopped.wait()
        finally:
            await self.stop_async()

    # -- lifecycle on a background thread ------------------------------------------------------

    def start(self) -> DevSidecar:
        """Start on a private event loop in a daemon thread; returns once the ports are open."""
        if self._thread is not None:
            raise RuntimeError("this DevSidecar is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self._stopped = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self.stop_async())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"dev-sidecar-{self.app_id}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a sidecar started with :meth:`start`; idempotent."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None or loop is None or stopped is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(stopped.set)
            thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> DevSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
