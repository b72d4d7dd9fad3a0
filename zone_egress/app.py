"""zone-egress's composition root: the server, its admin endpoint, and where its routing
table comes from (the zone control plane's config stream, or a static file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_egress_config
from meshfed.process import install_signals
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.static_config import StaticConfig
from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry
from zone_egress.server import EgressServer
from zone_egress.settings import EgressSettings

if TYPE_CHECKING:  # grpc is imported only when a control plane is used (memory)
    from meshfed.proxy.cpclient import ConfigClient

log = logging.getLogger("zone_egress")

PROXY_VERSION = "meshfed-zone-egress/0.1.0"


class StartError(Exception):
    """A setting that makes starting impossible; printed, exit status 2."""


def parse_static(data: bytes) -> EgressConfig:
    config = EgressConfig.from_json(data)
    return config if config.version else config.stamped()


def egress_resource(settings: EgressSettings, port: int) -> dict[str, Any]:
    """The ZoneEgress announced in the Hello (zone-cp validates it and sets `zone`)."""
    doc = {
        "type": "ZoneEgress",
        "name": settings.name,
        "networking": {"address": settings.address, "port": port},
    }
    registry = default_registry()
    try:
        # zone-cp validates the spec (pydantic stays out of the proxy, decision 71)
        resource = resource_from_dict(doc, registry, expected_type="ZoneEgress", validate=False)
    except ValidationError as exc:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
        raise StartError(f"not a valid ZoneEgress: {detail}") from None
    return resource_to_dict(resource, registry.get("ZoneEgress"))


class App:
    def __init__(self, settings: EgressSettings) -> None:
        if (settings.config_file is None) == (settings.cp is None):
            raise StartError(
                "give --cp grpc://HOST:PORT (the zone control plane) or --config-file, one of them"
            )
        if settings.cp is not None and settings.zone_token_file is None:
            raise StartError(
                "give --zone-token-file FILE: the zone control plane accepts only proxies with "
                "a token (a zone token of scope egress)"
            )
        if settings.config_file is not None and settings.zone_token_file is not None:
            raise StartError(
                "--zone-token-file is for --cp: a --config-file needs no control plane"
            )
        egress_resource(settings, settings.port or 1)  # fail early on a bad name or address
        self.settings = settings
        self.server = EgressServer(
            settings.address, settings.port, handshake_timeout=settings.handshake_timeout
        )
        self.static: StaticConfig[EgressConfig] | None = None
        self.client: ConfigClient[EgressConfig] | None = None
        if settings.config_file is not None:
            self.static = StaticConfig(settings.config_file, parse_static, self.server.apply, ())
        else:
            assert settings.cp is not None
            from meshfed.proxy.cpclient import ConfigClient

            self.client = ConfigClient(
                str(settings.cp),
                hello=lambda: hello_message(
                    ProxyType.EGRESS,
                    egress_resource(settings, self.server.port),
                    proxy_version=PROXY_VERSION,
                ),
                parse=parse_egress_config,
                apply=self.server.apply,
                apply_errors=(ConfigFormatError,),
                report=lambda: pb.Report(config_version=self.server.version),
                running_version=lambda: self.server.version,
                report_interval=settings.report_interval,
                token_file=settings.zone_token_file,
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
            "source": self.client.status()
            if self.client is not None
            else (self.static.status() if self.static is not None else None),
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
            if self.static is not None:
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
            log.info("SIGHUP: reloading %s", static.path)
            task = asyncio.create_task(static.reload())
            pending.add(task)
            task.add_done_callback(pending.discard)

        install_signals(stop, reload)
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
                log.error("%s", exc)
                code = 1
        self.draining = True
        self.server.stop_accepting()
        cut = await self.server.drain(self.settings.drain_timeout)
        log.info("drained; %d connection(s) cut at the deadline", cut)
        for task in (*waiters, *pending):
            task.cancel()
        if client_task is not None:
            with contextlib.suppress(asyncio.CancelledError, cpclient.Refused):
                await client_task
        return code
