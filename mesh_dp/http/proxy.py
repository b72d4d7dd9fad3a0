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
   (limits.py): `maxRequests` is taken for the whole request, its retries included (Envoy
   counts active requests); at `max_connections` the request waits as a pending one;
   `maxConnectionPools` before a new endpoint's first connection; `maxRetries` before each
   MeshRetry retry (over it, the last answer stands). Over the other limits: 503
   circuit-open.
3. **Round trip** — the head goes up (hop-by-hop rules: headers.py), the body streams up
   in a second task while the response is read (so `Expect: 100-continue` and early
   responses work), 1xx responses are relayed, the final one streams down. A reused
   connection that closes before answering a bodyless request is retried once on a fresh
   connection (the usual keep-alive race). Timeouts plug in at `_next_upstream` (today the
   outbound's idleTimeout bounds each wait: 504), retries of whole requests (MeshRetry
   http) around `_attempt`; outlier detection reads `UpstreamCluster.finished(status)` for
   every attempt (0: the attempt got no answer, a reset or timeout).
4. **Accounting** — `HttpStats.observe(record)` and the access log line.

A 101 answer to an Upgrade request turns both connections into a byte tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.http.attempt import (
    Expired,
    Failed,
    RequestPolicy,
    Resume,
    Retry,
    RetryStatus,
    Upload,
    no_answer,
)
from mesh_dp.http.conn import Conn
from mesh_dp.http.errors import error_response, status_of
from mesh_dp.http.fast import Lane
from mesh_dp.http.faults import InboundTraffic
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
from mesh_dp.http.retry import Failure, RetryState
from mesh_dp.http.route import Action, Filtering
from mesh_dp.http.timeouts import Deadlines
from mesh_dp.relay import describe
from meshfed.aio import wait_for
from meshfed.pki.spiffe import PkiError

if TYPE_CHECKING:
    from mesh_dp.tracing.tracer import Tracer

log = logging.getLogger("mesh_dp.http")

FIRST = asyncio.FIRST_COMPLETED
CONNECT_ERRORS = (OSError, TimeoutError, ssl.SSLError, PkiError)


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


class HttpProxy:
    def __init__(
        self,
        cluster: UpstreamCluster,
        stats: HttpStatsSink,
        direction: str,
        *,
        access_log: Callable[[Record], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        limits: Limits | None = None,
        fast: bool = True,
    ) -> None:
        self.fast = fast  # plain requests served from callbacks (fast.py)
        self.cluster = cluster
        self.limits = limits or Limits()  # MeshCircuitBreaker request limits
        self.stats = stats
        self.direction = direction
        self.access_log = access_log
        self._clock = clock
        self._rng = rng or random.Random()
        self.routes: Filtering | None = None  # MeshHTTPRoute filters (route.py), outbound
        # An inbound's MeshRateLimit and MeshFaultInjection (faults.py); None: none applies
        self.traffic: InboundTraffic | None = None
        self.tracer: Tracer | None = None  # MeshTrace (mesh_dp/tracing/tracer.py); None: none

    async def serve(self, down: Conn, allowed: Callable[[], bool] | None = None) -> None:
        """Answers the connection's requests until it ends or must close. `allowed` (inbound,
        with mTLS) is asked before each request: a MeshTrafficPermission change applies to
        the next request of a kept-alive connection, not only to new connections.

        The common request is served from the connections' callbacks (fast.py); this
        coroutine waits meanwhile, and takes a request over when the callback path leaves
        it (anything but a plain request on a pooled connection, or a retry)."""
        lane = Lane(self, down, allowed) if self.fast else None
        try:
            while True:
                hint: EndpointState | None = None
                if lane is not None:
                    handed = await lane.run()
                    if handed is None:
                        return
                    if isinstance(handed, Resume):
                        if not await self._exchange(down, handed.head, resume=handed):
                            return
                        continue
                    hint = handed.hint
                if not await self._serve_one(down, allowed, hint):
                    return
        except ConnectionError:
            pass  # the client left
        finally:
            down.close()

    async def _serve_one(
        self, down: Conn, allowed: Callable[[], bool] | None, hint: EndpointState | None
    ) -> bool:
        """The next request through the coroutine path; False: the connection ends."""
        policy = self.cluster.policy()
        try:
            ev = await self._next_request(down, policy)
        except ProtocolError as exc:
            self._refuse(down, exc)
            return False
        except Expired:
            kind = "request-headers-timeout"
            down.write(error_response(kind, "request head not received in time", close=True))
            record = Record(self.direction, self.cluster.name, error=kind)
            record.status = status_of(kind)
            self.account(record)
            return False
        except TimeoutError:
            return False
        if not isinstance(ev, RequestHead):
            return False  # the end (None); nothing else can come before a head
        if allowed is not None and not allowed():
            self.deny(down)
            return False
        return await self._exchange(down, ev, hint=hint)

    async def _next_request(self, down: Conn, policy: RequestPolicy) -> object:
        """The next request head. A keep-alive client quiet for idleTimeout is closed, as a
        TCP link is (TimeoutError); MeshTimeout requestHeadersTimeout bounds the time from a
        request's first byte to the end of its head (Expired)."""
        idle = policy.response_timeout
        limit = policy.timeouts.request_headers
        if limit <= 0:
            return await down.next_within(idle if idle > 0 else None)
        first: float | None = None  # when the head's first byte came
        while True:
            if down.ready():
                return await down.next()
            if first is None and down.in_message():
                first = self._clock()
            wait = (idle or None) if first is None else first + limit - self._clock()
            if wait is not None and wait <= 0:
                raise Expired(None)
            try:
                await wait_for(down.wait(), wait)
            except TimeoutError:
                if first is None:
                    raise
                raise Expired(None) from None

    def deny(self, down: Conn) -> None:
        """403 for a caller MeshTrafficPermission denies; the connection closes."""
        kind = "permission-denied"
        down.write(error_response(kind, "MeshTrafficPermission denies the caller", close=True))
        self.account(Record(self.direction, self.cluster.name, status=status_of(kind), error=kind))

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
        if record.trace is not None and self.tracer is not None:
            self.tracer.finish(record)

    async def _exchange(
        self,
        down: Conn,
        head: RequestHead,
        *,
        hint: EndpointState | None = None,
        resume: Resume | None = None,
    ) -> bool:
        if resume is not None:
            record, start, policy, upload = (
                resume.record,
                resume.start,
                resume.policy,
                resume.upload,
            )
        else:
            record = Record(
                self.direction, self.cluster.name, head.method, head.target, head.version
            )
            record.head, record.peer = head, down.peer
            if self.tracer is not None:
                self.tracer.start(record, head)
            start = self._clock()
            policy = self.cluster.policy()
            deadlines = Deadlines(policy.timeouts, policy.retry.per_try_timeout, start)
            upload = Upload(deadlines, done=head.framing is Framing.NONE)
        try:
            if resume is None:
                if upload.done:
                    await self._request_end(down, head)
                    upload.deadlines.request_complete(self._clock())
                if head.method == b"CONNECT":
                    raise Failed("method-not-allowed", "CONNECT is not proxied")
                action = None if self.routes is None else self.routes.filtered(head)
                if action is not None and action.redirect is not None:
                    return self._redirect(down, head, record, upload, action)
                if action is not None:
                    head, hint = self._routed(down, head, action, upload, hint)
                if self.traffic is not None:
                    answered = await self.traffic.apply(down, head, record, whole=upload.done)
                    if answered is not None:
                        return answered
            return await self._attempt(down, head, record, upload, policy, hint, resume)
        except Failed as failure:
            return self.answer(down, head, record, failure, whole=upload.done)
        finally:
            record.duration = self._clock() - start
            self.account(record)

    def _routed(
        self,
        down: Conn,
        head: RequestHead,
        action: Action,
        upload: Upload,
        hint: EndpointState | None,
    ) -> tuple[RequestHead, EndpointState]:
        """A request whose MeshHTTPRoute rule has filters: its split is drawn by the request
        as it came, then it goes on as the filters changed it (route.py)."""
        if hint is None:
            hint = self.cluster.choose(head, [])
            if hint is None:
                raise Failed("no-healthy-endpoint", f"{self.cluster.name} has no endpoint")
        if action.mirror is not None:
            body = _whole_body(down, head, upload)
            if body is not None:  # a body still streaming in is not mirrored
                action.mirror(action.head, body)
        if action.response:
            upload.respond = action.respond
        return action.head, hint

    def _redirect(
        self, down: Conn, head: RequestHead, record: Record, upload: Upload, action: Action
    ) -> bool:
        """A RequestRedirect: answered here; the body, when whole, is dropped (else the
        connection closes after the answer)."""
        assert action.redirect is not None
        keep = head.keep_alive and not head.upgrade
        if not upload.done and down.holds_end():
            while down.pop() is not END:
                pass
        elif not upload.done:
            keep = False
        answer = action.redirect
        if not keep and head.keep_alive:
            answer = answer[:-2] + b"connection: close\r\n\r\n"
        down.write(answer)
        record.status = action.status
        return keep

    def answer(
        self, down: Conn, head: RequestHead, record: Record, failure: Failed, *, whole: bool
    ) -> bool:
        """The sidecar's own answer to a request that got none; False: the connection ends."""
        keep = whole and not head.upgrade and head.keep_alive
        down.write(
            error_response(
                failure.kind, str(failure), close=not keep, head_only=head.method == b"HEAD"
            )
        )
        record.status, record.error = status_of(failure.kind), failure.kind
        log.info("%s %s: %s: %s", self.direction, self.cluster.name, failure.kind, failure)
        return keep

    async def _request_end(self, down: Conn, head: RequestHead) -> None:
        """Takes the END (and for an Upgrade request, the `Upgraded`) of a bodyless request."""
        ev = await down.next()
        if ev is not END:
            raise ConnectionResetError("request ended early")

    async def _attempt(
        self,
        down: Conn,
        head: RequestHead,
        record: Record,
        upload: Upload,
        policy: RequestPolicy,
        hint: EndpointState | None = None,
        resume: Resume | None = None,
    ) -> bool:
        """Attempts until one is answered, or fails without MeshRetry asking for another. The
        whole request, retries included, holds one maxRequests slot (Envoy's active
        requests). `resume`: the callback path made the first attempt (fast.py)."""
        outcome: Failed | Retry | RetryStatus | None = None
        if resume is not None:
            retry, used, outcome = resume.retry, resume.used, resume.outcome
        else:
            if not self.limits.try_acquire_request():
                raise Failed(
                    "circuit-open",
                    f"{self.cluster.name}: {self.limits.requests} requests in flight "
                    "(MeshCircuitBreaker maxRequests)",
                )
            retry = RetryState.for_request(policy.retry, head.method, head.upgrade)
            upload.replay = retry.replay
            used = []  # endpoints of earlier attempts: a retry avoids them
        try:
            while True:
                if isinstance(outcome, Failed):
                    if not self._may_retry(outcome, upload, retry):
                        raise outcome
                elif not isinstance(outcome, RetryStatus):  # RetryStatus: the slot is taken
                    if outcome is None:
                        upload.deadlines.new_try(self._clock())
                    try:
                        return await self._try_once(
                            down, head, policy, record, upload, used, retry, hint, outcome
                        )
                    except RetryStatus:
                        pass  # _round_trip took the retry's maxRetries slot
                    except Failed as failed:
                        if not self._may_retry(failed, upload, retry):
                            raise
                outcome, hint = None, None
                self.stats.retries += 1
                wait = retry.next_backoff(self._rng)
                left = upload.deadlines.retry_time_left(self._clock())
                if left is not None and wait >= left:
                    await asyncio.sleep(max(0.0, left))
                    self.stats.timeouts += 1
                    raise Failed("timeout", f"{self.cluster.name}: requestTimeout expired")
                await asyncio.sleep(wait)
        finally:
            self.limits.release_request()
            if upload.retry_slot:
                upload.retry_slot = False
                self.limits.release_retry()

    def _may_retry(self, failed: Failed, upload: Upload, retry: RetryState) -> bool:
        """MeshRetry tries again after `failed` (and a maxRetries slot is taken for it)."""
        gone = upload.client_gone or upload.failed is not None or upload.client_idle
        if failed.failure is None or gone or not retry.after_failure(failed.failure):
            return False
        return self._retry_slot(upload)  # else maxRetries retries in flight: this is the answer

    def _retry_slot(self, upload: Upload) -> bool:
        """Takes a maxRetries slot for the next attempt, after giving back the one the ending
        attempt held (Envoy's order); False: no retry."""
        if upload.retry_slot:
            upload.retry_slot = False
            self.limits.release_retry()
        upload.retry_slot = self.limits.try_acquire_retry()
        return upload.retry_slot

    async def _try_once(
        self,
        down: Conn,
        head: RequestHead,
        policy: RequestPolicy,
        record: Record,
        upload: Upload,
        used: list[EndpointState],
        retry: RetryState,
        hint: EndpointState | None = None,
        replayed: Retry | None = None,
    ) -> bool:
        """One attempt; `replayed`: the callback path's attempt on a reused connection died
        unanswered (this attempt's one fresh-connection replay is spent)."""
        while True:
            up, endpoint, reused = await self._acquire(head, policy, used, hint)
            hint = None
            used.append(endpoint)
            record.upstream = endpoint.label
            try:
                return await self._round_trip(
                    down, up, endpoint, head, policy, record, upload, reused, retry
                )
            except Failed as failure:
                if failure.kind in ("upstream-reset", "timeout") and not upload.client_idle:
                    self.cluster.finished(endpoint, 0)  # a local-origin failure (outlier.py)
                raise
            except Retry as exc:
                if replayed:
                    raise Failed(
                        "upstream-reset", "the upstream closed the connection", Failure.REFUSED
                    ) from None
                replayed = exc
                self.stats.retries += 1

    async def _acquire(
        self,
        head: RequestHead,
        policy: RequestPolicy,
        used: Sequence[EndpointState],
        hint: EndpointState | None = None,
    ) -> tuple[Conn, EndpointState, bool]:
        """A connection for the attempt; `hint`: the first choice, already made."""
        cluster = self.cluster
        errors: list[str] = []
        tried: list[EndpointState] = []
        while len(tried) < policy.max_connect_attempts:
            endpoint, hint = hint, None
            if endpoint is None and used:
                endpoint = cluster.choose(head, [*used, *tried])
            if endpoint is None:
                endpoint = cluster.choose(head, tried)  # a retry may reuse an endpoint
            if endpoint is None:
                break
            spread = endpoint.endpoint.weight if endpoint.endpoint.via_ingress else 1
            conn = cluster.pool.take(endpoint.key, spread)
            if conn is not None and not self._too_old(conn, policy):
                return conn, endpoint, True
            if conn is not None:
                conn.close()  # past maxConnectionDuration
            if cluster.pool.open >= policy.max_connections:
                cluster.pool.evict_idle()  # an idle one to another endpoint makes room
                await self._pending(policy)
                continue  # a connection was freed: choose again
            if self.limits.pools_full(cluster.pool.pools, cluster.pool.has(endpoint.key)):
                raise Failed(
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
            conn.opened_at = self._clock()
            cluster.connect_succeeded(endpoint)
            cluster.pool.track(endpoint.key, conn)
            return conn, endpoint, False
        if not errors:
            raise Failed("no-healthy-endpoint", f"{cluster.name} has no endpoint")
        raise Failed("connect-failed", f"{cluster.name}: " + "; ".join(errors), Failure.CONNECT)

    async def _pending(self, policy: RequestPolicy) -> None:
        """maxConnections are open: wait as a pending request (limits.py) for one to be
        freed, at most connectTimeout."""
        name = self.cluster.name
        try:
            queued = await self.limits.wait_pending(policy.connect_timeout)
        except TimeoutError:
            raise Failed(
                "circuit-open",
                f"{name}: no connection freed in {policy.connect_timeout}s "
                f"({policy.max_connections} open: MeshCircuitBreaker maxConnections)",
            ) from None
        if not queued:
            raise Failed(
                "circuit-open",
                f"{name}: {policy.max_connections} upstream connections open and "
                f"{self.limits.pending} requests waiting (MeshCircuitBreaker maxPendingRequests)",
            )

    def _too_old(self, conn: Conn, policy: RequestPolicy) -> bool:
        """MeshTimeout maxConnectionDuration: an upstream connection is not used past it."""
        limit = policy.timeouts.max_connection
        return limit > 0 and self._clock() - conn.opened_at >= limit

    async def _next_upstream(
        self, up: Conn, upload: Upload, sender: asyncio.Task[None] | None
    ) -> object:
        """The next upstream event within the request's deadlines (timeouts.py); Expired
        names the one that passed. While the body still streams up, its end (which starts
        requestTimeout) also ends the wait, and the deadlines are read again."""
        while True:
            wait, kind = upload.deadlines.next_wait(self._clock())
            if sender is None or sender.done() or up.ready():
                try:
                    return await up.next_within(wait)
                except TimeoutError:
                    raise Expired(kind) from None
            nxt = asyncio.ensure_future(up.next())
            done, _ = await asyncio.wait({nxt, sender}, timeout=wait, return_when=FIRST)
            if nxt not in done:
                nxt.cancel()
                await asyncio.wait({nxt})
            if not nxt.cancelled():
                return nxt.result()
            if not done:
                raise Expired(kind)

    async def _round_trip(
        self,
        down: Conn,
        up: Conn,
        endpoint: EndpointState,
        head: RequestHead,
        policy: RequestPolicy,
        record: Record,
        upload: Upload,
        reused: bool,
        retry: RetryState,
    ) -> bool:
        endpoint.active += 1
        parser = ResponseParser(head.method)
        up.expect(parser)
        whole = upload.done  # the body (if any) was sent whole before: a retry
        if not whole and self._body_queued(down, head, upload):
            up.write(request_bytes(head) + self._queued_body(down, head, upload))
        else:
            up.write(request_bytes(head))
        sender: asyncio.Task[None] | None = None
        if not upload.done:
            sender = asyncio.create_task(self._upload(down, up, head, upload))
        elif whole and head.framing is not Framing.NONE and upload.replay is not None:
            up.write(_encoded(head, upload.replay.chunks, end=True))  # a retry of a whole body
        responded = False
        try:
            may_replay = reused and whole  # nothing of the request is lost yet
            final = await self._final_head(down, up, head, upload, may_replay, sender)
            self.cluster.finished(endpoint, final.status)  # Envoy's outlier input: the head
            if (
                final.status != 101
                and retry.after_status(final.status, final.headers)
                and self._retry_slot(upload)  # else maxRetries are in flight: relay this one
            ):
                raise RetryStatus
            responded = True
            record.status = final.status
            if final.status == 101:
                await self._switch(down, up, final)
                return False
            if upload.respond is not None:
                final = upload.respond(final)
            framing = response_framing(final.framing, head.version)
            close = not head.keep_alive or framing is Framing.CLOSE or head.upgrade
            # The head leaves with the body's first bytes when they are already here (one
            # send, one TLS record), else before waiting for them.
            held = response_bytes(final, framing, close=close)
            encoder = BodyEncoder(framing)
            while True:
                if held and not up.ready():
                    down.write(held)
                    held = b""
                try:
                    ev = await self._next_upstream(up, upload, sender)
                except Expired:
                    self.stats.timeouts += 1
                    down.write(held)
                    down.abort()
                    up.abort()  # mid-response: never reusable, and it must leave the pool
                    return False
                except ProtocolError:
                    ev = None
                if ev is None:
                    down.write(held)
                    down.abort()  # a cut body must not look complete
                    up.abort()
                    return False
                if ev is END:
                    down.write(held + encoder.end())
                    break
                if isinstance(ev, bytes):
                    record.sent += len(ev)
                    if self.traffic is not None and self.traffic.paced():
                        await self.traffic.write_paced(down, held + encoder.encode(ev))
                    else:
                        down.write(held + encoder.encode(ev))
                        await down.drain()
                    held = b""
            complete = upload.done and upload.failed is None
            reusable = final.keep_alive and complete and parser.stray == 0
            if reusable and not self._too_old(up, policy):
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
        upload: Upload,
        may_replay: bool,
        sender: asyncio.Task[None] | None,
    ) -> ResponseHead:
        """Relays 1xx responses (a 100 Continue once per request); returns the final head
        (or a 101)."""
        got_any = False
        name = self.cluster.name
        while True:
            try:
                ev = await self._next_upstream(up, upload, sender)
            except Expired as exc:
                self.stats.timeouts += 1
                raise no_answer(name, exc.kind) from None
            except ProtocolError as exc:
                raise Failed("upstream-reset", f"bad response: {exc}", Failure.RESET) from None
            if ev is None:
                if upload.failed is not None:
                    raise Failed("bad-request", str(upload.failed))
                if upload.client_gone:
                    raise ConnectionResetError("client left during the request body")
                if upload.client_idle:
                    raise Failed("timeout", "the request body stalled: streamIdleTimeout")
                if not got_any and may_replay:
                    raise Retry
                failure = Failure.RESET if got_any else Failure.REFUSED
                raise Failed("upstream-reset", "the upstream closed the connection", failure)
            got_any = True
            if isinstance(ev, ResponseHead):
                if ev.status == 101 and not head.upgrade:
                    raise Failed("upstream-reset", "101 to a request that asked no upgrade")
                if ev.status >= 200 or ev.status == 101:
                    return ev
                if ev.status == 100 and upload.continued:
                    continue  # a retry's 100: the client has had one
                upload.continued = upload.continued or ev.status == 100
                down.write(response_bytes(ev, Framing.NONE, close=False))
                await down.drain()

    async def _upload(self, down: Conn, up: Conn, head: RequestHead, upload: Upload) -> None:
        """Streams the request body up (after what a retry replays); keeps it for retries."""
        encoder = BodyEncoder(head.framing)
        replay = upload.replay
        if replay is not None and replay.chunks:
            up.write(_encoded(head, replay.chunks, end=False, encoder=encoder))
        idle = upload.deadlines.timeouts.stream_idle
        try:
            while True:
                ev = await down.next_within(idle if idle > 0 else None)
                if ev is None:
                    upload.client_gone = True
                    up.abort()
                    return
                if ev is END:
                    up.write(encoder.end())
                    upload.done = True
                    upload.deadlines.request_complete(self._clock())
                    return
                if isinstance(ev, bytes):
                    if replay is not None:
                        replay.add(ev)
                    up.write(encoder.encode(ev))
                    await up.drain()
        except ProtocolError as exc:
            upload.failed = exc
            up.abort()
        except TimeoutError:
            upload.client_idle = True
            up.abort()
        except ConnectionError:
            up.abort()

    @staticmethod
    def _body_queued(down: Conn, head: RequestHead, upload: Upload) -> bool:
        """The rest of the request body is already read (a small request's usual case)."""
        replay = upload.replay
        return not head.upgrade and not (replay and replay.chunks) and down.holds_end()

    def _queued_body(self, down: Conn, head: RequestHead, upload: Upload) -> bytes:
        """The queued body, framed, sent with the head instead of by `_upload` from a second
        task: no task and no two-way wait per small request, and one send. What `_upload`
        would do, without waiting: the client connection's queue (conn.HIGH_WATER) bounds it."""
        encoder = BodyEncoder(head.framing)
        replay = upload.replay
        out: list[bytes] = []
        while True:
            ev = down.pop()
            if ev is END:
                out.append(encoder.end())
                upload.done = True
                upload.deadlines.request_complete(self._clock())
                return b"".join(out)
            if isinstance(ev, bytes):
                if replay is not None:
                    replay.add(ev)
                out.append(encoder.encode(ev))

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


def _whole_body(down: Conn, head: RequestHead, upload: Upload) -> bytes | None:
    """The request body, framed, when it is all here (a bodyless one: b""); None otherwise."""
    if upload.done:
        return b""
    if not down.holds_end():
        return None
    chunks: list[bytes] = []
    for ev in down.events:
        if ev is END:
            break
        if isinstance(ev, bytes):
            chunks.append(ev)
    return _encoded(head, chunks, end=True)


def _encoded(
    head: RequestHead, chunks: list[bytes], *, end: bool, encoder: BodyEncoder | None = None
) -> bytes:
    """The kept body of a request, framed as its head says (a retry sends it again)."""
    enc = encoder or BodyEncoder(head.framing)
    out = b"".join(enc.encode(c) for c in chunks)
    return out + enc.end() if end else out


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
