"""The ingress data path: accept, read the ClientHello, route on its SNI, pump.

Per accepted connection:

1. Read until the ClientHello is complete (meshfed.proxy.clienthello, fed incrementally),
   within `hello_timeout` for the whole hello: a peer that dribbles bytes (slowloris) or
   sends nothing is closed. Garbage fails on its first bytes.
2. Route on the SNI (router.py): unknown names are closed.
3. Connect to the service's endpoints in round-robin order, the next one when a connect
   fails or takes longer than `connect_timeout`.
4. Pump bytes both ways (meshfed.proxy.pump: copy for small flows, splice for bulk ones),
   sending the bytes read in step 1 first. TLS is never terminated: the caller's mTLS
   session reaches the callee's sidecar untouched, so the callee sees the caller's own
   certificate.

Each connection is a small state machine driven by event-loop callbacks, with no task: the
accept loop takes every pending connection per wakeup, and a connection costs a reader or
writer registration per step, one timer and the pump. New connections per second is what
this design is for; bulk throughput is the pump's business.

Every refused connection is counted by reason. `drain(deadline)` stops accepting and lets
open connections finish until the deadline, then cuts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Final

from meshfed.aio import wait_for
from meshfed.dpconfig.model import Endpoint, IngressConfig
from meshfed.proxy.clienthello import NEED_MORE, ClientHello, ClientHelloError, ClientHelloParser
from meshfed.proxy.pump import PumpStats, Relay
from zone_ingress.router import RouteError, Router

log = logging.getLogger("zone_ingress")

READ_CHUNK: Final = 16384
DEFAULT_HELLO_TIMEOUT: Final = 5.0
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
ACCEPTS_PER_WAKEUP: Final = 64
ACCEPT_BACKOFF: Final = 0.1  # after EMFILE and friends, instead of spinning


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class ServiceStats:
    mesh: str
    service: str
    connections_total: int = 0
    active: int = 0
    to_service: int = 0  # bytes of finished connections, caller -> service
    from_service: int = 0
    connect_failures: int = 0
    no_endpoint: int = 0  # connections closed because no instance could be reached
    live: dict[object, PumpStats] = field(default_factory=dict)  # connections being pumped

    def bytes_in(self) -> int:
        return self.to_service + sum(s.client_to_server for s in self.live.values())

    def bytes_out(self) -> int:
        return self.from_service + sum(s.server_to_client for s in self.live.values())

    def to_json(self) -> dict[str, object]:
        return {
            "mesh": self.mesh,
            "service": self.service,
            "connectionsTotal": self.connections_total,
            "active": self.active,
            "bytesToService": self.bytes_in(),
            "bytesFromService": self.bytes_out(),
            "connectFailures": self.connect_failures,
            "noEndpoint": self.no_endpoint,
        }


class IngressServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.hello_timeout = hello_timeout
        self.connect_timeout = connect_timeout
        self.router: Router | None = None
        self.services: dict[tuple[str, str], ServiceStats] = {}
        self.rejected: dict[str, int] = {}
        self.accepted = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff: asyncio.TimerHandle | None = None
        self._open: set[_Connection] = set()
        self._all_closed: asyncio.Future[None] | None = None

    @property
    def version(self) -> str:
        return self.router.config.version if self.router is not None else ""

    async def apply(self, config: IngressConfig) -> None:
        """The new routing table serves the next connection; open ones are not touched."""
        if self.router is None:
            self.router = Router(config)
        else:
            self.router.update(config)
        for s in config.services:
            self.stats(s.mesh, s.service)
        log.info(
            "applied ingress config %s: %d service(s)",
            config.version or "(unversioned)",
            len(config.services),
        )

    def start(self) -> None:
        """Binds and starts accepting; OSError (e.g. the port is taken) propagates."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(4096)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        listener, loop = self._sock, self._loop
        assert listener is not None and loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("accept failed: %s", exc)
                loop.remove_reader(listener.fileno())
                self._backoff = loop.call_later(ACCEPT_BACKOFF, self._resume_accepting)
                return
            self.accepted += 1
            _Connection(self, loop, conn).start()

    def _resume_accepting(self) -> None:
        self._backoff = None
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_accept)

    def stop_accepting(self) -> None:
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def drain(self, timeout: float) -> int:
        """Stops accepting, waits up to `timeout` for open connections; returns how many
        were still open and got cut."""
        self.stop_accepting()
        if self._open:
            log.info("draining %d connection(s) for up to %.1fs", len(self._open), timeout)
            self._all_closed = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await wait_for(asyncio.shield(self._all_closed), timeout)
        cut = list(self._open)
        for conn in cut:
            conn.abort("drain deadline")
        return len(cut)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def stats(self, mesh: str, service: str) -> ServiceStats:
        key = (mesh, service)
        stats = self.services.get(key)
        if stats is None:
            stats = self.services[key] = ServiceStats(mesh, service)
        return stats

    def closed(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if not self._open and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)


class _Connection:
    """One accepted connection: hello -> route -> connect (next endpoint on failure) -> pump.

    Exactly one of these is registered at a time: the caller's socket for reading (hello),
    an upstream socket for writing (connect in progress), or the pump's registrations.
    """

    __slots__ = (
        "conn",
        "data",
        "endpoint",
        "errors",
        "loop",
        "parser",
        "reading",
        "relay",
        "resolving",
        "router",
        "server",
        "service",
        "targets",
        "timer",
        "upstream",
        "writing",
    )

    def __init__(self, server: IngressServer, loop: asyncio.AbstractEventLoop, conn: socket.socket):
        self.server = server
        self.loop = loop
        self.conn = conn
        self.parser = ClientHelloParser()
        self.data = b""
        self.timer: asyncio.TimerHandle | None = None
        self.upstream: socket.socket | None = None
        self.reading = False  # the caller's socket, for the hello
        self.writing = False  # the upstream socket, for its connect
        self.endpoint: Endpoint | None = None  # being connected to, then connected to
        self.router: Router | None = None  # counts this connection to `endpoint` while set
        # what is left to try, last first: (endpoint, address family or None for a hostname,
        # socket address)
        self.targets: list[tuple[Endpoint, int | None, tuple[Any, ...]]] = []
        self.errors: list[str] = []
        self.service: ServiceStats | None = None
        self.relay: Relay | None = None
        self.resolving: asyncio.Task[None] | None = None

    def start(self) -> None:
        conn = self.conn
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset between accept and here
            conn.close()
            return
        self.server._open.add(self)
        self.timer = self.loop.call_later(self.server.hello_timeout, self._hello_timeout)
        self._on_hello()  # the hello is often there already: then no registration at all

    # --- step 1 and 2: the ClientHello, the route ---------------------------------------

    def _on_hello(self) -> None:
        try:
            chunk = self.conn.recv(READ_CHUNK)
        except BlockingIOError:
            self._watch_hello()
            return
        except OSError as exc:
            self._reject("closed", f"reset before the ClientHello: {exc}")
            return
        if not chunk:
            self._reject("closed", "closed before the ClientHello was complete")
            return
        self.data += chunk
        try:
            result = self.parser.feed(chunk)
        except ClientHelloError as exc:
            self._reject(str(exc.kind), exc.detail)
            return
        if result is NEED_MORE:
            self._watch_hello()
            return
        assert isinstance(result, ClientHello)
        self._cancel_timer()  # the reader stays: the pump takes it over
        server = self.server
        if server.router is None:
            self._reject("no_config", "no routing table yet")
            return
        try:
            route = server.router.route(result.sni)
        except RouteError as exc:
            self._reject(exc.reason, str(exc))
            return
        self.service = server.stats(route.service.mesh, route.service.service)
        self.targets = [
            (e, _literal_family(e.address), (e.address, e.port)) for e in reversed(route.endpoints)
        ]
        self._connect_next()

    def _watch_hello(self) -> None:
        if not self.reading:
            self.loop.add_reader(self.conn.fileno(), self._on_hello)
            self.reading = True

    def _hello_timeout(self) -> None:
        self.timer = None
        self._reject("timeout", f"no complete ClientHello in {self.server.hello_timeout:g}s")

    # --- step 3: connect, endpoint after endpoint --------------------------------------

    def _connect_next(self) -> None:
        stats = self.service
        assert stats is not None
        while self.targets:
            e, family, sockaddr = self.targets.pop()
            if family is None:
                self._unwatch()
                self.resolving = asyncio.ensure_future(self._resolve(e))
                return
            if self._connect(family, sockaddr, e):
                return
        stats.no_endpoint += 1
        self._reject(
            "no_endpoint", f"{stats.service}: every endpoint failed ({'; '.join(self.errors)})"
        )

    async def _resolve(self, e: Endpoint) -> None:
        """A hostname endpoint: resolved off the loop within the connect timeout; its
        addresses are tried next, in the resolver's order, like endpoints."""
        try:
            async with asyncio.timeout(self.server.connect_timeout):
                infos = await self.loop.getaddrinfo(e.address, e.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            self._count_failure(e, f"cannot resolve: {exc or 'timed out'}")
            infos = []
        finally:
            self.resolving = None
        self.targets += [(e, family, sockaddr) for family, _, _, _, sockaddr in reversed(infos)]
        self._connect_next()

    def _connect(self, family: int, sockaddr: tuple[Any, ...], e: Endpoint) -> bool:
        """Starts connecting; False when it failed at once (already counted)."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._count_failure(e, os.strerror(err))
            return False
        self.upstream = sock
        self.endpoint = e
        if err == 0:
            self._connected()
            return True
        self._unwatch()  # the caller's bytes wait in the kernel meanwhile
        self.timer = self.loop.call_later(self.server.connect_timeout, self._connect_timeout)
        self.loop.add_writer(sock.fileno(), self._on_connect)
        self.writing = True
        return True

    def _on_connect(self) -> None:
        sock, e = self.upstream, self.endpoint
        assert sock is not None and e is not None
        self._unwatch()
        self._cancel_timer()
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._failed(e, os.strerror(err))
            return
        self._connected()

    def _connect_timeout(self) -> None:
        assert self.endpoint is not None
        self.timer = None
        self._unwatch()
        self._failed(self.endpoint, "timed out")

    def _failed(self, e: Endpoint, reason: str) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self._count_failure(e, reason)
        self._connect_next()

    def _count_failure(self, e: Endpoint, reason: str) -> None:
        assert self.service is not None
        self.service.connect_failures += 1
        if self.server.router is not None:
            self.server.router.failed(e)
        self.errors.append(f"{e.address}:{e.port}: {reason}")

    # --- step 4: pump -------------------------------------------------------------------

    def _connected(self) -> None:
        upstream, stats = self.upstream, self.service
        assert upstream is not None and stats is not None
        with contextlib.suppress(OSError):
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.router is not None and self.endpoint is not None:
            self.router = self.server.router
            self.router.opened(self.endpoint)
        live = PumpStats()
        stats.connections_total += 1
        stats.active += 1
        stats.live[self] = live
        self.relay = Relay(self.conn, upstream, stats=live, on_done=self._pumped)
        data, self.data = self.data, b""
        watched, self.reading = self.reading, False
        self.relay.start(data, client_watched=watched)

    def _pumped(self, relay: Relay) -> None:
        stats = self.service
        assert stats is not None
        live = stats.live.pop(self)
        stats.active -= 1
        stats.to_service += live.client_to_server
        stats.from_service += live.server_to_client
        if live.error:
            log.debug("%s: connection ended: %s", stats.service, live.error)
        self.server.closed(self)
        if relay.bug is not None:
            log.error("%s: pump failed", stats.service, exc_info=relay.bug)

    # --- endings ------------------------------------------------------------------------

    def _reject(self, reason: str, detail: str) -> None:
        self.server.reject(reason)
        log.info("closed a connection: %s (%s)", reason, detail)
        self._close()

    def abort(self, reason: str) -> None:
        """Cuts the connection whatever step it is in (drain deadline)."""
        if self.relay is not None:
            self.relay.abort(reason)
            return
        self._close()

    def _unwatch(self) -> None:
        """Drops this connection's registration; always before closing what it watches."""
        if self.reading:
            self.loop.remove_reader(self.conn.fileno())
            self.reading = False
        if self.writing:
            assert self.upstream is not None
            self.loop.remove_writer(self.upstream.fileno())
            self.writing = False

    def _close(self) -> None:
        if self.router is not None and self.endpoint is not None:
            self.router.closed(self.endpoint)
            self.router = None
        self._unwatch()
        self._cancel_timer()
        if self.resolving is not None:
            self.resolving.cancel()
            self.resolving = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        with contextlib.suppress(OSError):
            self.conn.close()
        self.server.closed(self)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_families: dict[str, int | None] = {}


def _literal_family(address: str) -> int | None:
    """AF_INET / AF_INET6 for an IP literal, None for a hostname; memoized (config sized)."""
    if address in _families:
        return _families[address]
    family = None
    for candidate in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(candidate, address)
        except OSError:
            continue
        family = candidate
        break
    if len(_families) > 4096:
        _families.clear()
    _families[address] = family
    return family
