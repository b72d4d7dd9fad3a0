"""Running the sync engine over one gRPC stream: the thin, store-agnostic glue.

A KDS stream carries one direction of data. Its sending end runs `run_sender`, its receiving
end `run_receiver`; which end is the gRPC client does not matter (both take a `Duplex`: a
grpc.aio call or a servicer context). Each runs a reader task and a writer task, so a side
that is busy writing (blocked by HTTP/2 flow control) still reads its peer's messages: the
flow-control deadlock of Kuma #14486 cannot happen. meshfed/kds/server.py (global) and
meshfed/kds/client.py (zone) use these to serve both streams of a zone, with heartbeats and a
stale-stream timeout.

What the caller provides
------------------------
Sending side - a `ResourceSource`:
  * `snapshot(type) -> list[WireResource]`: the complete set of that type this peer should
    have, already in wire form (`messages.to_wire` of `naming.outgoing_from_global(res)` on
    the global, filtered with `naming.sends_to_zone`; `naming.outgoing_from_zone` on a zone).
    Cache wire forms and share them between zones: they are immutable.
  * `listen(callback) -> unlisten`: the callback is called synchronously, in commit order, for
    every later change: `SourceChange(type, key, resource)` (resource None = deleted), or
    `SourceChange(type, None)` when the source lost track (e.g. its store watch was
    compacted) and the whole type must be read again. `listen` is called before the first
    `snapshot`, so nothing falls between the two.
  `DictSource` below is a complete in-memory implementation.
Receiving side - a `ReceiveSide`:
  * `receiver`: a `Receiver` holding the versions already stored (rebuild with
    `naming.held_in_zone` / `naming.held_at_global` after a restart; a zone may keep one
    across reconnects).
  * `apply(changes)`: stores a ChangeSet atomically (upserts and removes of one type, in wire
    form: on the global map each through `naming.stored_at_global`). If it raises, nothing is
    committed or ACKed and the stream ends; after the reconnect the sender sends it again.
  * `validate(resource) -> reason | None`: per-resource check; a reason NACKs that resource.
Nothing is deleted when a stream ends; only explicit removes reach `apply`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from meshfed._gen import kds_pb2 as pb
from meshfed.aio import first_completed as first_completed  # re-exported: its old home
from meshfed.kds.convert import request_from_pb, request_to_pb, response_from_pb, response_to_pb
from meshfed.kds.messages import KdsProtocolError, SyncRequest, WireResource
from meshfed.kds.metrics import StreamMetrics
from meshfed.kds.receiver import ChangeSet, Receiver, Validate
from meshfed.kds.sender import Sender
from meshfed.resources.model import Key

log = logging.getLogger("meshfed.kds")

CLIENT_ID = "client-id"  # gRPC metadata key carrying the zone name (as Kuma)
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # (missing from grpc-stubs)


@dataclass(frozen=True, slots=True)
class SourceChange:
    type: str
    key: Key | None  # None: read the whole type again
    resource: WireResource | None = None  # None with a key: deleted


Listener = Callable[[SourceChange], None]


class ResourceSource(Protocol):
    async def snapshot(self, type_name: str) -> list[WireResource]: ...

    def listen(self, listener: Listener) -> Callable[[], None]: ...


Apply = Callable[[ChangeSet], Awaitable[None]]


@dataclass
class ReceiveSide:
    receiver: Receiver
    apply: Apply
    validate: Validate


class Duplex(Protocol):
    """A bidirectional stream: grpc.aio's StreamStreamCall or a servicer context."""

    async def read(self) -> object: ...

    async def write(self, message: Any) -> None: ...


class Liveness:
    """When the peer was last heard from (a message or a heartbeat), on the monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_seen = clock()

    def touch(self) -> None:
        self.last_seen = self._clock()

    def idle(self) -> float:
        return self._clock() - self.last_seen


class DictSource:
    """An in-memory ResourceSource: a dict per type, notifying listeners on every change."""

    def __init__(self, resources: Iterable[tuple[str, WireResource]] = ()) -> None:
        self._data: dict[str, dict[Key, WireResource]] = {}
        self._listeners: list[Listener] = []
        for type_name, res in resources:
            self._data.setdefault(type_name, {})[res.key] = res

    async def snapshot(self, type_name: str) -> list[WireResource]:
        return list(self._data.get(type_name, {}).values())

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def put(self, type_name: str, res: WireResource) -> None:
        self._data.setdefault(type_name, {})[res.key] = res
        self._notify(SourceChange(type_name, res.key, res))

    def delete(self, type_name: str, key: Key) -> None:
        if self._data.get(type_name, {}).pop(key, None) is not None:
            self._notify(SourceChange(type_name, key, None))

    def get(self, type_name: str) -> dict[Key, WireResource]:
        return dict(self._data.get(type_name, {}))

    def _notify(self, change: SourceChange) -> None:
        for listener in list(self._listeners):
            listener(change)


async def run_sender(
    duplex: Duplex,
    sender: Sender,
    source: ResourceSource,
    *,
    liveness: Liveness | None = None,
    metrics: StreamMetrics | None = None,
    gather: float = 0.0,
) -> None:
    """Sends `source` to the peer until the stream ends (returns) or fails (raises);
    `metrics` counts what passes (meshfed.kds.metrics). `gather`: seconds to wait once woken
    before sending, so a burst of changes goes in one response, not one each (a gRPC write
    costs far more than a resource in it: issue 19, decision 172)."""
    types = set(sender.types)
    # Every type is (re)loaded first; changes queue behind the load in commit order.
    queue: deque[SourceChange] = deque(SourceChange(t, None) for t in sender.types)
    wake = asyncio.Event()
    wake.set()

    def on_change(change: SourceChange) -> None:
        if change.type in types:
            queue.append(change)
            wake.set()

    async def reader() -> None:
        while True:
            msg = await duplex.read()
            if msg is EOF:
                return
            if not isinstance(msg, pb.SyncRequest):
                raise KdsProtocolError(f"expected a SyncRequest, got {type(msg).__name__}")
            if liveness is not None:
                liveness.touch()
            try:
                req = request_from_pb(msg)
                answers = not req.is_subscribe and sender.in_flight(req.type)
                sender.handle_request(req)
            except KdsProtocolError as exc:
                log.warning("ignoring a request from the peer: %s", exc)
            else:
                if answers and not sender.in_flight(req.type):  # not a stale reply
                    _replied(req, metrics)
            wake.set()

    async def writer() -> None:
        while True:
            await wake.wait()
            if gather:
                await asyncio.sleep(gather)
            wake.clear()
            while queue:
                change = queue.popleft()
                if change.key is None:
                    sender.replace_all(change.type, await source.snapshot(change.type))
                elif change.resource is None:
                    sender.remove(change.type, change.key)
                else:
                    sender.upsert(change.type, change.resource)
            for error in sender.drain_errors():
                log.error("%s", error)
            for type_name in sender.ready_types():
                resp = sender.next_response(type_name)
                if resp is not None:
                    message = response_to_pb(resp)
                    if metrics is not None:
                        metrics.response_sent(resp, message.ByteSize())
                    await duplex.write(message)

    unlisten = source.listen(on_change)
    try:
        await first_completed(reader(), writer())
    finally:
        unlisten()
        sender.disconnect()


def _replied(req: SyncRequest, metrics: StreamMetrics | None) -> None:
    """The peer answered what was in flight: counted, and a NACK logged with its reason."""
    if metrics is not None:
        metrics.reply_received(req.type, req.error_detail is not None)
    if req.error_detail is not None:
        zone = metrics.zone if metrics is not None else ""
        log.warning(
            "zone %s NACKed %s: %s",
            zone or "?",
            req.type,
            req.error_detail.message,
            extra={
                "event": "nack-received",
                "zone": zone,
                "type": req.type,
                "reason": req.error_detail.message,
            },
        )


async def run_receiver(
    duplex: Duplex,
    side: ReceiveSide,
    *,
    liveness: Liveness | None = None,
    metrics: StreamMetrics | None = None,
) -> None:
    """Subscribes, then applies what arrives and answers it, until the stream ends or fails;
    `metrics` counts what passes (meshfed.kds.metrics)."""
    outbox: asyncio.Queue[SyncRequest] = asyncio.Queue()
    for req in side.receiver.subscribe_requests():
        outbox.put_nowait(req)

    async def reader() -> None:
        while True:
            msg = await duplex.read()
            if msg is EOF:
                return
            if not isinstance(msg, pb.SyncResponse):
                raise KdsProtocolError(f"expected a SyncResponse, got {type(msg).__name__}")
            if liveness is not None:
                liveness.touch()
            resp = response_from_pb(msg)
            if metrics is not None:
                metrics.response_received(resp, msg.ByteSize())
            changes, reply = side.receiver.handle_response(resp, side.validate)
            if not changes.empty:
                await side.apply(changes)  # raises: nothing committed, nothing answered
            side.receiver.commit(changes)
            nack = reply.error_detail is not None
            if reply.error_detail is not None:
                zone = metrics.zone if metrics is not None else ""
                log.warning(
                    "rejected %s%s: %s",
                    reply.type,
                    f" (zone {zone})" if zone else "",
                    reply.error_detail.message,
                    extra={
                        "event": "nack-sent",
                        "zone": zone,
                        "type": reply.type,
                        "reason": reply.error_detail.message,
                    },
                )
            if metrics is not None:
                metrics.reply_sent(reply.type, nack)
            outbox.put_nowait(reply)

    async def writer() -> None:
        while True:
            await duplex.write(request_to_pb(await outbox.get()))

    await first_completed(reader(), writer())


def grpc_options(max_message_size: int) -> list[tuple[str, int]]:
    """Channel/server options: message limits a little above the engine's, so a response the
    engine built always passes, and keepalive pings (as Kuma: every 15 s) that both ends accept."""
    limit = max_message_size + 64 * 1024
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_time_ms", 15_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # grpcio 1.85 closes the connection of an unanswered ping only with this set too
        # (decision 121; zone_cp/dpserver.py, decision 116).
        ("grpc.http2.ping_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ]
