"""``DaprCheckpointer``: LangGraph's ``BaseCheckpointSaver`` on any Dapr state store.

Each method builds a plan (:mod:`._plan`) and hands it to the sync or async shell (:mod:`._io`);
this module only owns the clients and the configuration.
"""

from __future__ import annotations

import asyncio
import random
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from . import _plan
from ._io import iterate_async, iterate_sync, run_async, run_sync
from ._layout import Keys

try:  # langgraph-checkpoint >= 4.2 (DeltaChannel support)
    from langgraph.checkpoint.base import DeltaChannelHistory
except ImportError:  # pragma: no cover - older langgraph-checkpoint
    DeltaChannelHistory = dict  # type: ignore[misc,assignment]

DEFAULT_STORE = "statestore"
DEFAULT_KEY_PREFIX = "langgraph"


class DaprCheckpointer(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that keeps checkpoints in a Dapr state store, sync and async.

    Drop-in for ``dapr.ext.langgraph.DaprCheckpointer(store_name, key_prefix)``::

        from dapr_agents.ext.langgraph import DaprCheckpointer

        graph = builder.compile(checkpointer=DaprCheckpointer("statestore", "chat"))
        graph.invoke(inputs, {"configurable": {"thread_id": "1"}})
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "1"}})

    Args:
        store_name: The Dapr state store component (it must support transactions and etags,
            as daprd's Redis, PostgreSQL, SQLite, in-memory, CosmosDB and others do).
        key_prefix: Prepended to every key (``<prefix>:...``); several graphs or apps can share
            a store under different prefixes.
        client: A sync ``dapr.clients.DaprClient`` to use; one is created on first sync use
            otherwise (and closed by :meth:`close`).
        async_client: A ``dapr.aio.clients.DaprClient`` for the async methods; otherwise one is
            created per event loop on first async use.
        serde: LangGraph serializer for checkpoints, values and writes (default: JsonPlus).
        ttl: Seconds after a thread's last checkpoint until its keys expire (``ttlInSeconds``);
            channel values shared between checkpoints live up to twice as long.
        max_value_bytes: Values larger than this are split into chunk keys, for stores that cap
            a value's size (DynamoDB 400 KB, Cosmos DB 2 MB).
        index_page_size: Entries kept in a namespace's index before they are sealed into a page.
    """

    def __init__(
        self,
        store_name: str = DEFAULT_STORE,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        *,
        client: Any | None = None,
        async_client: Any | None = None,
        serde: Any | None = None,
        ttl: int | None = None,
        max_value_bytes: int = 256 * 1024,
        index_page_size: int = 32,
    ) -> None:
        super().__init__(serde=serde)
        if not store_name or not store_name.strip():
            raise ValueError("store_name must name a Dapr state store component, e.g. 'statestore'")
        if not key_prefix or "||" in key_prefix:
            raise ValueError(
                f"key_prefix {key_prefix!r} must be non-empty and not contain '||' (daprd rejects it)"
            )
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        if max_value_bytes < 1024:
            raise ValueError(f"max_value_bytes must be at least 1024, not {max_value_bytes!r}")
        if index_page_size < 2:
            raise ValueError(f"index_page_size must be at least 2, not {index_page_size!r}")
        self.store_name = store_name
        self.key_prefix = key_prefix
        self.ttl = ttl
        self._client = client
        self._owns_client = client is None
        self._async_client = async_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._max_value_bytes = max_value_bytes
        self._page_size = index_page_size

    @property
    def _ctx(self) -> _plan.Context:
        # Built per call: ``with_allowlist`` and tests may swap ``serde`` on a copy.
        return _plan.Context(
            store=self.store_name,
            keys=Keys(self.key_prefix),
            serde=self.serde,
            ttl=self.ttl,
            max_value_bytes=self._max_value_bytes,
            page_size=self._page_size,
        )

    # -- clients ---------------------------------------------------------------------------

    def _sync_client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from dapr.clients import DaprClient

                    self._client = DaprClient()
        return self._client

    def _aio_client(self) -> Any:
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            # A grpc.aio channel belongs to the loop that created it; one client per loop lets
            # the same checkpointer serve several loops (threads, test runners).
            from dapr.aio.clients import DaprClient as AioDaprClient

            client = self._async_clients[loop] = AioDaprClient()
        return client

    def close(self) -> None:
        """Close the sync client this checkpointer created (an injected one is left open)."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client created for the running loop, and the sync one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            loop = None
        client = self._async_clients.pop(loop, None) if loop is not None else None
        if client is not None:
            await client.close()
        self.close()

    def __enter__(self) -> DaprCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DaprCheckpointer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync API --------------------------------------------------------------------------

    def _run(self, plan: _plan.Plan) -> Any:
        return run_sync(self._sync_client(), self.store_name, plan)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (its ``checkpoint_id``, or the thread's latest)."""
        return self._run(_plan.plan_get_tuple(self._ctx, config))  # type: ignore[no-any-return]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """A thread's checkpoints, newest first, matching the metadata ``filter``."""
        plan = _plan.plan_list(self._ctx, config, filter, before, limit)
        yield from iterate_sync(self._sync_client(), self.store_name, plan)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; only the channels in ``new_versions`` are written."""
        return self._run(_plan.plan_put(self._ctx, config, checkpoint, metadata, new_versions))  # type: ignore[no-any-return]

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes on a checkpoint (idempotent per task and index)."""
        self._run(_plan.plan_put_writes(self._ctx, config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, value and write of a thread, in every namespace."""
        self._run(_plan.plan_delete_thread(self._ctx, str(thread_id)))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) created by the given runs."""
        self._run(_plan.plan_delete_for_runs(self._ctx, run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread (complete parent chains) to another."""
        self._run(_plan.plan_copy_thread(self._ctx, str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: keep each namespace's newest checkpoint; ``delete``: delete all."""
        self._run(_plan.plan_prune(self._ctx, thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Writes and seed of ``channels`` along the parent chain, in a few bulk round trips."""
        return self._run(_plan.plan_delta_history(self._ctx, config, channels))  # type: ignore[no-any-return]

    # -- async API -------------------------------------------------------------------------

    async def _arun(self, plan: _plan.Plan) -> Any:
        return await run_async(self._aio_client(), self.store_name, plan)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple`."""
        return await self._arun(_plan.plan_get_tuple(self._ctx, config))  # type: ignore[no-any-return]

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list`."""
        plan = _plan.plan_list(self._ctx, config, filter, before, limit)
        async for item in iterate_async(self._aio_client(), self.store_name, plan):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put`."""
        return await self._arun(_plan.plan_put(self._ctx, config, checkpoint, metadata, new_versions))  # type: ignore[no-any-return]

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes`."""
        await self._arun(_plan.plan_put_writes(self._ctx, config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        await self._arun(_plan.plan_delete_thread(self._ctx, str(thread_id)))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        await self._arun(_plan.plan_delete_for_runs(self._ctx, run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        await self._arun(_plan.plan_copy_thread(self._ctx, str(source_thread_id), str(target_thread_id)))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        await self._arun(_plan.plan_prune(self._ctx, thread_ids, strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async :meth:`get_delta_channel_history`."""
        return await self._arun(_plan.plan_delta_history(self._ctx, config, channels))  # type: ignore[no-any-return]

    # -- versions --------------------------------------------------------------------------

    def get_next_version(self, current: str | int | float | None, channel: None = None) -> str:
        """Zero-padded, so versions compare correctly as strings (they are part of blob keys)."""
        if current is None:
            number = 0
        elif isinstance(current, (int, float)):
            number = int(current)
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"
