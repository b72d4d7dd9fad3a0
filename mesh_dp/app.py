"""mesh-dp's composition root: the sidecar, its admin endpoint, and where its config comes
from (the zone control plane's config stream, or a static file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from mesh_dp.dataplane import (
    DataplaneError,
    DataplaneSpec,
    build_dataplane,
    load_document,
    parse_services,
)
from mesh_dp.http.accesslog import Record, format_line
from mesh_dp.malloc import trim
from mesh_dp.metrics_endpoint import MetricsEndpoints
from mesh_dp.otlp.metrics_push import MetricsPushes
from mesh_dp.passthrough import PassthroughProxy
from mesh_dp.settings import SidecarSettings
from mesh_dp.sidecar import ApplyError, Sidecar
from mesh_dp.stats import CertificateCollector, SidecarCollector
from meshfed.dpconfig.model import ConfigFormatError, SidecarConfig
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_sidecar_config
from meshfed.process import install_signals
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.static_config import StaticConfig

if TYPE_CHECKING:  # grpc is imported only when a control plane is used (memory)
    from meshfed.proxy.cpclient import ConfigClient

log = logging.getLogger("mesh_dp")

PROXY_VERSION = "meshfed-mesh-dp/0.1.0"


def write_access_log(record: Record) -> None:
    """`--access-log`: one line per HTTP request on stdout (logs go to stderr)."""
    sys.stdout.write(format_line(record, time.time()) + "\n")
    sys.stdout.flush()


class StartError(Exception):
    """A setting that makes starting impossible; printed, exit status 2."""


def parse_static(data: bytes) -> SidecarConfig:
    config = SidecarConfig.from_json(data)
    return config if config.version else config.stamped()


def dataplane_spec(settings: SidecarSettings) -> DataplaneSpec:
    document = None
    if settings.dataplane_file is not None and settings.dataplane:
        raise StartError("give --dataplane-file or --dataplane, not both")
    if settings.dataplane_file is not None:
        try:
            text = settings.dataplane_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StartError(
                f"cannot read --dataplane-file {settings.dataplane_file}: {exc}"
            ) from None
        document = load_document(text, str(settings.dataplane_file))
    elif settings.dataplane:
        document = load_document(settings.dataplane, "--dataplane")
    inbounds = [i for i in settings.inbound.split(",") if i.strip()]
    reachable = parse_services(settings.reachable_services) or None
    return build_dataplane(
        document=document,
        name=settings.name,
        mesh=settings.mesh,
        address=settings.address,
        inbounds=inbounds,
        reachable=reachable,
    )


def redacted(config: SidecarConfig | None) -> dict[str, Any] | None:
    """The running config for /config, without the private key."""
    if config is None:
        return None
    body = config.to_json()
    if body.get("tls"):
        body["tls"]["keyPem"] = "(redacted)"
    return body


class App:
    def __init__(self, settings: SidecarSettings) -> None:
        if settings.config_file is None and settings.cp is None:
            raise StartError("give --cp grpc://HOST:PORT (the zone control plane) or --config-file")
        if settings.config_file is not None and settings.cp is not None:
            raise StartError("give --cp or --config-file, not both")
        self.settings = settings
        self.spec: DataplaneSpec | None = None
        reachable = parse_services(settings.reachable_services) or None
        if settings.cp is not None:
            try:
                self.spec = dataplane_spec(settings)
            except DataplaneError as exc:
                raise StartError(str(exc)) from None
            reachable = self.spec.reachable
        if settings.cp is not None and settings.dataplane_token_file is None:
            raise StartError(
                "give --dataplane-token-file FILE: the zone control plane "
                "accepts only proxies with a token"
            )
        if settings.config_file is not None and settings.dataplane_token_file is not None:
            raise StartError(
                "--dataplane-token-file is for --cp: a --config-file needs no control plane"
            )
        self.sidecar = Sidecar(
            reachable=reachable,
            handshake_timeout=settings.handshake_timeout,
            probe_interval=settings.probe_interval,
            on_health_change=self._health_changed,
            access_log=write_access_log if settings.access_log else None,
        )
        self.client: ConfigClient[SidecarConfig] | None = None
        self.static: StaticConfig[SidecarConfig] | None = None
        if settings.config_file is not None:
            self.static = StaticConfig(
                settings.config_file, parse_static, self._apply, (ApplyError,)
            )
        else:
            assert self.spec is not None and settings.cp is not None
            document, wanted = self.spec.document, self.spec.reachable
            from meshfed.proxy.cpclient import ConfigClient

            self.client = ConfigClient(
                str(settings.cp),
                # zone-cp then builds only the reachable services' outbounds; the sidecar
                # still filters itself (`reachable` above) in case its zone-cp is older.
                hello=lambda: hello_message(
                    ProxyType.SIDECAR, document, proxy_version=PROXY_VERSION, reachable=wanted
                ),
                parse=parse_sidecar_config,
                apply=self._apply,
                apply_errors=(ApplyError,),
                report=self.sidecar.report,
                running_version=lambda: self.sidecar.version,
                report_interval=settings.report_interval,
                token_file=settings.dataplane_token_file,
            )
        self.metrics = MetricsEndpoints(  # MeshMetric's Prometheus backends
            lambda: registry.render(), settings.metrics_cert_path, settings.metrics_key_path
        )
        self.pushes = MetricsPushes(self.metrics.parts)  # and its OpenTelemetry ones
        registry = metrics_registry(
            SidecarCollector(
                self.sidecar.inbound_stats,
                self.sidecar.outbound_stats,
                lambda: self.sidecar.version,
            ),
            CertificateCollector(lambda: self.sidecar.contexts),
            self.sidecar.logs,
            self.pushes,
            self.sidecar.tracing,
        )
        self.admin = AdminServer(
            settings.admin_address,
            {"/ready": self._ready, "/stats": self._stats, "/config": self._config},
            registry,
        )
        address = settings.passthrough_address
        self.passthrough = (
            None
            if address is None
            else PassthroughProxy(
                address.host, address.port, head_timeout=settings.handshake_timeout
            )
        )

    async def _apply(self, config: SidecarConfig) -> None:
        """The sidecar takes the config (atomic, or ApplyError), then the MeshMetric
        listeners follow it; then the heap's free pages go back to the system: what start-up
        and a config's decoding and TLS set-up freed stays resident otherwise (~0.75 MiB in
        an idle sidecar, decision 185)."""
        await self.sidecar.apply(config)
        await self.metrics.update(config.metrics)
        await self.pushes.update(config)
        if self.passthrough is not None:
            self.passthrough.update(config.passthrough)
        trim()

    def _health_changed(self) -> None:
        if self.client is not None:
            self.client.report_now()

    def _ready(self) -> tuple[int, dict[str, Any]]:
        ready = self.sidecar.config is not None
        return (200 if ready else 503), {"ready": ready, "version": self.sidecar.version}

    def _stats(self) -> dict[str, Any]:
        config = self.sidecar.config
        contexts = self.sidecar.contexts
        return {
            "version": self.sidecar.version,
            "dataplane": config.dataplane if config else None,
            "mesh": config.mesh if config else None,
            "zone": config.zone if config else None,
            "identity": config.identity if config else None,
            "certificate": None
            if contexts is None
            else {
                "identity": contexts.identity,
                "serial": format(contexts.serial, "x"),
                "notAfter": contexts.not_after,
            },
            "inbounds": [s.to_json() for s in self.sidecar.inbound_stats()],
            "outbounds": [s.to_json() for s in self.sidecar.outbound_stats()],
            "passthrough": None if self.passthrough is None else self.passthrough.stats(),
            "source": self.client.status() if self.client else self._static_status(),
        }

    def _static_status(self) -> dict[str, object]:
        assert self.static is not None
        return self.static.status()

    def _config(self) -> tuple[int, dict[str, Any] | None]:
        body = redacted(self.sidecar.config)
        return (200 if body is not None else 404), body

    async def run(self) -> int:
        try:
            await self.admin.start()
        except OSError as exc:
            raise StartError(
                f"cannot serve the admin endpoint on {self.settings.admin_address}: {exc}"
            ) from None
        log.info("admin endpoint on %s:%d", self.settings.admin_address.host, self.admin.port)
        stop = asyncio.Event()
        try:
            if self.passthrough is not None:
                try:
                    await self.passthrough.start()
                except OSError as exc:
                    raise StartError(
                        f"cannot serve the passthrough proxy on "
                        f"{self.settings.passthrough_address}: {exc}"
                    ) from None
            if self.static is not None:
                return await self._run_static(self.static, stop)
            assert self.client is not None
            return await self._run_client(self.client, stop)
        finally:
            await self.sidecar.stop()
            await self.pushes.close()
            if self.passthrough is not None:
                await self.passthrough.stop()
            await self.metrics.close()
            await self.admin.stop()

    async def _run_static(self, static: StaticConfig[SidecarConfig], stop: asyncio.Event) -> int:
        try:
            await static.load()
        except (ConfigFormatError, ApplyError) as exc:
            raise StartError(str(exc)) from None
        self.sidecar.start()
        pending: set[asyncio.Task[bool]] = set()

        def reload() -> None:
            log.info("SIGHUP: reloading %s", static.path)
            task = asyncio.create_task(static.reload())
            pending.add(task)
            task.add_done_callback(pending.discard)

        install_signals(stop, reload)
        log.info("mesh-dp running from %s", static.path)
        await stop.wait()
        return 0

    async def _run_client(self, client: ConfigClient[SidecarConfig], stop: asyncio.Event) -> int:
        from meshfed.proxy import cpclient

        install_signals(stop)
        self.sidecar.start()
        log.info("mesh-dp connecting to %s", client.target)
        task = asyncio.create_task(client.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if task.done():
            try:
                task.result()
            except cpclient.Refused as exc:
                log.error("%s", exc)
                return 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
