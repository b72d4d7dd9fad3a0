"""zone-cp's dataplane config server: the DataplaneConfig stream (proto/dataplane.proto).

A proxy (mesh-dp sidecar or zone-ingress) opens one stream and sends Hello with its
Dataplane or ZoneIngress. This module handles the stream and wires the parts behind it:

- authentication: before anything is registered or a certificate issued, the proxy's token
  (call metadata `authorization: Bearer ...`) is verified: a sidecar's dataplane token with
  the keys of its mesh and against its Dataplane, a zone ingress's zone token (scope
  `ingress`, this zone) with the zone-token public keys (meshfed.auth.proxies). A missing or
  invalid token ends the stream with UNAUTHENTICATED, a valid one that does not cover the
  proxy with PERMISSION_DENIED; nothing is stored either way.
- the Hello is checked (`protocol.parse_hello`: the same validators as the API); what cannot
  be served (unknown mesh, a name held by another connected proxy with a different
  Dataplane) is refused with a fatal Error, then the end of the stream with the matching
  gRPC status (BAD_REQUEST: INVALID_ARGUMENT, ...), so a plain gRPC client sees why too.
- registration (zone_cp.dpregistration): the proxy is stored in the zone store (zone labels
  and inbound health, zone_cp.dpstate), from where KDS syncs it up; a stream that ends marks
  it offline (not when zone-cp itself stops); the crash sweep (`stale_after`, default 30 s
  after start) closes what is still marked connected to a previous instance. Replicas of a
  zone (etcd) skip the sweep: another live replica may hold the stream.
- configs (zone_cp.dppusher `ConfigPusher`): built and sent when they change, certificates
  rotated when due.
- liveness: every connection is pinged (`keepalive`, --dp-keepalive-interval/-timeout); a
  proxy that does not answer (hung, SIGSTOPped: its TCP connection stays open) loses its
  stream, which marks it offline like any disconnection; it reconnects when it resumes.
- answers: ACK/NACK per version (a NACK is logged with the proxy's reason and shown in the
  insight); an ACK may carry the report made right after applying it (Config.ack_report,
  one message instead of two); Reports update inbound readiness in the stored Dataplane
  (the catalog follows) and the insight, which zone_cp.dpinsights writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final

import grpc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.aio import wait_for
from meshfed.auth.credentials import Verifier
from meshfed.auth.proxies import (
    BadCredentials,
    bearer_of,
    claimed_mesh,
    dataplane_refusal,
    egress_refusal,
    ingress_refusal,
)
from meshfed.auth.tokens import DataplaneClaims, TokenError, TokenKind, ZoneClaims
from meshfed.config import Address
from meshfed.dpconfig.protocol import (
    Hello,
    ProtocolError,
    ProxyType,
    error_message,
    parse_hello,
)
from meshfed.kds.stream import EOF, first_completed, grpc_options
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import Key, Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.zone_egress import ZONE_EGRESS
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.cache import StoreCache
from meshfed.store.mirror import resource_view
from zone_cp import dpstate
from zone_cp.certs import CertIssuer
from zone_cp.dpinsights import InsightWriter
from zone_cp.dppusher import COALESCE, DEBOUNCE, WATCHED, ConfigPusher
from zone_cp.dprecords import Records
from zone_cp.dpregistration import Registration
from zone_cp.dpsession import Session, SessionKey
from zone_cp.services import ZoneServices

log = logging.getLogger("zone_cp.dpserver")

HELLO_TIMEOUT: Final = 10.0
# What the server sends (configs) may be as large as the proxies accept
# (meshfed.proxy.cpclient); what it receives (Hello, ACK/NACK, reports) is small, so it is
# capped lower (--dp-max-message-bytes): a larger message ends its stream with
# RESOURCE_EXHAUSTED before any of it is parsed.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024  # as meshfed.proxy.cpclient
DEFAULT_MAX_RECEIVE_BYTES: Final = 4 * 1024 * 1024
KEEPALIVE: Final = (15.0, 10.0)  # as meshfed.kds.stream.grpc_options (--dp-keepalive-*)
Context = grpc.aio.ServicerContext[Any, Any]
_STATUS_OF: Final = {
    pb.Error.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    pb.Error.REGISTRATION_REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.Error.CONFIG_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    pb.Error.INTERNAL: grpc.StatusCode.INTERNAL,
    pb.Error.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    pb.Error.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


class DataplaneServer(pb_grpc.DataplaneConfigServicer):
    def __init__(
        self,
        store: ResourceStore,
        zone: str,
        services: ZoneServices,
        issuer: CertIssuer,
        *,
        instance_id: str,
        registry: Registry | None = None,
        insight_flush: float = 5.0,
        stale_after: float | None = 30.0,
        debounce: float = DEBOUNCE,
        coalesce: float = COALESCE,
        max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
        cache: StoreCache | None = None,
        keepalive: tuple[float, float] = KEEPALIVE,
    ) -> None:
        """`cache`: the process's store cache (None: a cache of its own); `keepalive`: ping
        interval and answer timeout (seconds); `debounce`, `coalesce`: zone_cp.dppusher."""
        self.keepalive = keepalive
        self.zone = zone
        self.max_receive_bytes = max_receive_bytes
        self.issuer = issuer
        self.instance_id = instance_id
        self._registry = registry or default_registry()
        self._insight_flush = insight_flush
        self._stale_after = stale_after
        self._mirror = resource_view(store, WATCHED, cache)
        self._dataplane_tokens = Verifier(store, TokenKind.DATAPLANE)
        self._zone_tokens = Verifier(store, TokenKind.ZONE)
        records = Records(store, zone)
        self.insights = InsightWriter(records, issuer)
        self.registration = Registration(
            records,
            self.insights,
            zone,
            instance_id,
            mesh_exists=self._mesh_exists,
            on_registered=self._registered,
            on_closed=self._closed,
        )
        self.sessions = self.registration.sessions
        self.pusher = ConfigPusher(
            zone,
            services,
            issuer,
            self.sessions,
            self._mirrored,
            debounce=debounce,
            coalesce=coalesce,
        )
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unlisten: list[Any] = []
        self.address: Address | None = None
        # counters (metrics)
        self.streams_total = 0
        self.refused_total = 0
        self.unauthorized_total = 0  # of those, refused for their token
        self.acks = 0
        self.nacks = 0
        self.reports = 0  # read, their own message or inside an ACK
        self.reports_in_acks = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, address: Address) -> Address:
        await self._mirror.start()
        self._unlisten.append(self._mirror.listen(lambda *_: self.invalidate()))
        self._unlisten.append(self.pusher.follow_services())
        # No SO_REUSEPORT: a second zone-cp on the same port must fail, not share proxies.
        receive = "grpc.max_receive_message_length"
        ours = {
            receive: self.max_receive_bytes,
            "grpc.so_reuseport": 0,
            # A proxy that hangs keeps its connection open (the kernel still ACKs), so only an
            # unanswered ping shows it: its stream ends and it is marked offline (issue 16).
            "grpc.keepalive_time_ms": round(self.keepalive[0] * 1000),
            "grpc.keepalive_timeout_ms": round(self.keepalive[1] * 1000),
            # grpcio 1.85 sends the keepalive pings but closes the connection of an
            # unanswered one only with this set too (measured: without it a frozen peer's
            # stream stayed open until the peer died).
            "grpc.http2.ping_timeout_ms": round(self.keepalive[1] * 1000),
        }
        options: list[tuple[str, int]] = [
            *(o for o in grpc_options(MAX_MESSAGE_BYTES) if o[0] not in ours),
            *ours.items(),
        ]
        server = grpc.aio.server(options=options)
        pb_grpc.add_DataplaneConfigServicer_to_server(self, server)
        try:
            port = server.add_insecure_port(str(address))
        except RuntimeError as exc:
            raise OSError(f"cannot listen for dataplanes on {address}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot listen for dataplanes on {address}: address in use")
        await server.start()
        self._server = server
        self.address = Address(address.host, port)
        self._tasks = [
            asyncio.create_task(self.pusher.run(), name="dp-config-push"),
            asyncio.create_task(
                self.insights.run(self.sessions.values, self._insight_flush),
                name="dp-insight-flush",
            ),
        ]
        if self._stale_after is not None:
            self._tasks.append(
                asyncio.create_task(
                    self.registration.close_stale(self._stale_after), name="dp-stale"
                )
            )
        return self.address

    async def stop(self) -> None:
        """Ends every stream without marking anyone offline: proxies reconnect elsewhere or
        to the next start, and their services should not flap meanwhile."""
        self.registration.stopping = True
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.registration.drain()  # written before the store goes
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten = []
        await self._mirror.stop()

    def _registered(self, key: SessionKey) -> None:
        # sidecars' outbounds to external services list the connected egresses
        self.invalidate(None if key[0] == ZONE_EGRESS.name else key)

    def _closed(self, key: SessionKey) -> None:
        self.pusher.forget(key)
        if key[0] == ZONE_EGRESS.name:
            self.invalidate()

    def invalidate(self, key: SessionKey | None = None) -> None:
        """Rebuild soon: one proxy's config (`key`) or everyone's."""
        self.pusher.invalidate(key)

    def _mesh_exists(self, mesh: str) -> bool:
        return self._mirror.get(MESH.name, Key("", mesh)) is not None

    def _mirrored(self, type_name: str) -> list[Resource]:
        return [r for r, _ in self._mirror.entries(type_name)]

    # -- the stream ------------------------------------------------------------------------

    async def Stream(  # type: ignore[override]  # grpc.aio read/write style, as meshfed.kds
        self, request_iterator: object, context: Context
    ) -> None:
        self.streams_total += 1
        peer = context.peer()
        try:
            first = await wait_for(context.read(), HELLO_TIMEOUT)
        except TimeoutError:
            await self._refuse(context, pb.Error.BAD_REQUEST, f"no Hello in {HELLO_TIMEOUT:g}s")
            return
        if first is EOF:
            return
        try:
            assert isinstance(first, pb.DpMessage)
            hello = parse_hello(first, self._registry)
        except ProtocolError as exc:
            log.warning("refused a proxy at %s: %s", peer, exc)
            await self._refuse(context, exc.code, str(exc))
            return
        refusal = await self._authenticate(hello, context.invocation_metadata())
        if refusal is not None:
            code, reason = refusal
            if code != pb.Error.REGISTRATION_REFUSED:
                self.unauthorized_total += 1
            log.warning(
                "refused %s %r at %s: %s", hello.proxy_type, hello.resource.name, peer, reason
            )
            await self._refuse(context, code, reason)
            return
        try:
            session = await self.registration.register(hello)
        except dpstate.Refused as exc:
            log.warning("refused %s %r at %s: %s", hello.proxy_type, hello.resource.name, peer, exc)
            await self._refuse(context, pb.Error.REGISTRATION_REFUSED, str(exc))
            return
        except StoreError as exc:  # the proxy retries (later) on a fatal INTERNAL
            log.error("cannot register %s %r: %s", hello.proxy_type, hello.resource.name, exc)
            await self._refuse(context, pb.Error.INTERNAL, f"the zone's store failed: {exc}")
            return
        log.info("%s connected from %s (%s)", session.describe(), peer, hello.proxy_version or "?")
        try:
            await first_completed(
                self._read(context, session),
                self._write(context, session),
                session.stopped.wait(),
            )
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            log.debug("%s: stream error %r", session.describe(), exc)
        finally:
            await self.registration.unregister(session)

    async def _authenticate(
        self, hello: Hello, metadata: Any
    ) -> tuple[pb.Error.Code.ValueType, str] | None:
        """None when the call's token lets this proxy connect as its Hello says; else the
        Error code and the reason. Reads keys only: nothing is written either way."""
        unauthenticated = pb.Error.UNAUTHENTICATED
        try:
            token = bearer_of(metadata)
        except BadCredentials as exc:
            return unauthenticated, str(exc)
        resource = hello.resource
        if hello.proxy_type is ProxyType.SIDECAR:
            if self._mirror.get(MESH.name, Key("", resource.mesh)) is None:
                # Refused here, not left to the registration: a mesh created in between must
                # not let an unchecked proxy in.
                return pb.Error.REGISTRATION_REFUSED, dpstate.no_mesh(resource.mesh, self.zone)
            if token is None:
                return unauthenticated, (
                    "no dataplane token: start mesh-dp with --dataplane-token-file (issue one "
                    "with `meshctl generate dataplane-token`)"
                )
            # A genuine token of another (existing) mesh is verified with that mesh's keys,
            # then refused for naming another mesh; only existing meshes, so a caller cannot
            # grow the verifier's key cache with made-up names.
            mesh = claimed_mesh(token) or resource.mesh
            if self._mirror.get(MESH.name, Key("", mesh)) is None:
                mesh = resource.mesh
            try:
                verified = await self._dataplane_tokens.verify(token, mesh)
            except TokenError as exc:
                return unauthenticated, f"dataplane token refused: {exc}"
            assert isinstance(verified.claims, DataplaneClaims)
            reason = dataplane_refusal(verified.claims, resource)
        else:
            proxy = f"zone-{hello.proxy_type}"
            if token is None:
                return unauthenticated, (
                    f"no zone token: start {proxy} with --zone-token-file (a zone token "
                    f"of scope {hello.proxy_type} for zone {self.zone!r})"
                )
            try:
                verified = await self._zone_tokens.verify(token)
            except TokenError as exc:
                return unauthenticated, f"zone token refused: {exc}"
            assert isinstance(verified.claims, ZoneClaims)
            refusal = egress_refusal if hello.proxy_type is ProxyType.EGRESS else ingress_refusal
            reason = refusal(verified.claims, self.zone)
        return None if reason is None else (pb.Error.PERMISSION_DENIED, reason)

    async def _refuse(self, context: Context, code: pb.Error.Code.ValueType, text: str) -> None:
        self.refused_total += 1
        with contextlib.suppress(Exception):  # the peer may be gone already
            await context.write(error_message(code, text, fatal=True))
        # Ends the stream with that status (abort raises to grpc, which sends it).
        await context.abort(_STATUS_OF.get(code, grpc.StatusCode.UNKNOWN), text)

    async def _read(self, context: Context, session: Session) -> None:
        while True:
            msg = await context.read()
            if msg is EOF:
                return
            assert isinstance(msg, pb.DpMessage)
            kind = msg.WhichOneof("message")
            if kind == "ack":
                self.acks += 1
                session.acked(msg.ack.version)
                # The proxy's report after applying it, in the same message (every Config
                # this zone sends says it reads it: Config.ack_report).
                if msg.ack.HasField("report"):
                    self.reports_in_acks += 1
                    await self._on_report(session, msg.ack.report)
            elif kind == "nack":
                self.nacks += 1
                session.rejected(msg.nack.error)
                log.warning(
                    "%s rejected config %s: %s",
                    session.describe(),
                    msg.nack.version,
                    msg.nack.error,
                )
            elif kind == "report":
                await self._on_report(session, msg.report)
            elif kind == "hello":
                session.outbox.put_nowait(
                    error_message(pb.Error.BAD_REQUEST, "Hello was already received; ignored")
                )

    async def _write(self, context: Context, session: Session) -> None:
        while True:
            await context.write(await session.outbox.get())

    async def _on_report(self, session: Session, report: pb.Report) -> None:
        self.reports += 1
        ready = session.reported(report)
        if (
            ready != session.ready
            or session.insight_written is None
            or not session.resource_written
        ):
            try:
                await self.registration.report_ready(session, ready)
            except StoreError as exc:  # the next report tries again
                log.warning("%s: readiness not stored: %s", session.describe(), exc)
                return
            session.ready = ready

    # -- views -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "address": None if self.address is None else str(self.address),
            "proxies": [
                {
                    "type": str(s.kind),
                    "mesh": s.mesh,
                    "name": s.name,
                    "reachableServices": None
                    if s.hello.reachable is None
                    else sorted(s.hello.reachable),
                    "connectTime": s.subscription.connect_time,
                    "configSent": s.subscription.config_sent,
                    "configAcknowledged": s.subscription.config_acked,
                    "lastNackError": s.subscription.last_nack_error,
                    "unavailable": s.unavailable,
                }
                for s in sorted(self.sessions.values(), key=lambda s: s.key)
            ],
        }

    def collector(self) -> Collector:
        return _Collector(self)


class _Collector(Collector):
    def __init__(self, server: DataplaneServer) -> None:
        self._server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._server
        connected = GaugeMetricFamily(
            "meshfed_dp_server_proxies", "Proxies connected to the config server", labels=["type"]
        )
        for kind in ProxyType:
            connected.add_metric([str(kind)], sum(1 for x in s.sessions.values() if x.kind is kind))
        yield connected
        for name, text, value in (
            ("streams", "Config streams opened", s.streams_total),
            (
                "refused",
                "Proxies refused (bad Hello or token, unknown mesh, name taken)",
                s.refused_total,
            ),
            ("unauthorized", "Proxies refused for their token", s.unauthorized_total),
            ("configs_sent", "Configs sent (a new version)", s.pusher.configs_sent),
            ("acks", "Configs acknowledged", s.acks),
            ("nacks", "Configs rejected by a proxy", s.nacks),
            ("reports", "Reports read (their own message or inside an ACK)", s.reports),
            (
                "reports_in_acks",
                "Reports read inside an ACK (Config.ack_report: one message, not two)",
                s.reports_in_acks,
            ),
            ("passes", "Config rebuild passes", s.pusher.passes),
            ("certificates_issued", "Dataplane certificates issued", s.issuer.issued_total),
        ):
            yield CounterMetricFamily(f"meshfed_dp_server_{name}", text, value=value)
