"""The per-request pipeline of an HTTP listener (outbound or inbound).

One `HttpProxy` per listener serves each accepted connection (`serve`): requests are taken
one at a time in the order they arrived, so pipelined requests get their responses in
order; the next request is not sent upstream before the previous response ended (as Envoy
does). For one request (`_exchange`):

1. **Endpoint choice** — `UpstreamCluster.choose(request, tried)`. Today the balancer's
   locality / weight / RoundRobin-Random-LeastRequest choice; hash-based choice
   (RingHash/Maglev on a header, cookie, source IP...) plugs in here, since `choose` sees
   the request head. Health state (active checks) and ejections are inside the cluster.
2. **Connection** — an idle pooled connection to that endpoint, else a new one
   (`UpstreamCluster.open`: TCP + mTLS + peer identity check), bounded by
   `RequestPolicy.connect_timeout`, up to `max_connect_attempts` endpoints
   (`UpstreamCluster.connect_failed` is the passive-ejection hook). Circuit breaking
   (limits.py): `maxRequests` is taken for the whole request; at `max_connections` the
   request waits as a pending one; `maxConnectionPools` before a new endpoint's first
   connection. Over a limit: 503 circuit-open.
3. **Round trip** — the head goes up (hop-by-hop rules: headers.py), the body streams up
   in a second task while the response is read (so `Expect: 100-continue` and early
   responses work), 1xx responses are relayed, the final one streams down. A reused
   connection that closes before answering a bodyless request is retried once on a fresh
   connection (the usual keep-alive race). Timeouts plug in at `_next_upstream` (today the
   outbound's idleTimeout bounds each wait: 504), retries of whole requests (MeshRetry
   http) around `_attempt`; outlier detection reads `UpstreamCluster.finished(status)` (0: the
   attempt got no answer, a reset or timeout).
4. **Accounting** — `HttpStats.observe(record)` and the access log line.

A 101 answer to an Upgrade request turns both connections into a byte tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.http.conn import Conn
from mesh_dp.http.errors import error_response, status_of
from mesh_dp.http.headers import BodyEncoder, request_bytes, response_bytes, response_framing
from mesh_dp.http.limits import Limits
from mesh_dp.http.parse import (
    END,
    Framing,
    ProtocolError,
    RequestHead,
    ResponseHead,
    ResponseParser,
    Upgraded,
)
from mesh_dp.http.pool import Pool
from mesh_dp.relay import describe
from meshfed.aio import wait_for
from meshfed.pki.spiffe import PkiError

log = logging.getLogger("mesh_dp.http")

CONNECT_ERRORS = (OSError, TimeoutError, ssl.SSLError, PkiError)


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """Per-request limits, read once per request. MeshTimeout/MeshRetry `http` fields join
    here (requestTimeout, perTryTimeout, numRetries, backOff...)."""

    connect_timeout: float
    max_connect_attempts: int
    response_timeout: float  # longest wait for an upstream byte (0: none)
    max_connections: int  # open upstream connections at once


class HttpStatsSink(Protocol):
    retries: int
    timeouts: int

    def observe(self, record: Record) -> None: ...


class UpstreamCluster(Protocol):
    """Where one listener's requests go: its endpoints, their state, how to connect."""

    pool: Pool

    @property
    def name(self) -> str:
        """The service, for logs, metrics and error bodies."""

    def policy(self) -> RequestPolicy: ...

    def choose(
        self, request: RequestHead, tried: Sequence[EndpointState]
    ) -> EndpointState | None: ...

    async def open(self, endpoint: EndpointState, timeout: float) -> Conn: ...

    def connect_failed(self, endpoint: EndpointState) -> None: ...

    def connect_succeeded(self, endpoint: EndpointState) -> None: ...

    def finished(self, endpoint: EndpointState, status: int) -> None:
        """The attempt's outcome: the final status, 0 when it got no answer (reset, timeout)."""


class _Failed(Exception):
    """The sidecar answers the request itself with `kind`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Retry(Exception):
    """A reused connection died before answering: try again on a fresh one."""


@dataclass(slots=True)
class _Upload:
    """The request body's progress, shared by the two halves of a round trip."""

    done: bool = False
    failed: ProtocolError | None = None
    client_gone: bool = False


class HttpProxy:
    def __init__(
        self,
        cluster: UpstreamCluster,
        stats: HttpStatsSink,
        direction: str,
        *,
        access_log: Callable[[Record], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
    ) -> None:
        self.cluster = cluster
        self.limits = limits or Limits()  # MeshCircuitBreaker request limits
        self.stats = stats
        self.direction = direction
        self.access_log = access_log
        self._clock = clock

    async def serve(self, down: Conn) -> None:
        """Answers the connection's requests until it ends or must close."""
        try:
            while True:
                idle = self.cluster.policy().response_timeout
                try:
                    # A keep-alive client quiet for idleTimeout is closed, as a TCP link is.
                    ev = await (wait_for(down.next(), idle) if idle > 0 else down.next())
                except ProtocolError as exc:
                    self._refuse(down, exc)
                    return
                except TimeoutError:
                    return
                if not isinstance(ev, RequestHead):
                    return  # the end (None); nothing else can come before a head
                if not await self._exchange(down, ev):
                    return
        except ConnectionError:
            pass  # the client left
        finally:
            down.close()

    def _refuse(self, down: Conn, exc: ProtocolError) -> None:
        kind = "header-too-large" if exc.status == 431 else "bad-request"
        record = Record(self.direction, self.cluster.name, status=status_of(kind), error=kind)
        down.write(error_response(kind, str(exc), close=True))
        log.info("%s %s: refused a request: %s", self.direction, self.cluster.name, exc)
        self.account(record)

    def account(self, record: Record) -> None:
        self.stats.observe(record)
        if self.access_log is not None:
            self.access_log(record)

    async def _exchange(self, down: Conn, head: RequestHead) -> bool:
        record = Record(self.direction, self.cluster.name, head.method, head.target, head.version)
        start = self._clock()
        upload = _Upload(done=head.framing is Framing.NONE)
        try:
            if upload.done:
                await self._request_end(down, head)
            if head.method == b"CONNECT":
                raise _Failed("method-not-allowed", "CONNECT is not proxied")
            return await self._attempt(down, head, record, upload)
        except _Failed as failure:
            whole = upload.done and not head.upgrade
            keep = whole and head.keep_alive
            down.write(
                error_response(
                    failure.kind, str(failure), close=not keep, head_only=head.method == b"HEAD"
                )
            )
            record.status, record.error = status_of(failure.kind), failure.kind
            log.info("%s %s: %s: %s", self.direction, self.cluster.name, failure.kind, failure)
            return keep
        finally:
            record.duration = self._clock() - start
            self.account(record)

    async def _request_end(self, down: Conn, head: RequestHead) -> None:
        """Takes the END (and for an Upgrade request, the `Upgraded`) of a bodyless request."""
        ev = await down.next()
        if ev is not END:
            raise ConnectionResetError("request ended early")

    async def _attempt(
        self, down: Conn, head: RequestHead, record: Record, upload: _Upload
    ) -> bool:
        tried: list[EndpointState] = []
        policy = self.cluster.policy()
        retried = False
        if not self.limits.try_acquire_request():
            raise _Failed(
                "circuit-open",
                f"{self.cluster.name}: {self.limits.requests} requests in flight "
                "(MeshCircuitBreaker maxRequests)",
            )
        try:
            return await self._attempts(down, head, record, upload, policy, tried, retried)
        finally:
            self.limits.release_request()

    async def _attempts(
        self,
        down: Conn,
        head: RequestHead,
        record: Record,
        upload: _Upload,
        policy: RequestPolicy,
        tried: list[EndpointState],
        retried: bool,
    ) -> bool:
        while True:
            up, endpoint, reused = await self._acquire(head, policy, tried)
            record.upstream = endpoint.label
            try:
                return await self._round_trip(
                    down, up, endpoint, head, policy, record, upload, reused
                )
            except _Failed as failure:
                if failure.kind in ("upstream-reset", "timeout"):
                    self.cluster.finished(endpoint, 0)  # a local-origin failure (outlier.py)
                raise
            except _Retry:
                if retried:
                    raise _Failed("upstream-reset", "the upstream closed the connection") from None
                retried = True
                self.stats.retries += 1

    async def _acquire(
        self, head: RequestHead, policy: RequestPolicy, tried: list[EndpointState]
    ) -> tuple[Conn, EndpointState, bool]:
        cluster = self.cluster
        errors: list[str] = []
        while len(tried) < policy.max_connect_attempts:
            endpoint = cluster.choose(head, tried)
            if endpoint is None:
                break
            spread = endpoint.endpoint.weight if endpoint.endpoint.via_ingress else 1
            conn = cluster.pool.take(endpoint.key, spread)
            if conn is not None:
                return conn, endpoint, True
            if cluster.pool.open >= policy.max_connections:
                cluster.pool.evict_idle()  # an idle one to another endpoint makes room
                await self._pending(policy)
                continue  # a connection was freed: choose again
            if self.limits.pools_full(cluster.pool.pools, cluster.pool.has(endpoint.key)):
                raise _Failed(
                    "circuit-open",
                    f"{cluster.name}: connections open to {cluster.pool.pools} endpoints "
                    "(MeshCircuitBreaker maxConnectionPools)",
                )
            if tried:
                self.stats.retries += 1
            tried.append(endpoint)
            try:
                conn = await cluster.open(endpoint, policy.connect_timeout)
            except CONNECT_ERRORS as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else describe(exc)
                errors.append(f"{endpoint.label}: {reason}")
                cluster.connect_failed(endpoint)
                continue
            cluster.connect_succeeded(endpoint)
            cluster.pool.track(endpoint.key, conn)
            return conn, endpoint, False
        if not errors:
            raise _Failed("no-healthy-endpoint", f"{cluster.name} has no endpoint")
        raise _Failed("connect-failed", f"{cluster.name}: " + "; ".join(errors))

    async def _pending(self, policy: RequestPolicy) -> None:
        """maxConnections are open: wait as a pending request (limits.py) for one to be
        freed, at most connectTimeout."""
        name = self.cluster.name
        try:
            queued = await self.limits.wait_pending(policy.connect_timeout)
        except TimeoutError:
            raise _Failed(
                "circuit-open",
                f"{name}: no connection freed in {policy.connect_timeout}s "
                f"({policy.max_connections} open: MeshCircuitBreaker maxConnections)",
            ) from None
        if not queued:
            raise _Failed(
                "circuit-open",
                f"{name}: {policy.max_connections} upstream connections open and "
                f"{self.limits.pending} requests waiting (MeshCircuitBreaker maxPendingRequests)",
            )

    async def _next_upstream(self, up: Conn, policy: RequestPolicy) -> object:
        if policy.response_timeout > 0:
            return await wait_for(up.next(), policy.response_timeout)
        return await up.next()

    async def _round_trip(
        self,
        down: Conn,
        up: Conn,
        endpoint: EndpointState,
        head: RequestHead,
        policy: RequestPolicy,
        record: Record,
        upload: _Upload,
        reused: bool,
    ) -> bool:
        endpoint.active += 1
        parser = ResponseParser(head.method)
        up.expect(parser)
        up.write(request_bytes(head))
        sender: asyncio.Task[None] | None = None
        if not upload.done:
            sender = asyncio.create_task(self._upload(down, up, head, record, upload))
        responded = False
        try:
            retry = reused and sender is None  # nothing of the request is lost yet
            final = await self._final_head(down, up, head, policy, upload, retry)
            responded = True
            record.status = final.status
            if final.status == 101:
                await self._switch(down, up, final)
                return False
            framing = response_framing(final.framing, head.version)
            close = not head.keep_alive or framing is Framing.CLOSE or head.upgrade
            down.write(response_bytes(final, framing, close=close))
            encoder = BodyEncoder(framing)
            while True:
                try:
                    ev = await self._next_upstream(up, policy)
                except TimeoutError:
                    self.stats.timeouts += 1
                    down.abort()
                    return False
                except ProtocolError:
                    ev = None
                if ev is None:
                    down.abort()  # a cut body must not look complete
                    return False
                if ev is END:
                    down.write(encoder.end())
                    break
                if isinstance(ev, bytes):
                    record.sent += len(ev)
                    down.write(encoder.encode(ev))
                    await down.drain()
            self.cluster.finished(endpoint, final.status)
            complete = upload.done and upload.failed is None
            if final.keep_alive and complete and parser.stray == 0:
                self.cluster.pool.give(endpoint.key, up)
            else:
                up.close()
            return complete and not close
        except BaseException:
            up.abort()
            if responded:
                down.abort()
            raise
        finally:
            endpoint.active -= 1
            if sender is not None and not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    async def _final_head(
        self,
        down: Conn,
        up: Conn,
        head: RequestHead,
        policy: RequestPolicy,
        upload: _Upload,
        may_retry: bool,
    ) -> ResponseHead:
        """Relays 1xx responses; returns the final head (or a 101)."""
        got_any = False
        while True:
            try:
                ev = await self._next_upstream(up, policy)
            except TimeoutError:
                self.stats.timeouts += 1
                raise _Failed(
                    "timeout", f"no answer from {self.cluster.name} in {policy.response_timeout}s"
                ) from None
            except ProtocolError as exc:
                raise _Failed("upstream-reset", f"bad response: {exc}") from None
            if ev is None:
                if upload.failed is not None:
                    raise _Failed("bad-request", str(upload.failed))
                if upload.client_gone:
                    raise ConnectionResetError("client left during the request body")
                if not got_any and may_retry:
                    raise _Retry
                raise _Failed("upstream-reset", "the upstream closed the connection")
            got_any = True
            if isinstance(ev, ResponseHead):
                if ev.status == 101 and not head.upgrade:
                    raise _Failed("upstream-reset", "101 to a request that asked no upgrade")
                if ev.status >= 200 or ev.status == 101:
                    return ev
                down.write(response_bytes(ev, Framing.NONE, close=False))
                await down.drain()

    async def _upload(
        self, down: Conn, up: Conn, head: RequestHead, record: Record, upload: _Upload
    ) -> None:
        encoder = BodyEncoder(head.framing)
        try:
            while True:
                ev = await down.next()
                if ev is None:
                    upload.client_gone = True
                    up.abort()
                    return
                if ev is END:
                    up.write(encoder.end())
                    upload.done = True
                    return
                if isinstance(ev, bytes):
                    up.write(encoder.encode(ev))
                    await up.drain()
        except ProtocolError as exc:
            upload.failed = exc
            up.abort()
        except ConnectionError:
            up.abort()

    async def _switch(self, down: Conn, up: Conn, response: ResponseHead) -> None:
        """101: relay the head, then bytes both ways until one side ends."""
        down.write(response_bytes(response, Framing.NONE, close=False))
        rest_down = await _upgraded(down)
        rest_up = await _upgraded(up)
        up.write(rest_down)
        down.write(rest_up)
        pumps = [
            asyncio.create_task(_pump(down, up)),
            asyncio.create_task(_pump(up, down)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up.close()
            down.close()


async def _upgraded(conn: Conn) -> bytes:
    """Skips to the `Upgraded` event of a connection that switched protocols."""
    while True:
        ev = await conn.next()
        if ev is None:
            return b""
        if isinstance(ev, Upgraded):
            return ev.rest
        if isinstance(ev, bytes):
            return ev


async def _pump(src: Conn, dst: Conn) -> None:
    with contextlib.suppress(ConnectionError, ProtocolError):
        while True:
            ev = await src.next()
            if ev is None:
                return
            if isinstance(ev, bytes):
                dst.write(ev)
                await dst.drain()
