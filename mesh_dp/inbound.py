"""An inbound listener: terminate mTLS, authorize the caller, forward to the application.

Per accepted connection, in this order (nothing reaches the application before step 3):

1. TLS handshake with the sidecar's current server context, which requires a client
   certificate chaining to the mesh CA. No certificate, another CA's, or no TLS at all
   fails here (counted as a handshake failure).
2. The caller's SPIFFE ID and tags (`kuma://` URI SANs, meshfed/pki/tag_sans.py), read
   from its verified certificate, are evaluated against the
   inbound's compiled MeshTrafficPermission. A deny closes the connection (counted per
   caller and logged); an allow is counted per caller, which is how an operator (or a test)
   sees who called.
3. Connect to the application at `serviceAddress:servicePort` and relay bytes both ways.

With mTLS off on the mesh, step 1 and 2 are skipped: plain TCP is forwarded as is.

An inbound whose protocol is `http` parses the caller's requests (mesh_dp/http/proxy.py)
and forwards them over pooled keep-alive connections to the application; the permission is
checked when the connection opens and again per request once the permissions change (a
caller's sidecar keeps its connection alive), and a denied caller gets 403
(`x-meshfed-error: permission-denied`) instead of a bare close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.http.attempt import RequestPolicy
from mesh_dp.http.conn import Conn
from mesh_dp.http.faults import CALLER_ID, CALLER_TAGS, InboundTraffic, applies
from mesh_dp.http.parse import ProtocolError, RequestHead, RequestParser
from mesh_dp.http.pool import Pool
from mesh_dp.http.proxy import HttpProxy
from mesh_dp.http.timeouts import HttpTimeouts
from mesh_dp.ratelimit import Buckets
from mesh_dp.relay import Link, Side, describe
from mesh_dp.stats import InboundStats
from mesh_dp.tlsconf import TlsContexts
from meshfed.aio import wait_for
from meshfed.dpconfig.model import Endpoint, Inbound, InboundTimeouts
from meshfed.pki.tag_sans import NO_TAGS, TagSet, tags_of
from meshfed.pki.tls import PeerIdentityError, peer_identity_of, peer_uris

log = logging.getLogger("mesh_dp.inbound")

APP_MAX_CONNECTIONS = 1 << 20  # the application is not circuit-broken by its own sidecar


class _AppCluster:
    """The HTTP pipeline's view of the application behind an inbound: one endpoint, plain
    TCP on loopback, pooled keep-alive connections."""

    def __init__(self, listener: InboundListener) -> None:
        self.listener = listener
        self.pool = Pool()
        self._state: EndpointState | None = None
        self._policy: tuple[InboundTimeouts, RequestPolicy] | None = None

    @property
    def name(self) -> str:
        return self.listener.inbound.service

    def policy(self) -> RequestPolicy:
        """The inbound's MeshTimeout `rules` (InboundTimeouts), read again when they change."""
        t = self.listener.inbound.timeouts
        if self._policy is None or self._policy[0] is not t:
            self._policy = t, app_policy(t)
        return self._policy[1]

    def choose(self, request: RequestHead, tried: Sequence[EndpointState]) -> EndpointState | None:
        i = self.listener.inbound
        if self._state is None or (self._state.endpoint.address, self._state.endpoint.port) != (
            i.service_address,
            i.service_port,
        ):
            self._state = EndpointState(Endpoint(i.service_address, i.service_port, ""))
        return None if tried else self._state

    async def open(self, endpoint: EndpointState, timeout: float) -> Conn:
        loop = asyncio.get_running_loop()
        conn = Conn(None)
        e = endpoint.endpoint
        await wait_for(loop.create_connection(lambda: conn, e.address, e.port), timeout)
        return conn

    def connect_failed(self, endpoint: EndpointState) -> None:
        self.listener.stats.app_failures += 1

    def connect_succeeded(self, endpoint: EndpointState) -> None:
        endpoint.connections += 1

    def finished(self, endpoint: EndpointState, status: int) -> None:
        endpoint.requests += 1


def app_policy(t: InboundTimeouts) -> RequestPolicy:
    """What the HTTP pipeline enforces per request on an inbound: its MeshTimeout `rules`
    (idleTimeout bounds a kept-alive caller's quiet time); no retries, no limits."""
    return RequestPolicy(
        connect_timeout=t.connect_timeout,
        max_connect_attempts=1,
        response_timeout=t.idle_timeout,
        max_connections=APP_MAX_CONNECTIONS,
        timeouts=HttpTimeouts(
            request=t.request_timeout,
            stream_idle=t.stream_idle_timeout,
            max_stream=t.max_stream_duration,
            max_connection=t.max_connection_duration,
            request_headers=t.request_headers_timeout,
        ),
    )


def listening_socket(address: str, port: int) -> socket.socket:
    """A non-blocking listening socket; OSError (address in use, ...) propagates."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class InboundListener:
    """Accepts with its own loop (`sock_accept`) and hands each socket to the event loop's
    TLS with `connect_accepted_socket`: the TLS layer owns the socket from its first byte,
    and a failed handshake comes back as an exception this listener can count. (A server
    protocol upgraded later with `start_tls` can lose the ClientHello under uvloop, which
    starts reading right after `connection_made`.)"""

    def __init__(
        self,
        inbound: Inbound,
        stats: InboundStats,
        contexts: Callable[[], TlsContexts | None],
        *,
        handshake_timeout: float,
        access_log: Callable[[Record], None] | None = None,
    ) -> None:
        self.inbound = inbound
        self.http = HttpProxy(_AppCluster(self), stats.http, "inbound", access_log=access_log)
        self._stats = stats
        self._contexts = contexts
        self._handshake_timeout = handshake_timeout
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.links: set[Link] = set()
        # MeshRateLimit and MeshFaultInjection (decision 128)
        self.traffic = InboundTraffic(lambda: self.inbound)
        self.connection_rate = Buckets()
        self.update(inbound)
        # MeshAccessLog of TCP connections: (link, destination service, upstream)
        self.tcp_log: Callable[[Link, str, str], None] | None = None

    @property
    def stats(self) -> InboundStats:
        return self._stats

    @stats.setter
    def stats(self, stats: InboundStats) -> None:
        """Another service at the same address and port counts apart."""
        self._stats = stats
        self.http.stats = stats.http

    @property
    def where(self) -> str:
        return f"{self.inbound.address}:{self.inbound.port}"

    async def bind(self) -> None:
        self._sock = listening_socket(self.inbound.address, self.inbound.port)
        self._accept_task = asyncio.create_task(self._accept_loop(self._sock))

    def update(self, inbound: Inbound) -> None:
        """Same address and port, new permissions or application address: for new connections;
        a new rate limit or faults: for the next request."""
        self.inbound = inbound
        self.http.traffic = self.traffic if applies(inbound) else None

    def close(self) -> None:
        """Stops accepting; open connections finish on their own."""
        self.http.cluster.pool.close()
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        if self._sock is not None:
            # The cancelled accept unregisters its fd only on a later loop turn; a new socket
            # could reuse the number meanwhile, so unregister before closing.
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                log.error("inbound %s: accept failed: %s", self.where, exc)
                await asyncio.sleep(0.1)
                continue
            self.stats.connections_total += 1
            if not self.connection_rate.admit(self.inbound.rate_limit.tcp):
                log.debug("inbound %s: MeshRateLimit connectionRate: closed", self.where)
                conn.close()  # Envoy's local rate limit closes it before anything is read
                continue
            task = asyncio.create_task(self._handle(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket) -> None:
        inbound = self.inbound  # one connection sees one config
        http = inbound.protocol == "http"
        client: Side | Conn = (
            Conn(RequestParser(), counter=self.stats.bytes)
            if http
            else Side(downstream=True, counter=self.stats.bytes)
        )
        contexts = self._contexts()
        loop = asyncio.get_running_loop()
        if contexts is None and inbound.permissions.enforced:
            log.error("inbound %s: permissions need mTLS, but no certificate is loaded", self.where)
            self.stats.handshake_failures += 1
            conn.close()
            return
        try:
            await loop.connect_accepted_socket(
                lambda: client,
                conn,
                ssl=None if contexts is None else contexts.server,
                ssl_handshake_timeout=None if contexts is None else self._handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ConnectionError) and not isinstance(exc, ssl.SSLError):
                # Gone before finishing the handshake: a TCP health check or a port scan.
                self.stats.closed_early += 1
                log.debug("inbound %s: closed before the handshake: %s", self.where, exc)
            else:
                self.stats.handshake_failures += 1
                log.info("inbound %s: TLS handshake failed: %s", self.where, describe(exc))
            with contextlib.suppress(OSError):
                conn.close()
            return
        if client.transport is None:  # the peer left as the handshake finished
            return
        caller: str | None = None
        tags = NO_TAGS
        if contexts is not None:
            caller, tags = self._caller(client)
            client.peer = caller
            CALLER_ID.set(caller)  # this task serves this one connection (faults.py)
            CALLER_TAGS.set(tags)
            if not self._authorize(caller, inbound, tags):
                if isinstance(client, Conn):
                    await self._deny_http(client)
                else:
                    client.close(abort=True)
                return
        if isinstance(client, Conn):
            checker = None if contexts is None else self._checker(caller, tags)
            await self._serve_http(client, checker)
        else:
            await self._forward(client, inbound)

    async def _serve_http(self, client: Conn, allowed: Callable[[], bool] | None) -> None:
        self.stats.active += 1
        try:
            await self.http.serve(client, allowed)
        finally:
            self.stats.active -= 1

    def _checker(self, caller: str | None, tags: TagSet) -> Callable[[], bool]:
        """Whether `caller` may still call, per request: re-evaluated only when the inbound's
        permissions changed (a new config), so kept-alive connections follow the policy."""
        checked = self.inbound.permissions
        verdict = True

        def allowed() -> bool:
            nonlocal checked, verdict
            permissions = self.inbound.permissions
            if permissions is not checked:
                checked = permissions
                verdict = self._authorize(caller, self.inbound, tags)
            return verdict

        return allowed

    async def _deny_http(self, client: Conn) -> None:
        """Answers the first request 403 and closes."""
        with contextlib.suppress(ProtocolError, TimeoutError):
            await wait_for(client.next(), self._handshake_timeout)
        self.http.deny(client)
        client.close()

    def _caller(self, client: Side | Conn) -> tuple[str | None, TagSet]:
        """The caller's SPIFFE ID and tags from its verified certificate; None and no tags
        without a usable one."""
        assert client.transport is not None
        try:
            uris = peer_uris(client.transport.get_extra_info("ssl_object"))
            return peer_identity_of(uris), tags_of(uris)
        except PeerIdentityError as exc:
            log.info("inbound %s: caller has no usable identity: %s", self.where, exc)
            return None, NO_TAGS

    def _authorize(self, caller: str | None, inbound: Inbound, tags: TagSet = NO_TAGS) -> bool:
        verdict = inbound.permissions.evaluate(caller, tags)
        name = caller or "(none)"
        if not verdict.allowed:
            self.stats.denied[name] += 1
            log.warning("inbound %s: denied %s (%s)", self.where, name, verdict.reason)
            return False
        if verdict.shadow_denied:
            self.stats.shadow_denied[name] += 1
            log.warning("inbound %s: allowed %s, would deny (%s)", self.where, name, verdict.reason)
        self.stats.authorized[name] += 1
        log.debug("inbound %s: allowed %s (%s)", self.where, name, verdict.reason)
        return True

    async def _forward(self, client: Side, inbound: Inbound) -> None:
        loop = asyncio.get_running_loop()
        app = Side(downstream=False)
        try:
            await wait_for(
                loop.create_connection(lambda: app, inbound.service_address, inbound.service_port),
                inbound.timeouts.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.stats.app_failures += 1
            log.warning(
                "inbound %s: application %s:%d unreachable: %s",
                self.where,
                inbound.service_address,
                inbound.service_port,
                describe(exc),
            )
            client.close(abort=True)
            return
        self.stats.active += 1
        link = Link(client, app, on_close=self._closed, idle_timeout=inbound.timeouts.idle_timeout)
        self.links.add(link)
        link.start()

    def _closed(self, link: Link, reason: str) -> None:
        self.stats.active -= 1
        self.links.discard(link)
        if self.tcp_log is not None:
            i = self.inbound
            self.tcp_log(link, i.service, f"{i.service_address}:{i.service_port}")
        log.debug("inbound %s: connection closed (%s)", self.where, reason)

    async def aclose(self) -> None:
        """Closes the listener and cancels handshakes in progress (shutdown)."""
        self.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
