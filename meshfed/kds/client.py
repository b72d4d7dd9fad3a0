"""A zone's side of KDS: dial the global, run both streams and the heartbeat, reconnect.

`KdsClient.run()` keeps a zone connected for as long as it runs: one session at a time
(`run_once`: a channel, GlobalToZoneSync as receiver, ZoneToGlobalSync as sender, HealthCheck
at the interval the global asks for), and after any failure a new one after a jittered
exponential backoff. The Receiver of `down` lives across sessions, so each reconnect resumes
from what the zone holds. Nothing is deleted while the global is unreachable: the zone keeps
serving what it has.

A session ends when a stream ends or fails, or when the global has not answered a heartbeat
for `stale_timeout` (a connection that looks open but carries nothing). It counts as connected,
and the backoff starts again from its first step, only once the global accepted both streams
(their initial metadata): a zone the global refuses (disabled, or another zone-cp already
serves that zone) keeps backing off instead of redialling every 0.1 s. Each client names its
process with a random instance id (`client-instance-id`), so the global can tell a reconnect
of the same zone-cp from a second zone-cp configured with the same zone.

Every call carries `client-id`, `client-instance-id` and `authorization: Bearer <zone token>`
(the token is read again at each session, so a replaced token file applies at the next
reconnect). A refusal that retrying cannot fix (invalid token, wrong zone) still only paces
the reconnects: an operator may fix the token file meanwhile. The channel is TLS (`ClientTls`:
a pinned CA, the system roots, or skip-verify) unless the zone runs `--kds-insecure`.

Several targets are the replicas of one global (they share a store, so any of them serves
the same state): after a failure the next session dials the next target in turn, so a zone
leaves a dead replica after one backoff delay, and resume makes the move cheap.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.aio import wait_for
from meshfed.backoff import Backoff
from meshfed.kds.auth import AUTHORIZATION, CLIENT_INSTANCE
from meshfed.kds.messages import DEFAULT_MAX_MESSAGE_SIZE, KdsProtocolError
from meshfed.kds.metrics import KdsMetrics
from meshfed.kds.sender import Sender
from meshfed.kds.server import GLOBAL_TO_ZONE, ZONE_TO_GLOBAL
from meshfed.kds.stream import (
    CLIENT_ID,
    Liveness,
    ReceiveSide,
    ResourceSource,
    first_completed,
    grpc_options,
    run_receiver,
    run_sender,
)
from meshfed.kds.tls import ClientTls

log = logging.getLogger("meshfed.kds")

DISCONNECTED, CONNECTING, CONNECTED = "disconnected", "connecting", "connected"
ACCEPT_WAIT = 1.0  # how long a session waits for the global to accept its streams


class StaleConnection(Exception):
    pass


class KdsClient:
    def __init__(
        self,
        target: str | Sequence[str],
        zone: str,
        *,
        up_types: Sequence[str],
        source: ResourceSource,
        down: ReceiveSide,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        stale_timeout: float = 30.0,
        backoff: Backoff | None = None,
        tls: ClientTls | None = None,
        token: str | Callable[[], str] = "",
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        metrics: KdsMetrics | None = None,
        gather: float = 0.0,
    ) -> None:
        """`target`: "host:port" of the global's KDS server, or of each of its replicas;
        `tls`: how to check the global (None: plaintext); `token`: the zone token, or how to
        read it at each session; `instance_id`: this process (default: random); `metrics`:
        where the streams are counted, labelled with this zone (None: nowhere); `gather`: how
        long the zone -> global sender gathers changes before a response (run_sender)."""
        self.targets = [target] if isinstance(target, str) else list(target)
        if not self.targets:
            raise ValueError("KdsClient needs at least one target")
        self._index = 0
        self.zone = zone
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        self._up_types = list(up_types)
        self._source = source
        self.down = down
        self._max = max_message_size
        self._stale_timeout = stale_timeout
        self.backoff = backoff or Backoff()
        self._tls = tls
        self._token = token
        self._clock = clock
        self._metrics = metrics
        self._gather = gather
        self.state = DISCONNECTED
        self.sender: Sender | None = None  # the current session's zone -> global engine
        self.sessions = 0
        self.last_error = ""
        self.connected_time: float | None = None
        self.disconnected_time: float | None = None
        self.state_changed = asyncio.Event()  # set on every state change (for waiters)

    @property
    def target(self) -> str:
        """The target of the current (or next) session."""
        return self.targets[self._index]

    async def run(self) -> None:
        """Stays connected until cancelled."""
        while True:
            try:
                await self.run_once()
                self.last_error = "the global closed the streams"
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, StaleConnection, KdsProtocolError, OSError) as exc:
                self.last_error = _describe(exc)
            except Exception as exc:  # e.g. a failing apply: retry rather than die
                log.exception("zone %s: KDS session failed", self.zone)
                self.last_error = repr(exc)
            delay = self.backoff.next_delay()
            ended = self.target
            self._index = (self._index + 1) % len(self.targets)
            log.warning(
                "zone %s: KDS session with %s ended (%s); connecting to %s in %.2fs",
                self.zone,
                ended,
                self.last_error,
                self.target,
                delay,
                extra={"event": "disconnected", "zone": self.zone, "reason": self.last_error},
            )
            await asyncio.sleep(delay)

    async def run_once(self) -> None:
        """One session; returns when the global ends it, raises when it fails."""
        self._set_state(CONNECTING)
        self.sessions += 1
        options = grpc_options(self._max)
        token = self._token() if callable(self._token) else self._token
        if self._tls is None:
            channel = grpc.aio.insecure_channel(self.target, options=options)
        else:
            credentials, extra = await self._tls.credentials(self.target)
            channel = grpc.aio.secure_channel(self.target, credentials, options=options + extra)
        metadata: tuple[tuple[str, str], ...] = (
            (CLIENT_ID, self.zone),
            (CLIENT_INSTANCE, self.instance_id),
        )
        if token:
            metadata += ((AUTHORIZATION, f"Bearer {token}"),)
        liveness = Liveness()
        try:
            stub = pb_grpc.KDSStub(channel)
            down_call = stub.GlobalToZoneSync(None, metadata=metadata)
            up_call = stub.ZoneToGlobalSync(None, metadata=metadata)
            self.sender = Sender(self._up_types, max_message_size=self._max)
            accepted = asyncio.Event()
            m = self._metrics
            await first_completed(
                run_receiver(
                    _AfterAccept(down_call, accepted),
                    self.down,
                    liveness=liveness,
                    metrics=m.stream(self.zone, GLOBAL_TO_ZONE) if m is not None else None,
                ),
                run_sender(
                    _AfterAccept(up_call, accepted),
                    self.sender,
                    self._source,
                    liveness=liveness,
                    metrics=m.stream(self.zone, ZONE_TO_GLOBAL) if m is not None else None,
                    gather=self._gather,
                ),
                self._heartbeat(stub, metadata),
                self._accepted(accepted, down_call, up_call),
            )
        finally:
            if self.state == CONNECTED:
                self.disconnected_time = self._clock()
            self._set_state(DISCONNECTED)
            await channel.close(grace=None)

    async def _accepted(self, accepted: asyncio.Event, *calls: Any) -> None:
        """Connected once the global accepted every stream (its initial metadata came and
        the stream goes on; a refused one ends with its status instead); then never returns
        (the streams and the heartbeat decide when the session ends). A global that sends no
        initial metadata before its first message (not meshfed's) is taken as accepting
        after ACCEPT_WAIT."""

        async def answered() -> bool:
            for call in calls:
                await call.initial_metadata()
                if call.done():
                    return False
            return True

        try:
            ok = await wait_for(answered(), ACCEPT_WAIT)
        except TimeoutError:
            ok = True
        if ok:
            self.connected_time = self._clock()
            self.backoff.reset()
            self._set_state(CONNECTED)
            accepted.set()
        await asyncio.Event().wait()

    async def _heartbeat(
        self, stub: pb_grpc.KDSAsyncStub, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        last_ok = time.monotonic()
        interval = 1.0
        while True:
            try:
                resp = await stub.HealthCheck(
                    pb.HealthCheckRequest(), metadata=metadata, timeout=self._stale_timeout
                )
            except grpc.aio.AioRpcError as exc:
                silent = time.monotonic() - last_ok
                if silent >= self._stale_timeout:
                    raise StaleConnection(
                        f"no heartbeat answer from the global for {silent:.1f}s "
                        f"(timeout {self._stale_timeout:g}s): {_describe(exc)}"
                    ) from None
                if exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.ALREADY_EXISTS,
                ):
                    raise  # retrying will not help; the backoff paces the next session
            else:
                last_ok = time.monotonic()
                interval = resp.interval_ms / 1000 if resp.interval_ms else interval
            await asyncio.sleep(min(interval, self._stale_timeout / 2))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.set()
            self.state_changed = asyncio.Event()


class _AfterAccept:
    """A stream that writes only once the global accepted the session. A write racing the
    global's refusal would replace the refusal's status with a bare INTERNAL error (grpc
    issue #36066), and the zone would not learn why it was refused."""

    def __init__(self, call: Any, accepted: asyncio.Event) -> None:
        self._call = call
        self._accepted = accepted

    async def read(self) -> object:
        return await self._call.read()

    async def write(self, message: Any) -> None:
        await self._accepted.wait()
        await self._call.write(message)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or repr(exc)
