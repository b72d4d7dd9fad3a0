"""The ingress data path: accept, read the ClientHello, route on its SNI, splice.

Per accepted connection:

1. Read until the ClientHello is complete (meshfed.proxy.clienthello, fed incrementally),
   within `hello_timeout` for the whole hello: a peer that dribbles bytes (slowloris) or
   sends nothing is closed. Garbage fails on its first bytes.
2. Route on the SNI (router.py): unknown names are closed.
3. Connect to the service's endpoints in round-robin order, the next one when a connect
   fails or takes longer than `connect_timeout`.
4. Pump bytes both ways with the splice pump (zero copy on Linux), sending the bytes read
   in step 1 first. TLS is never terminated: the caller's mTLS session reaches the callee's
   sidecar untouched, so the callee sees the caller's own certificate.

Every refused connection is counted by reason. `drain(deadline)` stops accepting and lets
open connections finish until the deadline, then cuts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

from meshfed.dpconfig.model import Endpoint, IngressConfig
from meshfed.proxy.clienthello import NEED_MORE, ClientHello, ClientHelloError, ClientHelloParser
from meshfed.proxy.pump import PumpStats, pump
from zone_ingress.router import RouteError, Router

log = logging.getLogger("zone_ingress")

READ_CHUNK = 16384
DEFAULT_HELLO_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0


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
    live: list[PumpStats] = field(default_factory=list)  # connections being pumped

    def bytes_in(self) -> int:
        return self.to_service + sum(s.client_to_server for s in self.live)

    def bytes_out(self) -> int:
        return self.from_service + sum(s.server_to_client for s in self.live)

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
        self._accept_task: asyncio.Task[None] | None = None
        self._conns: set[asyncio.Task[None]] = set()

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
            self._stats(s.mesh, s.service)
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
        self._accept_task = asyncio.create_task(self._accept_loop(sock))

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.accepted += 1
            task = asyncio.create_task(self._serve(conn))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)

    def stop_accepting(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        if self._sock is not None:
            # The cancelled accept unregisters its fd only on a later loop turn; a new socket
            # could reuse the number meanwhile, so unregister before closing.
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def drain(self, timeout: float) -> int:
        """Stops accepting, waits up to `timeout` for open connections; returns how many
        were still open and got cut."""
        self.stop_accepting()
        pending = set(self._conns)
        if pending:
            log.info("draining %d connection(s) for up to %.1fs", len(pending), timeout)
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _stats(self, mesh: str, service: str) -> ServiceStats:
        key = (mesh, service)
        stats = self.services.get(key)
        if stats is None:
            stats = self.services[key] = ServiceStats(mesh, service)
        return stats

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: socket.socket | None = None
        try:
            initial, hello = await self._read_hello(conn)
            if self.router is None:
                raise Rejected("no_config", "no routing table yet")
            try:
                route = self.router.route(hello.sni)
            except RouteError as exc:
                raise Rejected(exc.reason, str(exc)) from None
            stats = self._stats(route.service.mesh, route.service.service)
            upstream = await self._connect(route.endpoints, stats)
        except Rejected as exc:
            self._reject(exc.reason)
            log.info("closed a connection: %s (%s)", exc.reason, exc)
            with contextlib.suppress(OSError):
                conn.close()
            return
        except BaseException:
            conn.close()
            raise
        await self._pump(conn, upstream, initial, stats)

    async def _read_hello(self, conn: socket.socket) -> tuple[bytes, ClientHello]:
        loop = asyncio.get_running_loop()
        parser = ClientHelloParser()
        data = bytearray()
        deadline = time.monotonic() + self.hello_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Rejected("timeout", f"no complete ClientHello in {self.hello_timeout:g}s")
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(conn, READ_CHUNK), left)
            except TimeoutError:
                continue
            except OSError as exc:
                raise Rejected("closed", f"reset before the ClientHello: {exc}") from None
            if not chunk:
                raise Rejected("closed", "closed before the ClientHello was complete")
            data += chunk
            try:
                result = parser.feed(chunk)
            except ClientHelloError as exc:
                raise Rejected(str(exc.kind), exc.detail) from None
            if result is not NEED_MORE:
                assert isinstance(result, ClientHello)
                return bytes(data), result

    async def _connect(self, endpoints: tuple[Endpoint, ...], stats: ServiceStats) -> socket.socket:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        for e in endpoints:
            sock = socket.socket(socket.AF_INET6 if ":" in e.address else socket.AF_INET)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(
                    loop.sock_connect(sock, (e.address, e.port)), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                sock.close()
                stats.connect_failures += 1
                errors.append(f"{e.address}:{e.port}: {exc or 'timed out'}")
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        stats.no_endpoint += 1
        raise Rejected(
            "no_endpoint", f"{stats.service}: every endpoint failed ({'; '.join(errors)})"
        )

    async def _pump(
        self, conn: socket.socket, upstream: socket.socket, initial: bytes, stats: ServiceStats
    ) -> None:
        live = PumpStats()
        stats.connections_total += 1
        stats.active += 1
        stats.live.append(live)
        try:
            await pump(conn, upstream, initial=initial, stats=live)
        finally:
            stats.live.remove(live)
            stats.active -= 1
            stats.to_service += live.client_to_server
            stats.from_service += live.server_to_client
            if live.error:
                log.debug("%s: connection ended: %s", stats.service, live.error)
