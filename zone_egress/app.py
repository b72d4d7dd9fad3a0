"""zone-egress's composition root: the server, its admin endpoint, and its routing table
(a static EgressConfig file; SIGHUP reloads it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.process import install_signals
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.static_config import StaticConfig
from zone_egress.server import EgressServer
from zone_egress.settings import EgressSettings

log = logging.getLogger("zone_egress")


class StartError(Exception):
    """A setting that makes starting impossible; printed, exit status 2."""


def parse_static(data: bytes) -> EgressConfig:
    config = EgressConfig.from_json(data)
    return config if config.version else config.stamped()


class App:
    def __init__(self, settings: EgressSettings) -> None:
        if settings.config_file is None:
            raise StartError(
                "give --config-file FILE (an EgressConfig): the control-plane mode of the "
                "egress is not built yet"
            )
        self.settings = settings
        self.server = EgressServer(
            settings.address, settings.port, handshake_timeout=settings.handshake_timeout
        )
        self.static: StaticConfig[EgressConfig] = StaticConfig(
            settings.config_file, parse_static, self.server.apply, ()
        )
        self.admin = AdminServer(
            settings.admin_address,
            {"/ready": self._ready, "/stats": self._stats, "/config": self._config},
            metrics_registry(),
        )
        self.draining = False

    def _ready(self) -> tuple[int, dict[str, Any]]:
        ready = self.server.config is not None and not self.draining
        return (200 if ready else 503), {
            "ready": ready,
            "draining": self.draining,
            "version": self.server.version,
        }

    def _stats(self) -> dict[str, Any]:
        return {
            "version": self.server.version,
            "port": self.server.port,
            "accepted": self.server.accepted,
            "rejected": dict(self.server.rejected),
            "services": [s.to_json() for s in self.server.services.values()],
            "draining": self.draining,
            "source": self.static.status(),
        }

    def _config(self) -> tuple[int, dict[str, Any] | None]:
        config = self.server.config
        if config is None:
            return 404, None
        # the keys stay out of the admin view
        body = config.to_json()
        for s in body.get("services", ()):
            s.get("tls", {}).pop("keyPem", None)
            (s.get("originTls") or {}).pop("clientKeyPem", None)
        return 200, body

    async def run(self) -> int:
        stop = asyncio.Event()
        try:
            try:
                await self.static.load()
            except ConfigFormatError as exc:
                raise StartError(str(exc)) from None
            try:
                await self.server.start()
            except OSError as exc:
                raise StartError(
                    f"cannot listen on {self.settings.address}:{self.settings.port}: "
                    f"{exc.strerror or exc}"
                ) from None
            try:
                await self.admin.start()
            except OSError as exc:
                raise StartError(
                    f"cannot serve the admin endpoint on {self.settings.admin_address}: {exc}"
                ) from None
            log.info(
                "zone-egress listening on %s:%d, admin on %s:%d",
                self.settings.address,
                self.server.port,
                self.settings.admin_address.host,
                self.admin.port,
            )
            pending: set[asyncio.Task[bool]] = set()

            def reload() -> None:
                log.info("SIGHUP: reloading %s", self.static.path)
                task = asyncio.create_task(self.static.reload())
                pending.add(task)
                task.add_done_callback(pending.discard)

            install_signals(stop, reload)
            await stop.wait()
            self.draining = True
            self.server.stop_accepting()
            cut = await self.server.drain(self.settings.drain_timeout)
            log.info("drained; %d connection(s) cut at the deadline", cut)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return 0
        finally:
            self.server.stop_accepting()
            await self.admin.stop()
