"""The zone egress's data path: mTLS from the mesh's sidecars in, routed by SNI to a
MeshExternalService, checked against its MeshTrafficPermission, then out to one of its
endpoints, in plain TCP or with TLS originated as its `tls` says.

Per connection:

1. TLS handshake. The ClientHello's SNI (`encode_sni(<name>, <mesh>)`) picks the service; the
   handshake then goes on with that service's context (OpenSSL's SNI callback): the egress
   presents the leaf `spiffe://<mesh>/<name>` (what the sidecar checks, as for any service)
   and requires a client certificate from that mesh's CA. An unknown or missing SNI fails the
   handshake (`unknown_sni`), as does a certificate from another CA.
2. Permission: the caller's verified SPIFFE ID against the service's compiled
   MeshTrafficPermission (meshfed.policy.permissions); a denied caller is closed before
   anything is dialled (`denied`).
3. Connect: endpoints by `priority` (lower first), round robin among equals, the next on a
   failure, each within `connectTimeout`; with origination, the TLS handshake and the
   subjectAltNames check are part of the attempt (zone_egress/origin.py).
4. Relay both ways until either side ends or `idleTimeout` passes without a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Final

from meshfed.aio import wait_for
from meshfed.dpconfig.egress import EgressConfig, ExternalEndpoint, ExternalService
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.pki.der import DerError, pem_certificates
from meshfed.pki.spiffe import PkiError
from meshfed.pki.tls import mtls_context, peer_spiffe_id
from zone_egress.origin import OriginError, client_context, san_problem, server_name

log = logging.getLogger("zone_egress")

CHUNK: Final = 64 * 1024


@dataclass
class ServiceStats:
    mesh: str
    name: str
    connections_total: int = 0
    active: int = 0
    denied: int = 0
    connect_failures: int = 0
    no_endpoint: int = 0
    bytes_out: int = 0  # caller -> external service
    bytes_in: int = 0  # external service -> caller

    def to_json(self) -> dict[str, Any]:
        return {
            "mesh": self.mesh,
            "name": self.name,
            "connectionsTotal": self.connections_total,
            "active": self.active,
            "denied": self.denied,
            "connectFailures": self.connect_failures,
            "noEndpoint": self.no_endpoint,
            "bytesOut": self.bytes_out,
            "bytesIn": self.bytes_in,
        }


@dataclass
class Route:
    """One service's compiled state: contexts built once per config."""

    service: ExternalService
    server: ssl.SSLContext
    origin: ssl.SSLContext | None
    turn: dict[int, int] = field(default_factory=dict)  # priority -> next index

    def order(self) -> list[ExternalEndpoint]:
        """Endpoints in the order to try: by priority, rotated within each priority."""
        out: list[ExternalEndpoint] = []
        for prio in sorted({e.priority for e in self.service.endpoints}):
            group = [e for e in self.service.endpoints if e.priority == prio]
            start = self.turn.get(prio, 0) % len(group)
            self.turn[prio] = start + 1
            out += group[start:] + group[:start]
        return out


def compile_routes(config: EgressConfig) -> dict[str, Route]:
    """SNI -> Route; ConfigFormatError naming the service whose material is unusable."""
    routes: dict[str, Route] = {}
    for i, s in enumerate(config.services):
        where = f"services[{i}] ({s.mesh}/{s.name})"
        if not s.endpoints:
            raise ConfigFormatError(f"{where}.endpoints: must have at least 1 item")
        try:
            roots = [der for pem in s.tls.ca_pems for der in pem_certificates(pem)]
            chain = (s.tls.cert_pem.rstrip("\n") + "\n" + s.tls.key_pem).encode()
            server = mtls_context(True, chain, roots)
        except (DerError, PkiError, ssl.SSLError, OSError) as exc:
            raise ConfigFormatError(f"{where}.tls: {exc}") from None
        origin = None
        if s.origin_tls is not None:
            try:
                origin = client_context(s.origin_tls)
            except OriginError as exc:
                raise ConfigFormatError(f"{where}.originTls: {exc}") from None
        routes[s.sni.lower()] = Route(s, server, origin)
    return routes


class EgressServer:
    def __init__(self, address: str, port: int, *, handshake_timeout: float = 5.0) -> None:
        self.address = address
        self.port = port
        self.handshake_timeout = handshake_timeout
        self.config: EgressConfig | None = None
        self.routes: dict[str, Route] = {}
        self._by_context: dict[ssl.SSLContext, Route] = {}
        self.services: dict[tuple[str, str], ServiceStats] = {}
        self.rejected: dict[str, int] = {}
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.minimum_version = ssl.TLSVersion.TLSv1_2
        base.verify_mode = ssl.CERT_REQUIRED
        base.sni_callback = self._on_sni
        self._base = base

    @property
    def version(self) -> str:
        return "" if self.config is None else self.config.version

    async def apply(self, config: EgressConfig) -> None:
        """A new table for new connections (open ones keep theirs); ConfigFormatError leaves
        the running one in place."""
        routes = compile_routes(config)
        for sni, route in routes.items():
            old = self.routes.get(sni)
            if old is not None:
                route.turn = old.turn
        self.routes = routes
        # Contexts of the previous config stay known until their handshakes are done.
        self._by_context = {**self._by_context, **{r.server: r for r in routes.values()}}
        self.config = config

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.address,
            self.port,
            ssl=self._base,
            ssl_handshake_timeout=self.handshake_timeout,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def drain(self, timeout: float) -> int:
        """Waits up to `timeout` for open connections; cuts the rest; returns how many."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        cut = len(self._tasks)
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        return cut

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def stats(self, service: ExternalService) -> ServiceStats:
        key = (service.mesh, service.name)
        s = self.services.get(key)
        if s is None:
            s = self.services[key] = ServiceStats(service.mesh, service.name)
        return s

    # --- step 1: the SNI picks the service's context --------------------------------------

    def _on_sni(self, conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        route = self.routes.get(name.lower()) if name else None
        if route is None:
            self.reject("no_sni" if not name else "unknown_sni")
            log.info("refused a handshake: %s", f"unknown SNI {name!r}" if name else "no SNI")
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        conn.context = route.server
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.accepted += 1
        try:
            await self._handle(reader, writer)
        except Exception:
            log.exception("connection failed")
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("ssl_object")
        route = self._by_context.get(conn.context) if conn is not None else None
        if route is None:
            self.reject("no_config")
            return
        service = route.service
        stats = self.stats(service)
        # --- step 2: who calls ----------------------------------------------------------
        try:
            caller: str | None = peer_spiffe_id(conn)
        except PkiError as exc:
            self.reject("bad_identity")
            log.info("%s/%s: refused a caller: %s", service.mesh, service.name, exc)
            return
        verdict = service.permissions.evaluate(caller)
        if not verdict.allowed:
            stats.denied += 1
            log.info("%s/%s: denied %s (%s)", service.mesh, service.name, caller, verdict.reason)
            return
        # --- step 3: connect ------------------------------------------------------------
        errors: list[str] = []
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for endpoint in route.order():
            try:
                upstream = await wait_for(
                    self._dial(route, endpoint), service.connect_timeout or None
                )
                break
            except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
                stats.connect_failures += 1
                label = endpoint.address + (f":{endpoint.port}" if endpoint.port else "")
                errors.append(f"{label}: {describe(exc)}")
        if upstream is None:
            stats.no_endpoint += 1
            log.warning(
                "%s/%s: no endpoint could be reached (%s)",
                service.mesh,
                service.name,
                "; ".join(errors),
            )
            return
        # --- step 4: relay --------------------------------------------------------------
        up_reader, up_writer = upstream
        self._writers.add(up_writer)
        stats.connections_total += 1
        stats.active += 1
        try:
            await relay(reader, writer, up_reader, up_writer, service.idle_timeout, stats)
        finally:
            stats.active -= 1
            self._writers.discard(up_writer)
            up_writer.transport.abort()

    async def _dial(
        self, route: Route, e: ExternalEndpoint
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = route.service.origin_tls
        ctx = route.origin
        if e.address.startswith("unix://"):
            path = e.address[len("unix://") :]
            if ctx is None or tls is None:
                r, w = await asyncio.open_unix_connection(path)
            else:
                name = server_name(tls, e.address)
                r, w = await asyncio.open_unix_connection(path, ssl=ctx, server_hostname=name or "")
        elif ctx is None or tls is None:
            r, w = await asyncio.open_connection(e.address, e.port)
        else:
            name = server_name(tls, e.address)
            r, w = await asyncio.open_connection(
                e.address, e.port, ssl=ctx, server_hostname=name or ""
            )
        if tls is not None and ctx is not None:
            problem = san_problem(tls, w.get_extra_info("ssl_object"))
            if problem is not None:
                w.transport.abort()
                raise ssl.SSLError(f"subjectAltNames: {problem}")
        return r, w


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    return str(exc) or type(exc).__name__


async def relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    idle_timeout: float,
    stats: ServiceStats,
) -> None:
    """Copies both ways until the external side ends, or the caller ends and its end cannot
    be passed on (TLS toward the service has no half-close), or nothing moved either way for
    `idle_timeout` (0: no limit)."""
    last = [time.monotonic()]

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, outgoing: bool) -> bool:
        """True when `src` ended and `dst` was half-closed (the other way may go on)."""
        while True:
            try:
                if idle_timeout:
                    data = await wait_for(src.read(CHUNK), idle_timeout)
                else:
                    data = await src.read(CHUNK)
            except TimeoutError:
                if time.monotonic() - last[0] < idle_timeout:
                    continue  # the other way is busy
                return False
            if not data:
                if dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                        return True
                return False
            last[0] = time.monotonic()
            if outgoing:
                stats.bytes_out += len(data)
            else:
                stats.bytes_in += len(data)
            dst.write(data)
            await dst.drain()

    out = asyncio.create_task(pump(reader, up_writer, True))
    back = asyncio.create_task(pump(up_reader, writer, False))
    try:
        done, _ = await asyncio.wait({out, back}, return_when=asyncio.FIRST_COMPLETED)
        if back not in done and not out.exception() and out.result():
            await asyncio.wait({back})  # the caller half-closed: the answer may still come
    finally:
        for task in (out, back):
            task.cancel()
        for task in (out, back):
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
        with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
            await writer.drain()
