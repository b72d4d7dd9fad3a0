"""The sidecar's running state: its listeners, certificates and counters, and how a new
config replaces the old one.

`apply(config)` is atomic: it builds the TLS contexts and binds every new listener first; if
any of that fails (bad certificate, a VIP:port already taken) it closes what it just bound
and raises ApplyError, and the previous config keeps running untouched. Only then does it
commit: existing listeners take their new settings, listeners no longer wanted stop
accepting (their open connections finish on their own), and the new TLS contexts serve the
next handshakes.

`reachable` (from `--reachable-services` or the Dataplane file) narrows which services'
VIPs the sidecar binds, so several sidecars can share one network namespace; explicit
outbounds (127.0.0.1:port from `networking.outbound`) are always bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from mesh_dp.accesslog_sink import AccessLogs
from mesh_dp.http.accesslog import Record
from mesh_dp.inbound import InboundListener
from mesh_dp.outbound import OutboundListener
from mesh_dp.relay import describe
from mesh_dp.stats import InboundStats, OutboundStats
from mesh_dp.tlsconf import TlsConfigError, TlsContexts, build_contexts
from mesh_dp.tracing.export import Tracing
from meshfed._gen import dataplane_pb2 as pb
from meshfed.aio import wait_for
from meshfed.dpconfig.model import Inbound, Outbound, OutboundKind, SidecarConfig

log = logging.getLogger("mesh_dp")

HTTP_PORT = 80
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_PROBE_INTERVAL = 1.0

ListenerKey = tuple[str, int]


class ApplyError(Exception):
    """A config that cannot run here; the message names the part (and the address)."""


def _bind_error(what: str, address: str, port: int, exc: OSError) -> ApplyError:
    if exc.errno == errno.EADDRINUSE:
        hint = (
            "already in use by another process or sidecar (one sidecar per network namespace "
            "binds every VIP; use --reachable-services to share one)"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "the address is not configured on this host"
    elif exc.errno == errno.EACCES:
        hint = "permission denied"
    else:
        hint = exc.strerror or str(exc)
    return ApplyError(f"{what}: cannot listen on {address}:{port}: {hint}")


@dataclass
class _Plan:
    """What one apply bound so far, to undo on failure."""

    inbounds: dict[ListenerKey, InboundListener] = field(default_factory=dict)
    outbounds: dict[ListenerKey, OutboundListener] = field(default_factory=dict)
    extra_ports: list[tuple[OutboundListener, int]] = field(default_factory=list)

    def rollback(self) -> None:
        for inbound in self.inbounds.values():
            inbound.close()
        for outbound in self.outbounds.values():
            outbound.close()
        for listener, port in self.extra_ports:
            listener.unbind(port)


class Sidecar:
    def __init__(
        self,
        *,
        reachable: Collection[str] | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        on_health_change: Callable[[], None] | None = None,
        access_log: Callable[[Record], None] | None = None,
    ) -> None:
        self.access_log = access_log
        self.logs = AccessLogs(access_log)  # MeshAccessLog, with `--access-log`
        self.tracing = Tracing()  # MeshTrace (mesh_dp/tracing/)
        self.reachable = None if reachable is None else frozenset(reachable)
        self.handshake_timeout = handshake_timeout
        self.probe_interval = probe_interval
        self.on_health_change = on_health_change
        self.config: SidecarConfig | None = None
        self.contexts: TlsContexts | None = None
        self.inbounds: dict[ListenerKey, InboundListener] = {}
        self.outbounds: dict[ListenerKey, OutboundListener] = {}
        self._inbound_stats: dict[tuple[str, int, str], InboundStats] = {}
        self._outbound_stats: dict[tuple[str, int, str, str | None], OutboundStats] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str:
        return self.config.version if self.config is not None else ""

    def wanted(self, outbound: Outbound) -> bool:
        return (
            self.reachable is None
            or outbound.kind is OutboundKind.EXPLICIT
            or outbound.service in self.reachable
        )

    # --- applying a config --------------------------------------------------------------

    async def apply(self, config: SidecarConfig) -> None:
        """Runs `config` instead of the current one, or raises ApplyError and changes nothing."""
        async with self._lock:
            await self._apply(config)

    async def _apply(self, config: SidecarConfig) -> None:
        contexts = self._contexts_for(config)
        inbounds = {(i.address, i.port): i for i in config.inbounds}
        if len(inbounds) != len(config.inbounds):
            raise ApplyError("two inbounds listen on the same address and port")
        outbounds = {(o.address, o.port): o for o in config.outbounds if self.wanted(o)}
        clash = inbounds.keys() & outbounds.keys()
        if clash:
            address, port = sorted(clash)[0]
            raise ApplyError(f"an inbound and an outbound both listen on {address}:{port}")
        plan = _Plan()
        try:
            await self._bind_new(config, inbounds, outbounds, plan)
        except BaseException:
            plan.rollback()
            raise
        self._commit(config, contexts, inbounds, outbounds, plan)

    def _contexts_for(self, config: SidecarConfig) -> TlsContexts | None:
        if not config.mtls_enabled or config.tls is None:
            return None
        current = self.contexts
        if (
            current is not None
            and current.source == config.tls
            and (current.identity == config.identity)
        ):
            return current
        try:
            return build_contexts(config.tls, config.identity)
        except TlsConfigError as exc:
            raise ApplyError(str(exc)) from None

    async def _bind_new(
        self,
        config: SidecarConfig,
        inbounds: dict[ListenerKey, Inbound],
        outbounds: dict[ListenerKey, Outbound],
        plan: _Plan,
    ) -> None:
        for key, inbound in inbounds.items():
            if key in self.inbounds:
                continue
            listener = InboundListener(
                inbound,
                self._inbound_stat(inbound),
                lambda: self.contexts,
                handshake_timeout=self.handshake_timeout,
                access_log=self.access_log,
            )
            try:
                await listener.bind()
            except OSError as exc:
                raise _bind_error(f"inbound {inbound.service}", *key, exc) from None
            plan.inbounds[key] = listener
        for key, outbound in outbounds.items():
            existing = self.outbounds.get(key)
            out = existing
            if out is None:
                out = OutboundListener(
                    outbound,
                    config.mesh,
                    self._outbound_stat(outbound),
                    lambda: self.contexts,
                    access_log=self.access_log,
                )
                try:
                    await out.bind(outbound.port)
                except OSError as exc:
                    raise _bind_error(f"outbound {outbound.service}", *key, exc) from None
                plan.outbounds[key] = out
            if outbound.also_port_80 and HTTP_PORT not in out.ports:
                try:
                    await out.bind(HTTP_PORT)
                except OSError as exc:
                    # Port 80 is a convenience (`curl http://backend.mesh`): not fatal.
                    log.info("%s", _bind_error(f"outbound {outbound.service}", key[0], 80, exc))
                else:
                    if existing is not None:
                        plan.extra_ports.append((out, HTTP_PORT))

    def _commit(
        self,
        config: SidecarConfig,
        contexts: TlsContexts | None,
        inbounds: dict[ListenerKey, Inbound],
        outbounds: dict[ListenerKey, Outbound],
        plan: _Plan,
    ) -> None:
        for key in list(self.inbounds):
            if key not in inbounds:
                self.inbounds.pop(key).close()
        for key in list(self.outbounds):
            if key not in outbounds:
                self.outbounds.pop(key).close()
        for key, inbound in inbounds.items():
            if key in plan.inbounds:
                self.inbounds[key] = plan.inbounds[key]
            else:
                self.inbounds[key].update(inbound)
                self.inbounds[key].stats = self._inbound_stat(inbound)
        for key, outbound in outbounds.items():
            if key in plan.outbounds:
                listener = self.outbounds[key] = plan.outbounds[key]
                listener.start()
            else:
                listener = self.outbounds[key]
                listener.update(outbound, self._outbound_stat(outbound))
            if not outbound.also_port_80 and outbound.port != HTTP_PORT:
                listener.unbind(HTTP_PORT)
        if contexts is not self.contexts and contexts is not None:
            log.info(
                "certificate %s (serial %x, valid until %s) is used for new connections",
                contexts.identity,
                contexts.serial,
                contexts.not_after,
            )
        self.contexts = contexts
        old = self.version
        self.config = config
        self._attach_logs(config)
        self.tracing.attach(
            config,
            [(x, x.inbound) for x in self.inbounds.values()],
            [(x, x.outbound) for x in self.outbounds.values()],
        )
        log.info(
            "applied config %s (was %s): %d inbound(s), %d outbound listener(s)",
            config.version or "(unversioned)",
            old or "none",
            len(self.inbounds),
            len(self.outbounds),
        )

    def _attach_logs(self, config: SidecarConfig) -> None:
        """Each listener's MeshAccessLog sinks for `config` (accesslog_sink.py)."""
        mesh, logs = config.mesh, self.logs
        own = config.inbounds[0].service if config.inbounds else ""
        for inbound in self.inbounds.values():
            i = inbound.inbound
            inbound.http.access_log = logs.http_sink(i.access_logs, mesh, "", i.service)
            inbound.tcp_log = logs.tcp_sink(i.access_logs, "inbound", mesh, "")
        for outbound in self.outbounds.values():
            o = outbound.outbound
            outbound.http.access_log = logs.http_sink(o.access_logs, mesh, own, o.service)
            outbound.tcp_log = logs.tcp_sink(o.access_logs, "outbound", mesh, own)
        logs.retain(config)

    def _inbound_stat(self, inbound: Inbound) -> InboundStats:
        key = (inbound.address, inbound.port, inbound.service)
        if key not in self._inbound_stats:
            self._inbound_stats[key] = InboundStats(inbound.service, inbound.address, inbound.port)
        return self._inbound_stats[key]

    def _outbound_stat(self, outbound: Outbound) -> OutboundStats:
        key = (outbound.address, outbound.port, outbound.service, outbound.zone)
        if key not in self._outbound_stats:
            self._outbound_stats[key] = OutboundStats(
                outbound.service, outbound.zone, outbound.address, outbound.port
            )
        return self._outbound_stats[key]

    # --- inbound readiness (service probe) ----------------------------------------------

    def start(self) -> None:
        if self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe_loop())

    async def _probe_loop(self) -> None:
        while True:
            listeners = list(self.inbounds.values())
            results = await asyncio.gather(*(_app_answers(x.inbound) for x in listeners))
            changed = False
            for listener, ok in zip(listeners, results, strict=True):
                if listener.stats.ready != ok:
                    changed = True
                    listener.stats.ready = ok
                    log.info(
                        "inbound %s: application %s:%d is %s",
                        listener.where,
                        listener.inbound.service_address,
                        listener.inbound.service_port,
                        "ready" if ok else "not answering",
                    )
            if changed and self.on_health_change is not None:
                self.on_health_change()
            await asyncio.sleep(self.probe_interval)

    async def stop(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        for inbound in self.inbounds.values():
            await inbound.aclose()
        for outbound in self.outbounds.values():
            await outbound.aclose()

    # --- views --------------------------------------------------------------------------

    def inbound_stats(self) -> list[InboundStats]:
        return [x.stats for x in self.inbounds.values()]

    def outbound_stats(self) -> list[OutboundStats]:
        return [x.stats for x in self.outbounds.values()]

    def report(self) -> pb.Report:
        """What the config stream sends back: readiness and counters."""
        report = pb.Report(config_version=self.version)
        for s in self.inbound_stats():
            report.inbounds.append(
                pb.InboundStatus(
                    port=s.port,
                    ready=s.ready,
                    counters=_counters(
                        s.connections_total, s.active, s.bytes.received, s.bytes.sent, s.rejected
                    ),
                )
            )
        per_service: dict[str, list[OutboundStats]] = {}
        for o in self.outbound_stats():
            per_service.setdefault(o.service, []).append(o)
        mesh = self.config.mesh if self.config is not None else ""
        for service, group in sorted(per_service.items()):
            report.services.append(
                pb.ServiceStatus(
                    mesh=mesh,
                    service=service,
                    counters=_sum_counters(group),
                )
            )
        return report


def _counters(total: int, active: int, rx: int, tx: int, rejected: int) -> pb.Counters:
    return pb.Counters(
        connections_total=total,
        connections_active=max(0, active),
        bytes_received=rx,
        bytes_sent=tx,
        connections_rejected=rejected,
    )


def _sum_counters(group: Iterable[OutboundStats]) -> pb.Counters:
    items = list(group)
    return _counters(
        sum(o.connections_total for o in items),
        sum(o.active for o in items),
        sum(o.bytes.received for o in items),
        sum(o.bytes.sent for o in items),
        sum(o.rejected for o in items),
    )


class _Probe(asyncio.Protocol):
    pass


async def _app_answers(inbound: Inbound, timeout: float = 1.0) -> bool:
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await wait_for(
            loop.create_connection(_Probe, inbound.service_address, inbound.service_port), timeout
        )
    except (OSError, TimeoutError) as exc:
        log.debug(
            "probe of %s:%d: %s", inbound.service_address, inbound.service_port, describe(exc)
        )
        return False
    transport.close()
    return True
