"""What zone-ingress and zone-egress share: one config source (the zone control plane's
stream, or a static file), an admin endpoint, and the drain on SIGTERM.

Both are a server the zone's traffic passes through, configured by zone-cp under a zone
token of their own scope; only the server, the resource they announce and their admin
views differ, so the start-up, the checks of the settings and the stop live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from meshfed.config import Address
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.proxy.admin import AdminServer
from meshfed.proxy.static_config import StaticConfig
from meshfed.resources.envelope import envelope_errors, in_kuma_order

C = TypeVar("C")
Signals = Callable[[asyncio.Event, Callable[[], None]], None]  # SIGTERM/SIGINT: stop; SIGHUP


class StartError(Exception):
    """A setting that makes starting impossible; printed, exit status 2."""


class Settings(Protocol):
    """The settings both programs have (zone_ingress/settings.py, zone_egress/settings.py)."""

    @property
    def cp(self) -> Address | None: ...
    @property
    def config_file(self) -> Path | None: ...
    @property
    def zone_token_file(self) -> Path | None: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def admin_address(self) -> Address: ...
    @property
    def drain_timeout(self) -> float: ...


class Counted(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Server(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> Mapping[str, int]: ...
    @property
    def services(self) -> Mapping[Any, Counted]: ...
    def stop_accepting(self) -> None: ...
    async def drain(self, timeout: float) -> int: ...


def check_source(settings: Settings, scope: str) -> None:
    """Exactly one config source, and a token exactly when it is a control plane."""
    if (settings.config_file is None) == (settings.cp is None):
        raise StartError(
            "give --cp grpc://HOST:PORT (the zone control plane) or --config-file, one of them"
        )
    if settings.cp is not None and settings.zone_token_file is None:
        raise StartError(
            "give --zone-token-file FILE: the zone control plane accepts only proxies with "
            f"a token (a zone token of scope {scope})"
        )
    if settings.config_file is not None and settings.zone_token_file is not None:
        raise StartError("--zone-token-file is for --cp: a --config-file needs no control plane")


def announced(doc: dict[str, Any]) -> dict[str, Any]:
    """The resource a Hello announces, in its wire form; StartError names a bad field.

    zone-cp validates the spec (BAD_REQUEST names the field): validating it here would load
    pydantic into the proxy (its memory budget, decision 71); the envelope is checked with
    the codec's rules without the resource schema (decision 187)."""
    kind = str(doc["type"])
    errors = envelope_errors(doc, kind, mesh_scoped=False)
    if errors:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        raise StartError(f"not a valid {kind}: {detail}")
    return in_kuma_order(doc)


class ZoneProxy(Generic[C]):
    """The run and stop of one zone proxy around its `server`; the program sets `static` or
    `client` (its config source) and `admin`."""

    def __init__(
        self,
        program: str,
        settings: Settings,
        server: Server,
        start: Callable[[], Awaitable[None]],
        signals: Signals,
    ) -> None:
        self.program, self.settings, self.server = program, settings, server
        self._start = start  # binds the server; OSError when it cannot
        self._signals = signals  # meshfed.process.install_signals (a layer beside this one)
        self.static: StaticConfig[C] | None = None
        self.client: Any = None  # meshfed.proxy.cpclient.ConfigClient[C]: grpc, loaded lazily
        self.admin: AdminServer | None = None
        self.draining = False
        self.log = logging.getLogger(program.replace("-", "_"))

    def source_status(self) -> dict[str, Any] | None:
        if self.client is not None:
            status: dict[str, Any] = self.client.status()
            return status
        return self.static.status() if self.static is not None else None

    def ready(self, configured: bool) -> tuple[int, dict[str, Any]]:
        ready = configured and not self.draining
        return (200 if ready else 503), {
            "ready": ready,
            "draining": self.draining,
            "version": self.server.version,
        }

    def stats(self) -> dict[str, Any]:
        """The admin endpoint's /stats."""
        server = self.server
        return {
            "version": server.version,
            "port": server.port,
            "accepted": server.accepted,
            "rejected": dict(server.rejected),
            "services": [s.to_json() for s in server.services.values()],
            "draining": self.draining,
            "source": self.source_status(),
        }

    async def run(self) -> int:
        assert self.admin is not None
        settings, stop = self.settings, asyncio.Event()
        try:
            if self.static is not None:
                try:
                    await self.static.load()
                except ConfigFormatError as exc:
                    raise StartError(str(exc)) from None
            try:
                await self._start()
            except OSError as exc:
                raise StartError(
                    f"cannot listen on {settings.address}:{settings.port}: {exc.strerror or exc}"
                ) from None
            try:
                await self.admin.start()
            except OSError as exc:
                raise StartError(
                    f"cannot serve the admin endpoint on {settings.admin_address}: {exc}"
                ) from None
            self.log.info(
                "%s listening on %s:%d, admin on %s:%d",
                self.program,
                settings.address,
                self.server.port,
                settings.admin_address.host,
                self.admin.port,
            )
            return await self._serve(stop)
        finally:
            self.server.stop_accepting()
            await self.admin.stop()

    async def _serve(self, stop: asyncio.Event) -> int:
        from meshfed.proxy import cpclient

        pending: set[asyncio.Task[bool]] = set()
        static = self.static

        def reload() -> None:
            if static is None:
                return
            self.log.info("SIGHUP: reloading %s", static.path)
            task = asyncio.create_task(static.reload())
            pending.add(task)
            task.add_done_callback(pending.discard)

        self._signals(stop, reload)
        client_task = asyncio.create_task(self.client.run()) if self.client else None
        waiters: set[asyncio.Task[Any]] = {asyncio.create_task(stop.wait())}
        if client_task is not None:
            waiters.add(client_task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if client_task is not None and client_task.done():
            try:
                client_task.result()
            except cpclient.Refused as exc:
                self.log.error("%s", exc)
                code = 1
        self.draining = True
        self.server.stop_accepting()
        cut = await self.server.drain(self.settings.drain_timeout)
        self.log.info("drained; %d connection(s) cut at the deadline", cut)
        for task in (*waiters, *pending):
            task.cancel()
        if client_task is not None:
            with contextlib.suppress(asyncio.CancelledError, cpclient.Refused):
                await client_task
        return code
