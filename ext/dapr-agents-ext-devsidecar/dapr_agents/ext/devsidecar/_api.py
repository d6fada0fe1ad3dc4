"""The ``dapr.proto.runtime.v1.Dapr`` gRPC service: state, pub/sub, metadata, conversation.

Request validation, key prefixing and the translation of failures into the gRPC status codes
and messages daprd returns live here; the components only store, route and generate. Methods
the dev sidecar does not implement answer ``UNIMPLEMENTED`` (the servicer base class does that),
like a daprd without the matching component.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import (
    ai_pb2,
    appcallback_pb2,
    dapr_pb2_grpc,
    metadata_pb2,
    pubsub_pb2,
    state_pb2,
)
from google.protobuf import empty_pb2, struct_pb2

from ._conversation import ConversationBackend, ConversationError, validate_alpha2
from ._errors import EtagInvalidError, EtagMismatchError, StoreError
from ._gojson import go_json_error, normalize_json
from ._outbox import OutboxError, StateOutbox, Upsert
from ._pubsub import (
    CLOUDEVENTS_JSON,
    BusMessage,
    PubSub,
    Subscriber,
    build_cloud_event,
    encode_event,
    event_data_bytes,
    event_extensions,
)
from ._state import DeleteOp, SetOp, StateBackend, StateOp, format_expire_time
from ._status import ApiError, abort

_log = logging.getLogger(__name__)

#: The daprd version whose behaviour the sidecar reproduces; reported by GetMetadata.
DAPR_RUNTIME_VERSION = "1.18.3"

# strconv.ParseBool's accepted spellings.
_GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}

_FIRST_WRITE = common_pb2.StateOptions.CONCURRENCY_FIRST_WRITE
_LAST_WRITE = common_pb2.StateOptions.CONCURRENCY_LAST_WRITE


class StateStoreEntry:
    """A state store with the key-prefix rule of its component."""

    def __init__(self, name: str, component_type: str, backend: StateBackend, prefix: str | None) -> None:
        self.name = name
        self.type = component_type
        self.backend = backend
        self.prefix = prefix  # None: keys are stored as given (keyPrefix "none")


class DaprApi(dapr_pb2_grpc.DaprServicer):
    """Implements the subset of the Dapr runtime API that agents use."""

    def __init__(
        self,
        *,
        app_id: str,
        state_stores: Mapping[str, StateStoreEntry],
        pubsubs: Mapping[str, PubSub],
        conversations: Mapping[str, ConversationBackend],
        components: Sequence[tuple[str, str, str, Sequence[str]]],
        extended_metadata: Mapping[str, str] | None = None,
        connected_workers: Callable[[], int] = lambda: 0,
        block_methods: Mapping[str, Callable[..., Any]] | None = None,
        app_connection: Mapping[str, Any] | None = None,
        outbox: StateOutbox | None = None,
    ) -> None:
        self._outbox = outbox
        self._app_connection = dict(app_connection or {})
        self._app_id = app_id
        self._stores = dict(state_stores)
        self._pubsubs = dict(pubsubs)
        self._conversations = dict(conversations)
        self._components = list(components)
        self._extended = dict(extended_metadata or {})
        self._connected_workers = connected_workers
        # Building blocks (secrets, configuration, locks) serve their methods themselves; an
        # instance attribute wins over the class's UNIMPLEMENTED placeholder at registration.
        for method, handler in (block_methods or {}).items():
            setattr(self, method, handler)
        # Open streaming subscriptions by connection id, in subscription order: daprd accepts any
        # number per topic (each is a subscriber of its own) and lists each in its metadata.
        self._streams: dict[int, pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1] = {}
        self._connection_ids = itertools.count(1)
        #: GetMetadata calls it to add the app's subscriptions (set by the sidecar, ``_subscriptions``).
        self.add_app_subscriptions: Callable[[metadata_pb2.GetMetadataResponse], None] = lambda response: None

    # -- state --------------------------------------------------------------------------------

    def _store(self, name: str) -> StateStoreEntry:
        if not self._stores:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"state store {name} is not configured",
                reason="DAPR_STATE_NOT_CONFIGURED",
            )
        store = self._stores.get(name)
        if store is None:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"state store {name} is not found",
                reason="DAPR_STATE_NOT_FOUND",
            )
        return store

    @staticmethod
    def _store_key(store: StateStoreEntry, key: str) -> str:
        if "||" in key:
            message = f"input key/keyPrefix '{key}' can't contain '||'"
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                message,
                reason="DAPR_STATE_ILLEGAL_KEY",
                resource=("state", store.name),
                field_violations=[(key, message)],
            )
        return key if store.prefix is None else f"{store.prefix}||{key}"

    @staticmethod
    def _item_metadata(store: StateStoreEntry, expires_at: float | None) -> dict[str, str]:
        if expires_at is None or not store.backend.reports_expire_time:
            return {}
        return {"ttlExpireTime": format_expire_time(expires_at)}

    @staticmethod
    def _save_error(
        store: StateStoreEntry, detail: str, code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    ) -> ApiError:
        return ApiError(
            code, f"failed saving state in state store {store.name}: {detail}", reason="ERR_STATE_SAVE"
        )

    def _set_op(self, store: StateStoreEntry, item: common_pb2.StateItem, *, from_save: bool) -> SetOp:
        if from_save and not item.key:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT, "state key cannot be empty", reason="ERR_STATE_SAVE"
            )
        key = self._store_key(store, item.key)
        value = item.value
        # Only SaveState decodes JSON values; transaction upserts keep their bytes (as daprd).
        is_json = from_save and item.metadata.get("contentType") == "application/json"
        if is_json:
            try:
                value = normalize_json(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(grpc.StatusCode.UNKNOWN, go_json_error(value, exc)) from exc
        ttl = None
        raw_ttl = item.metadata.get("ttlInSeconds")
        if raw_ttl is not None:
            try:
                ttl = store.backend.parse_ttl(raw_ttl)
            except StoreError as exc:
                raise self._save_error(store, str(exc)) from exc
        concurrency = item.options.concurrency if item.HasField("options") else 0
        return SetOp(
            key=key,
            value=value,
            etag=(item.etag.value if item.HasField("etag") else None) or None,
            first_write=concurrency == _FIRST_WRITE,
            last_write=concurrency == _LAST_WRITE,
            ttl_seconds=ttl,
            is_json=is_json,
        )

    def _delete_op(
        self,
        store: StateStoreEntry,
        key: str,
        etag: common_pb2.Etag | None,
        options: common_pb2.StateOptions | None,
    ) -> DeleteOp:
        concurrency = options.concurrency if options is not None else 0
        return DeleteOp(
            key=self._store_key(store, key),
            etag=(etag.value if etag is not None else None) or None,
            first_write=concurrency == _FIRST_WRITE,
            last_write=concurrency == _LAST_WRITE,
        )

    @staticmethod
    def _etag_text(exc: StoreError) -> str:
        base = (
            "invalid etag value"
            if isinstance(exc, EtagInvalidError)
            else "possible etag mismatch. error from state store"
        )
        return f"{base}: {exc}" if str(exc) else base

    @staticmethod
    def _etag_code(exc: StoreError) -> grpc.StatusCode:
        if isinstance(exc, EtagMismatchError):
            return grpc.StatusCode.ABORTED
        if isinstance(exc, EtagInvalidError):
            return grpc.StatusCode.INVALID_ARGUMENT
        return grpc.StatusCode.INTERNAL

    async def GetState(
        self, request: state_pb2.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> state_pb2.GetStateResponse:
        try:
            store = self._store(request.store_name)
            key = self._store_key(store, request.key)
            try:
                item = await store.backend.get(key)
            except StoreError as exc:
                raise ApiError(
                    grpc.StatusCode.INTERNAL,
                    f"fail to get {request.key} from state store {store.name}: {exc}",
                    reason="ERR_STATE_GET",
                ) from exc
        except ApiError as error:
            await abort(context, error)
        if item is None:
            return state_pb2.GetStateResponse()
        return state_pb2.GetStateResponse(
            data=item.value, etag=item.etag, metadata=self._item_metadata(store, item.expires_at)
        )

    async def GetBulkState(
        self, request: state_pb2.GetBulkStateRequest, context: grpc.aio.ServicerContext
    ) -> state_pb2.GetBulkStateResponse:
        try:
            store = self._store(request.store_name)
            keys = [self._store_key(store, key) for key in request.keys]
        except ApiError as error:
            await abort(context, error)
        response = state_pb2.GetBulkStateResponse()
        try:
            items = await store.backend.bulk_get(keys)
        except StoreError as exc:
            await abort(context, ApiError(grpc.StatusCode.UNKNOWN, str(exc)))
        for key, item in zip(request.keys, items, strict=True):
            if item is None:
                response.items.add(key=key)
            else:
                response.items.add(
                    key=key,
                    data=item.value,
                    etag=item.etag,
                    metadata=self._item_metadata(store, item.expires_at),
                )
        return response

    async def SaveState(
        self, request: state_pb2.SaveStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            store = self._store(request.store_name)
            ops = [self._set_op(store, item, from_save=True) for item in request.states]
            if len(ops) == 1:
                try:
                    await store.backend.set(ops[0])
                except StoreError as exc:
                    raise self._save_error(
                        store,
                        self._etag_text(exc)
                        if isinstance(exc, (EtagMismatchError, EtagInvalidError))
                        else str(exc),
                        self._etag_code(exc),
                    ) from exc
            elif ops:
                # daprd's BulkSet: every item in parallel, not atomic, errors joined.
                results = await asyncio.gather(*(store.backend.set(op) for op in ops), return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                for failure in failures:
                    if not isinstance(failure, StoreError):
                        raise failure
                if failures:
                    joined = "\n".join(
                        self._etag_text(f) if isinstance(f, (EtagMismatchError, EtagInvalidError)) else str(f)
                        for f in failures
                    )  # type: ignore[arg-type]
                    if all(isinstance(f, (EtagMismatchError, EtagInvalidError)) for f in failures):
                        invalid = any(isinstance(f, EtagInvalidError) for f in failures)
                        prefix = (
                            "invalid etag value"
                            if invalid
                            else "possible etag mismatch. error from state store"
                        )
                        code = grpc.StatusCode.INVALID_ARGUMENT if invalid else grpc.StatusCode.ABORTED
                        raise self._save_error(store, f"{prefix}: {joined}", code)
                    raise self._save_error(store, joined)
        except ApiError as error:
            await abort(context, error)
        return empty_pb2.Empty()

    async def _delete(self, store: StateStoreEntry, user_key: str, op: DeleteOp, *, bulk: bool) -> None:
        try:
            await store.backend.delete(op)
        except StoreError as exc:
            detail = (
                self._etag_text(exc) if isinstance(exc, (EtagMismatchError, EtagInvalidError)) else str(exc)
            )
            if bulk:
                raise ApiError(
                    self._etag_code(exc),
                    f"failed deleting state in state store {store.name}: {detail}",
                    reason="ERR_STATE_BULK_DELETE",
                ) from exc
            raise ApiError(
                self._etag_code(exc),
                f"failed deleting state with key {user_key}: {detail}",
                reason="ERR_STATE_DELETE",
            ) from exc

    async def DeleteState(
        self, request: state_pb2.DeleteStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            store = self._store(request.store_name)
            op = self._delete_op(
                store,
                request.key,
                request.etag if request.HasField("etag") else None,
                request.options if request.HasField("options") else None,
            )
            await self._delete(store, request.key, op, bulk=False)
        except ApiError as error:
            await abort(context, error)
        return empty_pb2.Empty()

    async def DeleteBulkState(
        self, request: state_pb2.DeleteBulkStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            store = self._store(request.store_name)
            ops = [
                (
                    item.key,
                    self._delete_op(
                        store,
                        item.key,
                        item.etag if item.HasField("etag") else None,
                        item.options if item.HasField("options") else None,
                    ),
                )
                for item in request.states
            ]
            for user_key, op in ops:
                await self._delete(store, user_key, op, bulk=True)
        except ApiError as error:
            await abort(context, error)
        return empty_pb2.Empty()

    async def ExecuteStateTransaction(
        self, request: state_pb2.ExecuteStateTransactionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            store = self._store(request.storeName)
            outbox = self._outbox if self._outbox is not None and self._outbox.enabled(store.name) else None
            upserts: list[Upsert] = []
            ops: list[StateOp] = []
            for operation in request.operations:
                item = operation.request
                if operation.operationType == "upsert":
                    op = self._set_op(store, item, from_save=False)
                    if outbox is not None:
                        upserts.append(Upsert(op.key, op.value, dict(item.metadata)))
                        if upserts[-1].is_projection:
                            continue  # published for the upsert of its key, never saved
                    ops.append(op)
                elif operation.operationType == "delete":
                    ops.append(
                        self._delete_op(
                            store,
                            item.key,
                            item.etag if item.HasField("etag") else None,
                            item.options if item.HasField("options") else None,
                        )
                    )
                else:
                    raise ApiError(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"operation type {operation.operationType} not supported",
                        reason="ERR_NOT_SUPPORTED_STATE_OPERATION",
                    )
            if outbox is not None:
                try:
                    markers = await outbox.publish_internal(store.name, upserts)
                except OutboxError as exc:
                    raise ApiError(
                        grpc.StatusCode.INTERNAL,
                        f"error while publishing outbox message: {exc}",
                        reason="DAPR_PUBSUB_OUTBOX",
                        metadata={"appID": self._app_id, "error": str(exc)},
                    ) from exc
                ops += [outbox.marker_op(marker) for marker in markers]
            try:
                await store.backend.transact(ops)
            except StoreError as exc:
                detail = (
                    self._etag_text(exc)
                    if isinstance(exc, (EtagMismatchError, EtagInvalidError))
                    else str(exc)
                )
                raise ApiError(
                    grpc.StatusCode.INTERNAL,
                    f"error while executing state transaction: {detail}",
                    reason="ERR_STATE_TRANSACTION",
                ) from exc
        except ApiError as error:
            await abort(context, error)
        return empty_pb2.Empty()

    async def QueryStateAlpha1(
        self, request: state_pb2.QueryStateRequest, context: grpc.aio.ServicerContext
    ) -> state_pb2.QueryStateResponse:
        try:
            store = self._store(request.store_name)
            if store.type == "state.redis":
                # daprd's Redis store needs the RedisJSON module to query, which is not offered.
                raise ApiError(
                    grpc.StatusCode.INTERNAL,
                    f"state store {store.name} query failed: redis-json server support is required for query capability",
                    reason="DAPR_STATE_QUERY_FAILED",
                    resource=("state", store.name),
                )
            raise ApiError(
                grpc.StatusCode.INTERNAL,
                "state store does not support querying",
                reason="DAPR_STATE_QUERYING_NOT_SUPPORTED",
                resource=("state", store.name),
            )
        except ApiError as error:
            await abort(context, error)

    # -- pub/sub ------------------------------------------------------------------------------

    def _pubsub(self, name: str, metadata: Mapping[str, str]) -> PubSub:
        if not name:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "pubsub name is empty",
                reason="DAPR_PUBSUB_NAME_EMPTY",
                resource=("pubsub", name),
                metadata=metadata,
            )
        pubsub = self._pubsubs.get(name)
        if pubsub is None:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"pubsub {name} is not found",
                reason="DAPR_PUBSUB_NOT_FOUND",
            )
        return pubsub

    def _bus_message(
        self, pubsub: PubSub, topic: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> BusMessage:
        raw = metadata.get("rawPayload", "")
        if raw and raw.lower() not in _GO_BOOLS:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"failed deserializing metadata. Error: rawPayload value must be a valid boolean: actual is '{raw}'",
                reason="DAPR_PUBSUB_METADATA_DESERIALIZATION",
            )
        if raw and _GO_BOOLS[raw.lower()]:
            return BusMessage(
                data=data, content_type=content_type, metadata={**metadata, "traceid": "", "tracestate": ""}
            )
        try:
            event = build_cloud_event(
                app_id=self._app_id,
                pubsub_name=pubsub.name,
                topic=topic,
                data=data,
                content_type=content_type,
                metadata=metadata,
            )
        except ValueError as exc:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "cannot create cloudevent",
                reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION",
                resource=("pubsub", pubsub.name),
                metadata={"appID": self._app_id, "error": str(exc)},
            ) from exc
        return BusMessage(data=encode_event(event), content_type=CLOUDEVENTS_JSON, metadata=metadata)

    async def PublishEvent(
        self, request: pubsub_pb2.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        metadata = dict(request.metadata)
        try:
            pubsub = self._pubsub(request.pubsub_name, metadata)
            if not request.topic:
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"topic is empty in pubsub {request.pubsub_name}",
                    reason="DAPR_PUBSUB_TOPIC_NAME_EMPTY",
                    resource=("pubsub", request.pubsub_name),
                    metadata=metadata,
                )
            message = self._bus_message(
                pubsub, request.topic, request.data, request.data_content_type, metadata
            )
            try:
                await pubsub.publish(request.topic, message)
            except RuntimeError as exc:
                raise ApiError(
                    grpc.StatusCode.INTERNAL,
                    f"error when publishing to topic {request.topic} in pubsub {pubsub.name}: {exc}",
                    reason="DAPR_PUBSUB_PUBLISH_MESSAGE",
                    resource=("pubsub", pubsub.name),
                    metadata={"topic": request.topic, "error": str(exc)},
                ) from exc
        except ApiError as error:
            await abort(context, error)
        return empty_pb2.Empty()

    async def BulkPublishEventAlpha1(
        self, request: pubsub_pb2.BulkPublishRequest, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        response = pubsub_pb2.BulkPublishResponse()
        try:
            pubsub = self._pubsub(request.pubsub_name, dict(request.metadata))
            messages = []
            for entry in request.entries:
                metadata = {**dict(request.metadata), **dict(entry.metadata)}
                try:
                    messages.append(
                        self._bus_message(pubsub, request.topic, entry.event, entry.content_type, metadata)
                    )
                except ApiError as error:
                    response.failedEntries.add(entry_id=entry.entry_id, error=error.message)
            # daprd's default bulk publisher hands every entry to the component concurrently.
            await asyncio.gather(*(pubsub.publish(request.topic, message) for message in messages))
        except ApiError as error:
            await abort(context, error)
        return response

    async def BulkPublishEvent(
        self, request: pubsub_pb2.BulkPublishRequest, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        return await self.BulkPublishEventAlpha1(request, context)

    @staticmethod
    def _topic_event(subscriber: Subscriber, event: dict[str, Any]) -> appcallback_pb2.TopicEventRequest:
        extensions = struct_pb2.Struct()
        extensions.update(event_extensions(event))
        try:
            data = event_data_bytes(event)
        except ValueError:
            data = b""

        def text(key: str) -> str:
            value = event.get(key)
            return value if isinstance(value, str) else ""

        return appcallback_pb2.TopicEventRequest(
            id=text("id"),
            source=text("source"),
            type=text("type"),
            spec_version=text("specversion"),
            data_content_type=text("datacontenttype"),
            data=data,
            topic=subscriber.topic,
            pubsub_name=subscriber.pubsub,
            path="/",
            extensions=extensions,
        )

    async def SubscribeTopicEventsAlpha1(
        self,
        request_iterator: AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pubsub_pb2.SubscribeTopicEventsResponseAlpha1]:
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        initial = first.initial_request
        try:
            # daprd answers these with plain errors (code UNKNOWN) before any response.
            if not first.HasField("initial_request"):
                raise ApiError(grpc.StatusCode.UNKNOWN, "initial request is required")
            if not initial.pubsub_name:
                raise ApiError(grpc.StatusCode.UNKNOWN, "pubsubName is required")
            if not initial.topic:
                raise ApiError(grpc.StatusCode.UNKNOWN, "topic is required")
            pubsub = self._pubsub(initial.pubsub_name, dict(initial.metadata))
            try:
                subscriber = await pubsub.subscribe(
                    initial.topic, initial.dead_letter_topic, dict(initial.metadata)
                )
            except RuntimeError as exc:  # the broker refused (Redis unreachable, a wrong key type)
                raise ApiError(
                    grpc.StatusCode.UNKNOWN,
                    f"failed to create subscription for {initial.pubsub_name}: "
                    f"failed to subscribe to topic {initial.topic}: {exc}",
                ) from exc
        except ApiError as error:
            await abort(context, error)
        connection_id = next(self._connection_ids)
        self._streams[connection_id] = initial
        outcome: dict[str, str] = {}

        async def read_acks() -> None:
            async for message in request_iterator:
                if message.HasField("event_processed"):
                    processed = message.event_processed
                    status = processed.status.status if processed.HasField("status") else 0
                    if not subscriber.acknowledge(processed.id, status):
                        _log.debug(
                            "ack for unknown event %s on %s/%s",
                            processed.id,
                            subscriber.pubsub,
                            subscriber.topic,
                        )
                elif message.HasField("initial_request"):
                    outcome["error"] = "duplicate initial request received"
                    return

        reader = asyncio.get_running_loop().create_task(read_acks())
        try:
            yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
            )
            while True:
                getter = asyncio.ensure_future(subscriber.outbox.get())
                try:
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter not in done:
                    # daprd ends the stream when the client half-closes (Recv returns io.EOF,
                    # which gRPC reports as UNKNOWN "EOF") or breaks the protocol.
                    outcome.setdefault("error", "EOF")
                    break
                yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                    event_message=self._topic_event(subscriber, getter.result())
                )
        finally:
            # Before the client hears that the stream ended: the metadata no longer lists it then.
            del self._streams[connection_id]
            pubsub.unsubscribe(subscriber)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if "error" in outcome:
            await abort(context, ApiError(grpc.StatusCode.UNKNOWN, outcome["error"]))

    # -- metadata -----------------------------------------------------------------------------

    def stream_subscriptions(self) -> list[dict[str, object]]:
        """The open streaming subscriptions as daprd's HTTP metadata document lists them."""
        listed: list[dict[str, object]] = []
        for initial in self._streams.values():
            entry: dict[str, object] = {"pubsubname": initial.pubsub_name, "topic": initial.topic}
            if initial.metadata:  # omitempty in daprd's document
                entry["metadata"] = dict(initial.metadata)
            entry.update(rules=[{"path": "/"}], deadLetterTopic=initial.dead_letter_topic, type="STREAMING")
            listed.append(entry)
        return listed

    async def GetMetadata(
        self, request: metadata_pb2.GetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> metadata_pb2.GetMetadataResponse:
        response = metadata_pb2.GetMetadataResponse(
            id=self._app_id,
            runtime_version=DAPR_RUNTIME_VERSION,
            enabled_features=["HotReload", "WorkflowsRemoteActivityReminder"],
            extended_metadata={**self._extended, "daprRuntimeVersion": DAPR_RUNTIME_VERSION},
        )
        for name, component_type, version, capabilities in self._components:
            response.registered_components.add(
                name=name, type=component_type, version=version, capabilities=list(capabilities)
            )
        connection = response.app_connection_properties
        connection.protocol = str(self._app_connection.get("protocol", "http"))
        connection.channel_address = str(self._app_connection.get("channelAddress", "127.0.0.1"))
        connection.port = int(self._app_connection.get("port", 0))
        health = self._app_connection.get("health")
        if health:
            connection.health.health_check_path = health.get("healthCheckPath", "")
            connection.health.health_probe_interval = health["healthProbeInterval"]
            connection.health.health_probe_timeout = health["healthProbeTimeout"]
            connection.health.health_threshold = health["healthThreshold"]
        response.actor_runtime.runtime_status = metadata_pb2.ActorRuntime.DISABLED
        response.actor_runtime.placement = "placement: disconnected"
        response.workflows.connected_workers = self._connected_workers()
        self.add_app_subscriptions(response)
        for initial in self._streams.values():
            subscription = response.subscriptions.add(
                pubsub_name=initial.pubsub_name,
                topic=initial.topic,
                dead_letter_topic=initial.dead_letter_topic,
                metadata=dict(initial.metadata),
                type=metadata_pb2.PubsubSubscriptionType.STREAMING,
            )
            subscription.rules.rules.add(path="/")
        return response

    async def SetMetadata(
        self, request: metadata_pb2.SetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        if request.key:
            self._extended[request.key] = request.value
        return empty_pb2.Empty()

    # -- conversation -------------------------------------------------------------------------

    def _conversation(self, name: str) -> ConversationBackend:
        backend = self._conversations.get(name)
        if backend is None:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"failed finding conversation component {name}")
        return backend

    async def ConverseAlpha2(
        self, request: ai_pb2.ConversationRequestAlpha2, context: grpc.aio.ServicerContext
    ) -> ai_pb2.ConversationResponseAlpha2:
        try:
            backend = self._conversation(request.name)
            validate_alpha2(request)
            return await backend.converse_alpha2(request)
        except ConversationError as exc:
            await abort(
                context, ApiError(exc.code, f"failed conversing with component {request.name}: {exc}")
            )
        except ApiError as error:
            await abort(context, error)

    async def ConverseAlpha1(
        self, request: ai_pb2.ConversationRequest, context: grpc.aio.ServicerContext
    ) -> ai_pb2.ConversationResponse:
        try:
            backend = self._conversation(request.name)
            if not request.inputs:
                raise ConversationError("missing inputs in request", grpc.StatusCode.INVALID_ARGUMENT)
            return await backend.converse_alpha1(request)
        except ConversationError as exc:
            await abort(
                context, ApiError(exc.code, f"failed conversing with component {request.name}: {exc}")
            )
        except ApiError as error:
            await abort(context, error)


def _unimplemented(method: str) -> Any:
    async def handler(self: DaprApi, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(
            context,
            ApiError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"the dev sidecar does not implement {method}; it serves state, pub/sub, metadata, "
                "conversation, secrets, configuration and locks (see the dapr-agents-ext-devsidecar "
                "README)",
            ),
        )

    handler.__name__ = method
    return handler


# The generated base class raises NotImplementedError, which gRPC reports as UNKNOWN with a
# server-side traceback; answer UNIMPLEMENTED with a message naming the method instead.
for _method in dir(dapr_pb2_grpc.DaprServicer):
    if _method[0].isupper() and _method not in DaprApi.__dict__:
        setattr(DaprApi, _method, _unimplemented(_method))
