"""The callback path of an HTTP listener: the common request served from the connections'
`data_received` callbacks, without a task, a coroutine or a timeout object per request.

A `Lane` drives one client connection while no request needs the coroutine path (proxy.py).
When a request's head and whole body are queued (the usual small request), it is not an
Upgrade, CONNECT or `Expect: 100-continue`, the caller is allowed, maxRequests has room and
an idle pooled connection to the chosen endpoint exists, the lane sends head and body up in
one write and relays the response from the upstream connection's callback: each read's
events become one write to the client. Flow control: the upstream stops being read while
the client's write buffer is above its high-water mark. The request's deadlines
(timeouts.py: requestTimeout, perTryTimeout, streamIdleTimeout, maxStreamDuration) and the
client's idle timeout share one timer per connection (`loop.call_later`), re-armed when it
fires early rather than on every event.

Everything else goes to the coroutine path, which then serves the connection for one
request and hands it back: a request that does not qualify (`Slow`, still queued, with the
endpoint already chosen), and the outcome of an attempt that did not end in a relayed
response (`Resume`: a retriable status, a reset, a timeout before the response head, a
reused connection that died unanswered), from which proxy.py goes on exactly as if it had
made that attempt itself (retries, back-off, the error answer). Metrics, the access log,
outlier detection and MeshCircuitBreaker counters see the same calls either way.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.http.attempt import (
    Failed,
    RequestPolicy,
    Resume,
    Retry,
    RetryStatus,
    Slow,
    Upload,
    no_answer,
)
from mesh_dp.http.conn import Conn
from mesh_dp.http.headers import BodyEncoder, request_bytes, response_bytes, response_framing
from mesh_dp.http.parse import END, Framing, RequestHead, ResponseHead, ResponseParser
from mesh_dp.http.retry import Failure, RetryState
from mesh_dp.http.timeouts import Deadlines, Expiry

if TYPE_CHECKING:
    from mesh_dp.http.proxy import HttpProxy

log = logging.getLogger("mesh_dp.http")

Handed = Slow | Resume | None  # None: the client connection is over
WHOLE_BODY = 64 * 1024  # a Content-Length body up to this is read whole, then sent with the head


class Lane:
    """One client connection's requests, served from callbacks while they qualify."""

    def __init__(
        self, proxy: HttpProxy, down: Conn, allowed: Callable[[], bool] | None = None
    ) -> None:
        self.proxy = proxy
        self.down = down
        self.allowed = allowed
        self.loop = asyncio.get_running_loop()
        self.ctx = contextvars.copy_context()  # the serving task's (the caller, for hashing)
        self.clock = proxy._clock
        self._done: asyncio.Future[Handed] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last = 0.0  # the last byte either way (idle timeouts)
        # The request in flight
        self.up: Conn | None = None
        self.endpoint: EndpointState | None = None
        self.head: RequestHead | None = None
        self.record: Record | None = None
        self.start = 0.0
        self.policy: RequestPolicy | None = None
        self.upload: Upload | None = None
        self.retry: RetryState | None = None
        self.parser: ResponseParser | None = None
        self.final: ResponseHead | None = None
        self.encoder: BodyEncoder | None = None
        self.close_after = False
        self.reused = True
        self.got_any = False
        self.paused_up = False
        self._on_up_cb = self._guarded(self._on_up)
        self._waiting: RequestHead | None = None  # a head whose body is still coming
        self._head_at = 0.0  # when it came

    async def run(self) -> Handed:
        """Serves requests until one needs the coroutine path or the connection is over."""
        self._done = self.loop.create_future()
        self._waiting = None
        self.down.notify = self._guarded(self._pump)
        self.down.writable = self._guarded(self._down_writable)
        self._last = self.clock()
        try:
            self._pump()
            return await self._done
        finally:
            self.down.notify = None
            self.down.writable = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.up is not None:  # cancelled mid-request (the listener closes)
                self._abandon()

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        """A callback whose exception ends the lane (and reaches the serving task) instead
        of the event loop's handler, leaving the connection stuck."""

        def call() -> None:
            try:
                fn()
            except BaseException as exc:
                self._fail(exc)

        return call

    def _fail(self, exc: BaseException) -> None:
        if self.up is not None:
            self._abandon()
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _finish(self, handed: Handed) -> None:
        self.down.notify = None
        self.down.writable = None
        if self._done is not None and not self._done.done():
            self._done.set_result(handed)

    # --- the client side ------------------------------------------------------------------

    def _pump(self) -> None:
        """Something came from the client: start the next request if none is in flight."""
        if self.up is not None or self._done is None or self._done.done():
            if self.up is not None and self.down.lost and self.final is not None:
                self._client_left()
            return
        down = self.down
        self._last = self.clock()
        if down.error is not None:
            self._finish(Slow())  # proxy.py answers the 400
            return
        if not down.events:
            if down.eof:
                self._finish(None)
            elif down.in_message() and self.proxy.cluster.policy().timeouts.request_headers:
                self._finish(Slow())  # requestHeadersTimeout is timed from this first byte
            else:
                self._arm(self._idle_deadline())
            return
        head = down.events[0]
        if not isinstance(head, RequestHead):
            self._finish(Slow())
            return
        if head is not self._waiting:
            self._waiting = None
        verdict = self._plain(head)
        if verdict is None:  # the rest of its body is on its way
            if self._waiting is None:
                self._waiting, self._head_at = head, self._last
            self._arm(self._body_deadline()[0])
            return
        if not verdict:
            self._finish(Slow())
            return
        self._start(head)

    def _plain(self, head: RequestHead) -> bool | None:
        """The request can go the callback way: whole, plain, allowed, within maxRequests.
        None: not yet, a body of up to WHOLE_BODY bytes is still coming."""
        if head.upgrade or head.method == b"CONNECT" or head.expects_continue:
            return False
        if head.framing is not Framing.NONE and not self.down.holds_end():
            small = head.framing is Framing.LENGTH and (head.length or 0) <= WHOLE_BODY
            if small and not self.down.eof:
                return None
            return False  # the body streams in: proxy.py streams it up
        routes = self.proxy.routes
        if routes is not None and routes.wants(head):
            return False  # a MeshHTTPRoute rule's filters: proxy.py applies them
        if self.allowed is not None and not self.allowed():
            return False
        traffic = self.proxy.traffic  # MeshRateLimit, MeshFaultInjection (faults.py)
        if traffic is not None and not traffic.fast(self.ctx):
            return False
        limits = self.proxy.limits
        return limits.requests < limits.caps.max_requests

    def _start(self, head: RequestHead) -> None:
        proxy, cluster, down = self.proxy, self.proxy.cluster, self.down
        policy = cluster.policy()
        endpoint = self.ctx.run(cluster.choose, head, [])
        if endpoint is None:
            self._finish(Slow())  # proxy.py answers no-healthy-endpoint
            return
        spread = endpoint.endpoint.weight if endpoint.endpoint.via_ingress else 1
        up = cluster.pool.take(endpoint.key, spread)
        if up is not None and proxy._too_old(up, policy):
            up.close()
            up = None
        if up is None:
            self._finish(Slow(endpoint))  # proxy.py opens a connection to it
            return
        # The request is ours from here on.
        if proxy.traffic is not None:
            proxy.traffic.take()
        now = self.clock()
        self.start = self._head_at if self._waiting is head else now
        self._waiting = None
        record = Record(proxy.direction, cluster.name, head.method, head.target, head.version)
        record.head, record.peer = head, down.peer
        if proxy.tracer is not None:
            proxy.tracer.start(record, head)
        deadlines = Deadlines(policy.timeouts, policy.retry.per_try_timeout, self.start)
        upload = Upload(deadlines, done=True)
        retry = RetryState.for_request(policy.retry, head.method, False)
        upload.replay = replay = retry.replay
        proxy.limits.try_acquire_request()  # room was checked in _plain
        down.pop()
        encoder = BodyEncoder(head.framing)
        out = [request_bytes(head)]
        while True:  # the body is queued whole (_plain)
            ev = down.pop()
            if ev is END:
                out.append(encoder.end())
                break
            if isinstance(ev, bytes):
                if replay is not None:
                    replay.add(ev)
                out.append(encoder.encode(ev))
        upload.deadlines.request_complete(now)
        upload.deadlines.new_try(now)
        self.head, self.record, self.policy, self.upload, self.retry = (
            head,
            record,
            policy,
            upload,
            retry,
        )
        self._send(up, endpoint, b"".join(out), reused=True)

    def _send(self, up: Conn, endpoint: EndpointState, data: bytes, *, reused: bool) -> None:
        assert self.head is not None and self.record is not None
        self.up, self.endpoint, self.reused = up, endpoint, reused
        self.final, self.encoder, self.got_any = None, None, False
        self.record.upstream = endpoint.label
        endpoint.active += 1
        parser = up.kept
        if not (isinstance(parser, ResponseParser) and parser.reset(self.head.method)):
            parser = up.kept = ResponseParser(self.head.method)
        self.parser = parser
        up.expect(parser)
        up.notify = self._on_up_cb
        up.write(data)
        self._last = self.clock()
        self._arm(self._request_deadline()[0])

    def _down_writable(self) -> None:
        if self.paused_up and self.up is not None:
            self.paused_up = False
            t = self.up.transport
            if t is not None and not t.is_closing():
                t.resume_reading()

    # --- the upstream side ----------------------------------------------------------------

    def _on_up(self) -> None:
        """Events of the response: relayed in one write per read."""
        up, down = self.up, self.down
        if up is None:
            return
        assert self.head is not None and self.record is not None and self.upload is not None
        self._last = self.clock()
        out: list[bytes] = []
        while up.events:
            ev = up.pop()
            if self.final is not None:
                assert self.encoder is not None
                if ev is END:
                    out.append(self.encoder.end())
                    down.write(b"".join(out))
                    self._complete()
                    return
                if isinstance(ev, bytes):
                    self.record.sent += len(ev)
                    out.append(self.encoder.encode(ev))
                continue
            self.got_any = True
            if not isinstance(ev, ResponseHead):
                continue
            if ev.status == 101:
                self._attempt_failed(
                    Failed("upstream-reset", "101 to a request that asked no upgrade")
                )
                return
            if ev.status < 200:
                if ev.status == 100 and self.upload.continued:
                    continue  # a retry's 100: the client has had one
                self.upload.continued = self.upload.continued or ev.status == 100
                out.append(response_bytes(ev, Framing.NONE, close=False))
                continue
            if not self._final(ev, out):
                return
        if out:
            down.write(b"".join(out))
            if down.write_paused and not self.paused_up and up.transport is not None:
                self.paused_up = True
                up.transport.pause_reading()
        if up.error is not None or up.eof:
            self._up_ended()
        elif down.lost and self.final is not None:
            self._client_left()

    def _final(self, ev: ResponseHead, out: list[bytes]) -> bool:
        """The final response head; False: the attempt ended (a retry)."""
        head, record, upload, retry = self.head, self.record, self.upload, self.retry
        assert head is not None and record is not None and upload is not None
        assert retry is not None and self.endpoint is not None
        proxy = self.proxy
        proxy.cluster.finished(self.endpoint, ev.status)  # Envoy's outlier input: the head
        if retry.after_status(ev.status, ev.headers) and proxy._retry_slot(upload):
            self._hand_over(RetryStatus())
            return False
        record.status = ev.status
        framing = response_framing(ev.framing, head.version)
        self.close_after = not head.keep_alive or framing is Framing.CLOSE
        out.append(response_bytes(ev, framing, close=self.close_after))
        self.final, self.encoder = ev, BodyEncoder(framing)
        return True

    def _up_ended(self) -> None:
        """The upstream closed (or broke HTTP) before the response's end."""
        up = self.up
        assert up is not None
        if self.final is not None:  # a cut body must not look complete
            self._end_request(reusable=False)
            self.down.abort()
            self._finish(None)
            return
        if up.error is not None:
            reason = f"bad response: {up.error}"
            self._attempt_failed(Failed("upstream-reset", reason, Failure.RESET))
        elif not self.got_any and self.reused:
            self.proxy.stats.retries += 1
            self._hand_over(Retry())  # the keep-alive race: a fresh connection
        else:
            failure = Failure.RESET if self.got_any else Failure.REFUSED
            reason = "the upstream closed the connection"
            self._attempt_failed(Failed("upstream-reset", reason, failure))

    def _attempt_failed(self, failed: Failed) -> None:
        assert self.endpoint is not None
        if failed.kind in ("upstream-reset", "timeout"):
            self.proxy.cluster.finished(self.endpoint, 0)  # a local-origin failure (outlier.py)
        self._hand_over(failed)

    def _hand_over(self, outcome: Failed | Retry | RetryStatus) -> None:
        """The attempt ended without a relayed response: proxy.py goes on from `outcome`."""
        assert self.head is not None and self.record is not None and self.policy is not None
        assert self.upload is not None and self.retry is not None and self.endpoint is not None
        resume = Resume(
            self.head,
            self.record,
            self.start,
            self.policy,
            self.upload,
            self.retry,
            outcome,
            [self.endpoint],
        )
        self._drop_up()
        self._clear()
        self._finish(resume)

    def _client_left(self) -> None:
        """The client is gone mid-response: the upstream connection cannot be reused."""
        self._end_request(reusable=False)
        self._finish(None)

    def _complete(self) -> None:
        """The response went down whole."""
        final, policy, parser = self.final, self.policy, self.parser
        assert final is not None and policy is not None and parser is not None
        assert self.up is not None
        reusable = final.keep_alive and parser.stray == 0
        self._end_request(reusable=reusable and not self.proxy._too_old(self.up, policy))
        if self.close_after:
            self._finish(None)
        else:
            self._pump()  # a pipelined request may be queued

    def _end_request(self, *, reusable: bool) -> None:
        """Gives the upstream connection back (or closes it) and accounts the request."""
        up, endpoint, record, upload = self.up, self.endpoint, self.record, self.upload
        assert up is not None and endpoint is not None and record is not None
        assert upload is not None
        up.notify = None
        if self.paused_up:
            self.paused_up = False
            if up.transport is not None and not up.transport.is_closing():
                up.transport.resume_reading()
        endpoint.active -= 1
        proxy = self.proxy
        if reusable:
            proxy.cluster.pool.give(endpoint.key, up)
        else:
            up.abort()
        proxy.limits.release_request()
        if upload.retry_slot:
            upload.retry_slot = False
            proxy.limits.release_retry()
        record.duration = self.clock() - self.start
        proxy.account(record)
        self._clear()

    def _drop_up(self) -> None:
        up, endpoint = self.up, self.endpoint
        assert up is not None and endpoint is not None
        up.notify = None
        up.abort()
        endpoint.active -= 1

    def _abandon(self) -> None:
        """The serving task was cancelled or failed mid-request."""
        self._end_request(reusable=False)

    def _clear(self) -> None:
        self.up = self.endpoint = self.head = self.record = self.policy = None
        self.upload = self.retry = self.parser = self.final = self.encoder = None
        self.paused_up = False

    # --- one timer per connection ---------------------------------------------------------

    def _idle_deadline(self) -> float | None:
        policy = self.proxy.cluster.policy()
        idle = policy.response_timeout
        return self._last + idle if idle > 0 else None

    def _request_deadline(self) -> tuple[float | None, Expiry | None]:
        """The first of the request's deadlines (as Deadlines.next_wait orders them)."""
        upload = self.upload
        assert upload is not None
        d = upload.deadlines
        t = d.timeouts
        if d.stream is None and d.attempt is None and d.request is None and t.stream_idle <= 0:
            return None, None  # no MeshTimeout: nothing to arm
        best: float | None = None
        kind: Expiry | None = None
        if d.timeouts.stream_idle > 0:
            best, kind = self._last + d.timeouts.stream_idle, Expiry.STREAM_IDLE
        for at, what in (
            (d.stream, Expiry.STREAM_DURATION),
            (d.attempt, Expiry.TRY),
            (d.request, Expiry.REQUEST),
        ):
            if at is not None and (best is None or at <= best):
                best, kind = at, what
        return best, kind

    def _body_deadline(self) -> tuple[float | None, Expiry | None]:
        """While a request body comes in: streamIdleTimeout since the client's last byte,
        maxStreamDuration since the head (what proxy.py's upload enforces)."""
        t = self.proxy.cluster.policy().timeouts
        best: float | None = None
        kind: Expiry | None = None
        if t.stream_idle > 0:
            best, kind = self._last + t.stream_idle, Expiry.STREAM_IDLE
        if t.max_stream > 0 and (best is None or self._head_at + t.max_stream <= best):
            best, kind = self._head_at + t.max_stream, Expiry.STREAM_DURATION
        return best, kind

    def _body_stalled(self, kind: Expiry | None) -> None:
        """The client stopped sending the body (or took too long): the answer proxy.py
        gives, and the connection closes."""
        head, proxy = self._waiting, self.proxy
        assert head is not None
        if kind is Expiry.STREAM_IDLE:
            failed = Failed("timeout", "the request body stalled: streamIdleTimeout")
        else:
            proxy.stats.timeouts += 1
            failed = no_answer(proxy.cluster.name, kind)
        record = Record(proxy.direction, proxy.cluster.name, head.method, head.target, head.version)
        record.head, record.peer = head, self.down.peer
        proxy.answer(self.down, head, record, failed, whole=False)
        record.duration = self.clock() - self._head_at
        proxy.account(record)
        self._finish(None)

    def _arm(self, at: float | None) -> None:
        """The timer fires at `at` or earlier (then re-arms): a later deadline keeps the
        timer already armed, so most requests create no timer."""
        if at is None:
            return
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_later(max(0.0, at - self.clock()), self._guarded(self._fire))

    def _fire(self) -> None:
        self._timer = None
        if self._done is None or self._done.done():
            return
        now = self.clock()
        if self.up is None and self._waiting is not None:
            at, kind = self._body_deadline()
            if at is not None and at <= now:
                self._body_stalled(kind)
            else:
                self._arm(at)
            return
        if self.up is None:
            at = self._idle_deadline()
            if at is not None and at <= now:
                self._finish(None)  # a quiet keep-alive client is closed
            else:
                self._arm(at)
            return
        at, kind = self._request_deadline()
        if at is None or at > now:
            self._arm(at)
            return
        self.proxy.stats.timeouts += 1
        if self.final is None:
            assert self.head is not None
            self._attempt_failed(no_answer(self.proxy.cluster.name, kind))
            return
        self._end_request(reusable=False)  # a cut response
        self.down.abort()
        self._finish(None)
