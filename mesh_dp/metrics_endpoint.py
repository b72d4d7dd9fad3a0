"""MeshMetric's Prometheus backends: the sidecar's metrics at http://address:port/path, each
backend its own listener, with the applications' own metrics merged in.

At each scrape: the sidecar's registry rendered and narrowed by the policy's `sidecar`
settings (metrics_filter.py), then each application's endpoint fetched (HTTP/1.0 GET, 2 s
at most each, concurrently) and its text appended as it came; an application that does not
answer is left out (and counted). `update` follows each config: listeners a config no longer
names close, new ones bind. The admin endpoint's /metrics stays as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from mesh_dp.metrics_filter import select
from meshfed.aio import wait_for
from meshfed.dpconfig.observability import App, Metrics
from meshfed.proxy.promtext import CONTENT_TYPE

log = logging.getLogger("mesh_dp.metrics")

SCRAPE_TIMEOUT = 2.0
MAX_APP_BODY = 16 * 1024 * 1024
READ_TIMEOUT = 5.0

EndpointKey = tuple[str, int]


async def scrape(app: App) -> bytes | None:
    """The body of one application's metrics endpoint; None when it does not answer 200."""

    async def get() -> bytes | None:
        reader, writer = await asyncio.open_connection(app.address, app.port)
        try:
            writer.write(
                f"GET {app.path} HTTP/1.0\r\nHost: {app.address}:{app.port}\r\n"
                "Accept: text/plain\r\n\r\n".encode("latin-1")
            )
            data = await reader.read(MAX_APP_BODY)
            while chunk := await reader.read(MAX_APP_BODY):
                data += chunk
                if len(data) > MAX_APP_BODY:
                    return None
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1:2]
        return body if status == [b"200"] else None

    try:
        return await wait_for(get(), SCRAPE_TIMEOUT)
    except (OSError, TimeoutError, ValueError):
        return None


class MetricsEndpoints:
    """The listeners of the running MeshMetric, serving `render()` filtered by it."""

    def __init__(
        self,
        render: Callable[[], bytes],
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        """`cert_file`/`key_file`: what a ProvidedTLS backend serves with (decision 144)."""
        self._render = render
        self._tls_files = (cert_file, key_file)
        self.tls_fallbacks = 0  # ProvidedTLS backends served in plaintext (no certificate)
        self.metrics: Metrics | None = None
        self._servers: dict[EndpointKey, asyncio.Server] = {}
        self._paths: dict[int, str] = {}  # by port
        self._tls: dict[EndpointKey, bool] = {}
        self.app_failures = 0

    @property
    def ports(self) -> list[int]:
        return sorted(p for _, p in self._servers)

    async def update(self, metrics: Metrics | None) -> None:
        """Listens where `metrics` says (nothing when None); a port that cannot be bound is
        logged and left out, the others serve."""
        self.metrics = metrics
        wanted: dict[EndpointKey, str] = {}
        tls: dict[EndpointKey, bool] = {}
        if metrics is not None:
            for e in metrics.endpoints:
                wanted.setdefault((metrics.address, e.port), e.path)
                tls.setdefault((metrics.address, e.port), e.tls)
        for key in [k for k in self._servers if k not in wanted or self._tls.get(k) != tls[k]]:
            self._servers.pop(key).close()
        self._paths = {port: path for (_, port), path in wanted.items()}
        self._tls = tls
        for key in wanted:
            if key in self._servers:
                continue
            try:
                self._servers[key] = await asyncio.start_server(
                    self._serve, key[0], key[1], reuse_address=True, ssl=self._context(tls[key])
                )
            except OSError as exc:
                log.error("MeshMetric: cannot serve metrics on %s:%d: %s", *key, exc)

    def _context(self, tls: bool) -> ssl.SSLContext | None:
        """ProvidedTLS: the sidecar's certificate files; without them, plaintext (Kuma's
        fallback, logged and counted)."""
        cert, key = self._tls_files
        if not tls:
            return None
        if cert is None or key is None:
            self.tls_fallbacks += 1
            log.error(
                "MeshMetric: tls mode ProvidedTLS, but no --metrics-cert-path and "
                "--metrics-key-path: serving metrics in plaintext (Kuma's fallback)"
            )
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return context

    async def close(self) -> None:
        await self.update(None)

    async def parts(self) -> list[tuple[str, bytes]]:
        """The sidecar's selected series ("" as name), then each answering application's
        text under its name (`address:port` when it has none)."""
        m = self.metrics
        own = self._render()
        if m is None:
            return [("", own)]
        parts = [("", select(own.decode("utf-8"), m).encode("utf-8"))]
        found = await asyncio.gather(*(scrape(a) for a in m.applications))
        for app, body in zip(m.applications, found, strict=True):
            if body is None:
                self.app_failures += 1
                log.info("MeshMetric: %s:%d%s did not answer", app.address, app.port, app.path)
                continue
            name = app.name or f"{app.address}:{app.port}"
            parts.append((name, body if body.endswith(b"\n") or not body else body + b"\n"))
        return parts

    async def body(self) -> bytes:
        """What a scrape gets: the sidecar's selected series, then each application's."""
        return b"".join(body for _, body in await self.parts())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            sock = writer.get_extra_info("sockname")
            path = self._paths.get(sock[1]) if sock else None
            if len(parts) != 3 or parts[0] != "GET":
                status, body = "405 Method Not Allowed", b"only GET is served here\n"
            elif parts[1].split("?", 1)[0] != path:
                status, body = "404 Not Found", f"metrics are at {path}\n".encode()
            else:
                status, body = "200 OK", await self.body()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        except Exception:  # a failing scrape must not take the listener down
            log.exception("MeshMetric scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
