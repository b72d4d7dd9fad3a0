"""The global's side of KDS: both streams of every zone, its heartbeats, and stale-stream closing.

Store-agnostic: the global-cp passes `GlobalHooks` (what each zone gets, where what it sends
goes, what to do when it connects) and reads `sessions` for ZoneInsight and `_sync`.

- The zone is named by the `client-id` gRPC metadata, never by payload, and proves it with a
  zone token (`authorization: Bearer ...`, meshfed.kds.auth): every call is authenticated
  before anything else happens (no session, no hook, no Zone, nothing sent); a refused call
  leaves no trace but a log line. Its zone-cp process names itself by `client-instance-id`.
- A zone counts as connected while it has at least one stream open. A new stream of the same
  instance replaces the old one in its direction, and a new instance replaces an old one that
  has gone silent (after a zone restart the old streams may linger half-dead). A second
  instance while the first is alive (two zone-cps with one --zone) is refused with
  ALREADY_EXISTS, recorded as the zone's `last_error`: otherwise the two would replace each
  other's streams forever, each time resyncing. The refused caller learns nothing about the
  live instance (its id and timing are for the admin's ZoneOverview and the log only).
- Both streams answer with initial metadata `kds-accepted` once the zone is accepted, so a
  zone knows it is connected even when there is nothing to sync (and only then resets its
  reconnect backoff: a refused zone keeps backing off).
- A zone that is silent (no heartbeat, no message) for `stale_timeout` has its streams closed
  with UNAVAILABLE, so it reconnects and the global stops trusting a dead connection (Kuma
  #13624, #16428). Closing a stream never deletes anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.aio import wait_for
from meshfed.kds.auth import CLIENT_INSTANCE, KdsAuthenticator, KdsRequest, Refusal
from meshfed.kds.messages import DEFAULT_MAX_MESSAGE_SIZE
from meshfed.kds.metrics import KdsMetrics, StreamMetrics
from meshfed.kds.receiver import Receiver
from meshfed.kds.sender import Sender
from meshfed.kds.stream import (
    Liveness,
    ReceiveSide,
    ResourceSource,
    first_completed,
    run_receiver,
    run_sender,
)

log = logging.getLogger("meshfed.kds")

GLOBAL_TO_ZONE = "global-to-zone"
ZONE_TO_GLOBAL = "zone-to-global"
Context = grpc.aio.ServicerContext[Any, Any]
__all__ = ["ACCEPTED", "CLIENT_INSTANCE", "KdsServer", "ZoneRejected", "ZoneSession"]
ACCEPTED = "kds-accepted"  # initial metadata of a stream the global accepted
# How long a refused stream waits for the client's first message before ending (see
# `_read_first`): a client that writes at once has written by then; one that waits to be
# accepted (zone-cp) sends nothing, and is refused this much later.
REFUSAL_READ_WAIT = 0.25


async def end_call(context: Context, code: grpc.StatusCode, details: str) -> None:
    """Ends the call with `code` by aborting (which raises AbortError), unless the call is
    already over: the peer cancelled it, or it ended while a stop was being handled. Aborting
    such a call fails inside grpc (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS, ExecuteBatchError)
    and only adds a misleading error to the log; there is nobody left to tell."""
    if context.done() or context.cancelled():
        log.debug("not ending an already closed call with %s: %s", code.name, details)
        return
    try:
        await context.abort(code, details)
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # the call closed between the check and the abort
        log.debug("call closed before it could end with %s (%s): %r", code.name, details, exc)


class ZoneRejected(Exception):
    """Raised by `GlobalHooks.zone_connected` to refuse a zone; the message goes to the zone."""


class GlobalHooks(Protocol):
    async def zone_connected(self, zone: str) -> None:
        """First stream of a zone opened (e.g. create its Zone resource; must be idempotent).
        May raise ZoneRejected."""

    async def zone_disconnected(self, zone: str) -> None:
        """Last stream of a zone closed: mark it offline (its inventory stays)."""

    async def down_source(self, zone: str) -> ResourceSource:
        """What this zone should hold (filtered with naming.sends_to_zone)."""

    async def up_side(self, zone: str) -> ReceiveSide:
        """Where this zone's inventory goes, with a Receiver rebuilt from the store."""


@dataclass
class ZoneSession:
    """One zone as the global sees it: connection, heartbeats and both engines (insight)."""

    zone: str
    liveness: Liveness
    connected_time: float | None = None  # wall clock
    disconnected_time: float | None = None
    last_health_check_time: float | None = None
    health_checks: int = 0
    announced: bool = False  # zone_connected succeeded and zone_disconnected is still due
    instance: str = ""  # the zone-cp instance whose streams these are ("" if it sent none)
    last_error: str = ""  # why the zone was last refused (another live instance)
    last_error_time: float | None = None  # wall clock
    down: Sender | None = None  # the current global -> zone engine
    up: Receiver | None = None  # the current zone -> global engine
    # direction -> how to stop that stream (sets the reason and wakes its handler)
    _stops: dict[str, Callable[[str], None]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)  # set while no stream is open

    @property
    def connected(self) -> bool:
        return bool(self._stops)

    async def wait_closed(self, timeout: float) -> bool:
        """Until every stream of the zone has ended and its disconnection was handled (True),
        or `timeout` passed (False)."""
        if not self.connected and not self.announced:
            return True
        try:
            await wait_for(self._ended.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self, reason: str) -> None:
        """Ends every open stream of the zone with UNAVAILABLE and `reason`."""
        for stop in list(self._stops.values()):
            stop(reason)


class KdsServer(pb_grpc.KDSServicer):
    def __init__(
        self,
        hooks: GlobalHooks,
        down_types: Sequence[str],
        *,
        authenticator: KdsAuthenticator,
        health_interval: float = 5.0,
        stale_timeout: float = 30.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        clock: Callable[[], float] = time.time,
        metrics: KdsMetrics | None = None,
    ) -> None:
        """`metrics`: where each zone's streams are counted (None: nowhere)."""
        self._hooks = hooks
        self._metrics = metrics
        self._auth = authenticator
        self._down_types = list(down_types)
        self._health_interval = health_interval
        self._stale_timeout = stale_timeout
        self._max = max_message_size
        self._clock = clock
        self._sessions: dict[str, ZoneSession] = {}
        # An instance heard from this recently is alive: another one is refused meanwhile.
        self._instance_window = min(stale_timeout, max(2.5 * health_interval, 0.5))

    @property
    def sessions(self) -> Mapping[str, ZoneSession]:
        return self._sessions

    # -- RPCs ------------------------------------------------------------------------------
    # grpc.aio lets a streaming handler use context.read()/write() and return None; the
    # generated base class only knows the iterator style, hence the ignores.

    async def GlobalToZoneSync(  # type: ignore[override]
        self, request_iterator: object, context: Context
    ) -> None:
        async def body(session: ZoneSession) -> None:
            sender = Sender(self._down_types, max_message_size=self._max)
            session.down = sender
            source = await self._hooks.down_source(session.zone)
            metrics = self._stream_metrics(session.zone, GLOBAL_TO_ZONE)
            await run_sender(context, sender, source, liveness=session.liveness, metrics=metrics)

        await self._serve(context, GLOBAL_TO_ZONE, body)

    async def ZoneToGlobalSync(  # type: ignore[override]
        self, request_iterator: object, context: Context
    ) -> None:
        async def body(session: ZoneSession) -> None:
            side = await self._hooks.up_side(session.zone)
            session.up = side.receiver
            metrics = self._stream_metrics(session.zone, ZONE_TO_GLOBAL)
            await run_receiver(context, side, liveness=session.liveness, metrics=metrics)

        await self._serve(context, ZONE_TO_GLOBAL, body)

    async def HealthCheck(
        self, request: pb.HealthCheckRequest, context: Context
    ) -> pb.HealthCheckResponse:
        caller = await self._admit(context)
        zone, instance = caller.zone, caller.instance
        session = self._session(zone)
        refusal = self._other_instance(session, instance)
        if refusal:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, refusal)
        if not session.connected or instance in ("", session.instance) or not session.instance:
            # (A new instance's heartbeat must not keep a dead one's streams alive.)
            session.liveness.touch()
            session.last_health_check_time = self._clock()
            session.health_checks += 1
        return pb.HealthCheckResponse(interval_ms=max(1, round(self._health_interval * 1000)))

    # -- internals ---------------------------------------------------------------------------

    def _stream_metrics(self, zone: str, direction: str) -> StreamMetrics | None:
        return self._metrics.stream(zone, direction) if self._metrics is not None else None

    async def _admit(self, context: Context) -> KdsRequest:
        """The authenticated zone of a call, or the call is aborted with why not."""
        result = await self._auth.authenticate(context.invocation_metadata())
        if isinstance(result, Refusal):
            peer = context.peer() if hasattr(context, "peer") else "?"
            log.warning("KDS call from %s refused: %s", peer, result.message)
            await context.abort(result.code, result.message)
            raise AssertionError("unreachable: abort raises")  # pragma: no cover
        return result

    def _session(self, zone: str) -> ZoneSession:
        session = self._sessions.get(zone)
        if session is None:
            session = self._sessions[zone] = ZoneSession(zone, Liveness())
        return session

    async def _serve(
        self,
        context: Context,
        direction: str,
        body: Callable[[ZoneSession], Awaitable[None]],
    ) -> None:
        caller = await self._admit(context)
        zone, instance = caller.zone, caller.instance
        session = self._session(zone)
        refusal = self._other_instance(session, instance)
        if refusal:
            await _read_first(context)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, refusal)
        if instance and session.instance and instance != session.instance:
            session.close(f"replaced by instance {instance} of zone {zone!r}")
        elif (old_stop := session._stops.get(direction)) is not None:
            old_stop("replaced by a newer stream from the same zone")
        if instance:
            session.instance = instance
        stopped = asyncio.Event()
        reason = ""

        def stop(why: str) -> None:
            nonlocal reason
            reason = why
            stopped.set()

        session._stops[direction] = stop
        session._ended.clear()
        session.liveness.touch()
        failure: Exception | None = None
        refused = ""
        try:
            async with session._lock:  # the other stream waits until the zone is announced
                if not session.announced:
                    await self._connected(session)
            await context.send_initial_metadata(((ACCEPTED, "true"),))
            await first_completed(body(session), stopped.wait(), self._watchdog(session, stop))
        except ZoneRejected as exc:
            log.warning("zone %s refused: %s", zone, exc)
            refused = str(exc) or f"zone {zone!r} refused"
        except Exception as exc:  # the peer's bad input or a failing hook: end this stream only
            failure = exc
        finally:
            if session._stops.get(direction) is stop:
                del session._stops[direction]
            if not session.connected and session.announced:
                await self._disconnected(session)
            if not session.connected:
                session._ended.set()
        if refused:
            await end_call(context, grpc.StatusCode.PERMISSION_DENIED, refused)
        elif failure is not None:
            log.warning(
                "zone %s: %s stream failed: %r",
                zone,
                direction,
                failure,
                extra={"event": "stream-failed", "zone": zone, "reason": str(failure)},
            )
            await end_call(
                context, grpc.StatusCode.INTERNAL, f"{direction} stream failed: {failure}"
            )
        elif stopped.is_set():
            log.info(
                "zone %s: closing %s stream: %s",
                zone,
                direction,
                reason,
                extra={"event": "stream-closed", "zone": zone, "reason": reason},
            )
            await end_call(context, grpc.StatusCode.UNAVAILABLE, reason)

    def _other_instance(self, session: ZoneSession, instance: str) -> str:
        """Why `instance` is refused: the zone is connected from another instance that is
        still alive ("" when it may connect)."""
        if not instance or not session.instance or instance == session.instance:
            return ""
        idle = session.liveness.idle()
        if not session.connected or idle >= self._instance_window:
            return ""  # the old instance is gone or silent: the new one replaces it
        detail = (
            f"zone {session.zone!r} is already connected from another zone control plane "
            f"(instance {session.instance}, heard from {idle:.1f}s ago); refusing instance "
            f"{instance}: two zone-cps must not share one zone name (--zone)"
        )
        session.last_error, session.last_error_time = detail, self._clock()
        log.warning("%s", detail)
        # The caller holds the zone's token, but still learns nothing about the live instance.
        return (
            f"zone {session.zone!r} is already connected from another zone control plane: "
            "two zone-cps must not share one zone name (--zone)"
        )

    async def _connected(self, session: ZoneSession) -> None:
        await self._hooks.zone_connected(session.zone)  # may raise ZoneRejected
        session.connected_time = self._clock()
        session.announced = True
        log.info(
            "zone %s connected",
            session.zone,
            extra={"event": "zone-connected", "zone": session.zone, "instance": session.instance},
        )

    async def _disconnected(self, session: ZoneSession) -> None:
        session.announced = False
        session.disconnected_time = self._clock()
        log.info(
            "zone %s disconnected",
            session.zone,
            extra={"event": "zone-disconnected", "zone": session.zone},
        )
        try:
            await self._hooks.zone_disconnected(session.zone)
        except Exception as exc:  # bookkeeping must not turn a disconnect into a crash
            log.error("zone %s: zone_disconnected hook failed: %r", session.zone, exc)

    async def _watchdog(self, session: ZoneSession, stop: Callable[[str], None]) -> None:
        period = max(0.01, min(self._health_interval, self._stale_timeout / 4))
        while True:
            await asyncio.sleep(period)
            idle = session.liveness.idle()
            if idle > self._stale_timeout:
                stop(
                    f"no heartbeat or message from zone {session.zone!r} for {idle:.1f}s "
                    f"(timeout {self._stale_timeout:g}s): closing the stale stream"
                )
                return


async def _read_first(context: Any) -> None:
    """Takes the client's first message, if it comes within REFUSAL_READ_WAIT, before a stream
    is refused. A client that writes without waiting to be accepted otherwise races the
    refusal: when the status arrives first, grpc fails the client's write in the client's own
    core ("Internal error from Core", `Failed "execute_batch": SendMessageOperation`) and
    that local INTERNAL replaces the ALREADY_EXISTS the server sent (issue 16; seen in about 1
    of 50 eager streams). Read first, the write has completed when the status is sent."""
    try:
        async with asyncio.timeout(REFUSAL_READ_WAIT):
            await context.read()
    except Exception:  # nothing came, or the client went away: refuse all the same
        return
