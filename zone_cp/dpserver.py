"""zone-cp's dataplane config server: the DataplaneConfig stream (proto/dataplane.proto).

A proxy (mesh-dp sidecar or zone-ingress) opens one stream and sends Hello with its
Dataplane or ZoneIngress. The server checks it (`protocol.parse_hello`: the same validators
as the API), refuses what cannot be served (unknown mesh, a name held by another connected
proxy with a different Dataplane) with a fatal Error, and registers it in the zone store
(zone_cp/dpstate.py: zone labels and inbound health), from where KDS syncs it up. Then:

- configs: built by meshfed.dpconfig.build from the zone's service snapshot (catalog and
  VIPs, zone_cp.services), the Mesh, the policies in the zone store and, with mTLS, a leaf
  certificate (zone_cp.certs). A sidecar that announced its reachable services in its Hello
  gets outbounds for those only. One task rebuilds: a store change (Mesh, Secret, policies)
  or a new proxy marks proxies dirty, a new service snapshot marks those whose services
  changed (zone_cp.dpbuild `Wants`), and after a short debounce every dirty proxy's config
  is rebuilt and sent if its content hash (the config version) changed.
  Certificates are rotated by the same task when due. A config that cannot be built (no CA
  yet, the mesh deleted) is answered once with a non-fatal CONFIG_UNAVAILABLE naming why; the
  proxy keeps its last config and gets the next one as soon as it can be built.
- answers: ACK/NACK per version (a NACK is logged with the proxy's reason and shown in the
  insight); Reports update inbound readiness in the stored Dataplane (the catalog follows)
  and the insight.
- authentication: before anything is registered or a certificate issued, the proxy's token
  (call metadata `authorization: Bearer ...`) is verified: a sidecar's dataplane token with
  the keys of its mesh and against its Dataplane, a zone ingress's zone token (scope
  `ingress`, this zone) with the zone-token public keys (meshfed.auth.proxies). A missing or
  invalid token ends the stream with UNAUTHENTICATED, a valid one that does not cover the
  proxy with PERMISSION_DENIED; nothing is stored either way.
- refusals: a fatal Error message, then the end of the stream with the matching gRPC status
  (BAD_REQUEST: INVALID_ARGUMENT, ...), so a plain gRPC client sees why too.
- end: a stream that ends marks the Dataplane's inbounds not ready (offline: they leave the
  catalog and DNS) and closes the insight's subscription; for a zone ingress the closed
  subscription alone makes zone_cp.services empty its `availableServices` (other zones stop
  sending to it) until it reconnects. Not when zone-cp itself stops: proxies reconnect to the
  next instance and nothing should flap meanwhile.

After a crash nothing marked anyone offline; `stale_after` (default 30 s after start) closes
what is still marked connected to a previous instance and did not reconnect. Replicas of a
zone (etcd) skip that: another live replica may hold the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    ingress_refusal,
)
from meshfed.auth.tokens import DataplaneClaims, TokenError, TokenKind, ZoneClaims
from meshfed.config import Address
from meshfed.dpconfig.build import BuildError
from meshfed.dpconfig.protocol import (
    Hello,
    ProtocolError,
    ProxyType,
    config_message,
    error_message,
    parse_hello,
)
from meshfed.kds.stream import EOF, first_completed, grpc_options
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import Key, Resource, now_rfc3339
from meshfed.resources.types import default_registry
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.policies import POLICIES
from meshfed.resources.types.secret import SECRET
from meshfed.resources.types.zone_ingress import ZONE_INGRESS
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.mirror import StoreMirror
from zone_cp import dpstate
from zone_cp.certs import CertError, CertIssuer
from zone_cp.dpbuild import BuildInputs, Unavailable, Wants, build_config, changed_services
from zone_cp.dprecords import Records
from zone_cp.services import ServiceSnapshot, ZoneServices

log = logging.getLogger("zone_cp.dpserver")

HELLO_TIMEOUT: Final = 10.0
DEBOUNCE: Final = 0.02  # a burst of store events costs one rebuild
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024  # as mesh_dp.cpclient
POLICY_TYPES: Final = tuple(d.name for d in POLICIES)
WATCHED: Final = (MESH.name, SECRET.name, *POLICY_TYPES)
Context = grpc.aio.ServicerContext[Any, Any]
_STATUS_OF: Final = {
    pb.Error.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    pb.Error.REGISTRATION_REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.Error.CONFIG_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    pb.Error.INTERNAL: grpc.StatusCode.INTERNAL,
    pb.Error.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    pb.Error.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass
class Session:
    """One connected proxy."""

    hello: Hello
    resource: Resource  # as registered (without health)
    wants: Wants  # which catalog changes concern it
    subscription: dpstate.Subscription
    history: list[dict[str, Any]]  # earlier subscriptions, from the stored insight
    outbox: asyncio.Queue[pb.CpMessage] = field(default_factory=asyncio.Queue)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = ""
    unavailable: str = ""  # the CONFIG_UNAVAILABLE message last sent ("" once a config went)
    ready: dict[int, bool] = field(default_factory=dict)  # inbound index -> ready
    report: pb.Report | None = None
    insight_dirty: bool = False

    @property
    def kind(self) -> ProxyType:
        return self.hello.proxy_type

    @property
    def key(self) -> tuple[str, str, str]:
        return self.resource.key

    @property
    def name(self) -> str:
        return self.resource.meta.name

    @property
    def mesh(self) -> str:
        return self.resource.meta.mesh

    def describe(self) -> str:
        what = "dataplane" if self.kind is ProxyType.SIDECAR else "zone ingress"
        where = f" (mesh {self.mesh})" if self.mesh else ""
        return f"{what} {self.name}{where}"

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stopped.set()


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
    ) -> None:
        self._store = store
        self.zone = zone
        self._services = services
        self.issuer = issuer
        self.instance_id = instance_id
        self._registry = registry or default_registry()
        self._insight_flush = insight_flush
        self._stale_after = stale_after
        self._debounce = debounce
        self._mirror = StoreMirror(store, WATCHED, lambda res: res)
        self._records = Records(store, zone)
        self._dataplane_tokens = Verifier(store, TokenKind.DATAPLANE)
        self._zone_tokens = Verifier(store, TokenKind.ZONE)
        self._seen: ServiceSnapshot = services.snapshot  # the last snapshot diffed
        self.sessions: dict[tuple[str, str, str], Session] = {}
        self._register_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._dirty: set[tuple[str, str, str]] = set()
        self._dirty_all = False
        self._stopping = False
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recording: set[asyncio.Task[None]] = set()  # disconnections being written
        self._unlisten: list[Any] = []
        self.address: Address | None = None
        # counters (metrics)
        self.streams_total = 0
        self.refused_total = 0
        self.unauthorized_total = 0  # of those, refused for their token
        self.configs_sent = 0
        self.acks = 0
        self.nacks = 0
        self.passes = 0
        self.stale_closed = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, address: Address) -> Address:
        await self._mirror.start()
        self._unlisten.append(self._mirror.listen(lambda *_: self.invalidate()))
        self._seen = self._services.snapshot
        self._unlisten.append(self._services.listen(self._on_snapshot))
        # No SO_REUSEPORT: a second zone-cp on the same port must fail, not share proxies.
        options = [*grpc_options(MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)]
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
            asyncio.create_task(self._push_loop(), name="dp-config-push"),
            asyncio.create_task(self._flush_loop(), name="dp-insight-flush"),
        ]
        if self._stale_after is not None:
            self._tasks.append(asyncio.create_task(self._close_stale(), name="dp-stale"))
        return self.address

    async def stop(self) -> None:
        """Ends every stream without marking anyone offline: proxies reconnect elsewhere or
        to the next start, and their services should not flap meanwhile."""
        self._stopping = True
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._recording:  # disconnections seen before the stop: written before the store goes
            await asyncio.gather(*self._recording, return_exceptions=True)
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten = []
        await self._mirror.stop()

    def invalidate(self, key: tuple[str, str, str] | None = None) -> None:
        """Rebuild soon: one proxy's config (`key`) or everyone's."""
        if key is None:
            self._dirty_all = True
        else:
            self._dirty.add(key)
        self._wake.set()

    def _on_snapshot(self, snapshot: ServiceSnapshot) -> None:
        """Rebuild the proxies whose services changed (a sidecar that calls two services
        of a thousand is not rebuilt when another one scales)."""
        old, self._seen = self._seen, snapshot
        changed = changed_services(old.catalog, old.vips, snapshot.catalog, snapshot.vips)
        for key, session in self.sessions.items():
            if session.wants.affected_by(changed):
                self.invalidate(key)

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
            session = await self._register(hello)
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
            await self._unregister(session)

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
                return pb.Error.REGISTRATION_REFUSED, _no_mesh(resource.mesh, self.zone)
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
            if token is None:
                return unauthenticated, (
                    "no zone token: start zone-ingress with --zone-token-file (a zone token "
                    f"of scope ingress for zone {self.zone!r})"
                )
            try:
                verified = await self._zone_tokens.verify(token)
            except TokenError as exc:
                return unauthenticated, f"zone token refused: {exc}"
            assert isinstance(verified.claims, ZoneClaims)
            reason = ingress_refusal(verified.claims, self.zone)
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
                self._on_ack(session, msg.ack.version)
            elif kind == "nack":
                self._on_nack(session, msg.nack.version, msg.nack.error)
            elif kind == "report":
                await self._on_report(session, msg.report)
            elif kind == "hello":
                session.outbox.put_nowait(
                    error_message(pb.Error.BAD_REQUEST, "Hello was already received; ignored")
                )

    async def _write(self, context: Context, session: Session) -> None:
        while True:
            await context.write(await session.outbox.get())

    def _on_ack(self, session: Session, version: str) -> None:
        sub = session.subscription
        self.acks += 1
        sub.responses_acked += 1
        sub.config_acked = version
        sub.last_update_time = now_rfc3339()
        session.insight_dirty = True

    def _on_nack(self, session: Session, version: str, error: str) -> None:
        sub = session.subscription
        self.nacks += 1
        sub.responses_rejected += 1
        sub.last_nack_error = error[:1000]
        sub.last_update_time = now_rfc3339()
        session.insight_dirty = True
        log.warning("%s rejected config %s: %s", session.describe(), version, error)

    async def _on_report(self, session: Session, report: pb.Report) -> None:
        session.report = report
        session.subscription.last_update_time = now_rfc3339()
        session.insight_dirty = True
        if session.kind is not ProxyType.SIDECAR:
            return
        ready = {**session.ready, **dpstate.ready_by_port(session.resource, report)}
        if ready != session.ready:
            try:
                await self._write_dataplane(session, ready)
            except StoreError as exc:  # the next report tries again
                log.warning("%s: readiness not stored: %s", session.describe(), exc)
                return
            session.ready = ready

    # -- registration ----------------------------------------------------------------------

    async def _register(self, hello: Hello) -> Session:
        """Stores the proxy's resource and insight, then (with no await after it, so a
        cancelled registration leaves nothing behind) makes it a live session."""
        announced = hello.resource
        async with self._register_lock:
            current = self.sessions.get(announced.key)
            replaced: list[dict[str, Any]] = []
            if current is not None:
                previous = current.hello.resource
                if dpstate.without_health(previous) != dpstate.without_health(announced):
                    raise dpstate.Refused(
                        f"{current.describe()} is connected with a different "
                        f"{announced.type}; give this proxy another name"
                    )
                # The same proxy again (its old stream may linger half-dead): the new stream
                # takes over without the old one marking the dataplane offline.
                del self.sessions[announced.key]
                current.subscription.disconnect_time = now_rfc3339()
                replaced = [*current.history, current.subscription.to_json()]
                current.stop("replaced by a newer stream of the same proxy")
            if hello.proxy_type is ProxyType.SIDECAR:
                if self._mirror.get(MESH.name, Key("", announced.mesh)) is None:
                    raise dpstate.Refused(_no_mesh(announced.mesh, self.zone))
                stored = await self._records.get(DATAPLANE.name, announced.mesh, announced.name)
                resource = dpstate.registered_dataplane(announced, self.zone, stored)
                insight_type = DATAPLANE_INSIGHT.name
            else:
                stored = await self._records.get(ZONE_INGRESS.name, "", announced.name)
                resource = dpstate.registered_ingress(announced, self.zone, stored)
                insight_type = ZONE_INGRESS_INSIGHT.name
            await self._records.register(resource, stored)
            old_insight = await self._records.get(insight_type, resource.mesh, resource.name)
            history = replaced or dpstate.previous_subscriptions(old_insight)
            session = Session(
                hello=hello,
                resource=resource,
                wants=Wants.of(hello.proxy_type, resource, hello.reachable),
                subscription=dpstate.Subscription(
                    id=uuid.uuid4().hex,
                    instance=self.instance_id,
                    connect_time=now_rfc3339(),
                    proxy_version=hello.proxy_version,
                ),
                history=history,
                ready=dpstate.health_of(resource),
            )
            await self._write_insight(session)
            self.sessions[resource.key] = session
        self.invalidate(session.key)
        return session

    async def _unregister(self, session: Session) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
        else:
            return  # replaced: the newer session owns the resource
        if self._stopping:
            return
        log.info("%s disconnected%s", session.describe(), _reason(session))
        session.subscription.disconnect_time = now_rfc3339()
        # grpc cancels the handler of a stream whose peer vanished (a SIGKILLed proxy): the
        # writes that record the disconnection run in their own task, so they outlive it.
        task = asyncio.create_task(self._record_disconnection(session), name="dp-offline")
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        await asyncio.shield(task)

    async def _record_disconnection(self, session: Session) -> None:
        try:
            if session.kind is ProxyType.SIDECAR:
                await self._write_dataplane(session, {})
            await self._write_insight(session)
        except StoreError as exc:
            log.error("%s: cannot record the disconnection: %s", session.describe(), exc)

    # -- store writes ----------------------------------------------------------------------

    async def _write_dataplane(self, session: Session, ready: dict[int, bool]) -> None:
        """The stored Dataplane with this readiness ({}: offline, nothing ready)."""
        await self._records.set_health(session.resource, ready)

    async def _write_insight(self, session: Session) -> None:
        session.insight_dirty = False
        mtls = None
        if session.kind is ProxyType.SIDECAR:
            record = self.issuer.record(session.mesh, session.name)
            mtls = None if record is None else record.to_json()
        await self._records.write_insight(
            str(session.kind),
            session.mesh,
            session.name,
            [*session.history, session.subscription.to_json()],
            mtls,
            session.report,
        )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._insight_flush)
            for session in list(self.sessions.values()):
                if session.insight_dirty:
                    try:
                        await self._write_insight(session)
                    except StoreError as exc:
                        session.insight_dirty = True
                        log.warning("%s: insight not written: %s", session.describe(), exc)

    async def _close_stale(self) -> None:
        """After a crash: proxies still marked connected to an instance that is gone."""
        assert self._stale_after is not None
        await asyncio.sleep(self._stale_after)
        sessions = list(self.sessions.values())
        live = {(s.mesh, s.name) for s in sessions if s.kind is ProxyType.SIDECAR}
        ingresses = {s.name for s in sessions if s.kind is ProxyType.INGRESS}
        self.stale_closed += await self._records.close_stale(self.instance_id, live, ingresses)

    # -- configs ---------------------------------------------------------------------------

    async def _push_loop(self) -> None:
        while True:
            timeout = self._until_next_rotation()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), timeout)
            if self._debounce:
                await asyncio.sleep(self._debounce)
            self._wake.clear()
            keys = set(self.sessions) if self._dirty_all else self._dirty & set(self.sessions)
            self._dirty_all = False
            self._dirty = set()
            keys |= self._due_for_rotation()
            if not keys:
                continue
            self.passes += 1
            try:
                inputs = self._inputs()
            except Exception:  # a bug must not end every future config push
                log.exception("cannot gather the inputs of a config rebuild")
                self.invalidate()
                await asyncio.sleep(1.0)
                continue
            for key in sorted(keys):
                session = self.sessions.get(key)
                if session is not None:
                    self._push(session, inputs)

    def _until_next_rotation(self) -> float | None:
        times = [
            t
            for s in self.sessions.values()
            if s.kind is ProxyType.SIDECAR
            and (t := self.issuer.rotate_at(s.mesh, s.name)) is not None
        ]
        if not times:
            return None
        delay = (min(times) - dt.datetime.now(dt.UTC)).total_seconds()
        return max(0.0, delay)

    def _due_for_rotation(self) -> set[tuple[str, str, str]]:
        now = dt.datetime.now(dt.UTC)
        return {
            key
            for key, s in self.sessions.items()
            if s.kind is ProxyType.SIDECAR
            and (t := self.issuer.rotate_at(s.mesh, s.name)) is not None
            and t <= now
        }

    def _inputs(self) -> BuildInputs:
        return BuildInputs.of(
            [r for r, _ in self._mirror.entries(MESH.name)],
            [r for r, _ in self._mirror.entries(SECRET.name)],
            [r for t in POLICY_TYPES for r, _ in self._mirror.entries(t)],
        )

    def _push(self, session: Session, inputs: BuildInputs) -> None:
        snapshot = self._services.snapshot
        try:
            config = build_config(
                session.kind,
                session.resource,
                self.zone,
                snapshot.catalog,
                snapshot.vips,
                inputs,
                self.issuer,
                reachable=session.hello.reachable,
            )
        except (Unavailable, BuildError, CertError) as exc:
            self._unavailable(session, str(exc))
            return
        except Exception as exc:  # a bug must not stop the other proxies' configs
            log.exception("%s: building its config failed", session.describe())
            self._unavailable(session, f"internal error building the config: {exc!r}")
            return
        session.unavailable = ""
        sub = session.subscription
        if config.version == sub.config_sent:
            return
        session.outbox.put_nowait(config_message(config))
        sub.config_sent = config.version
        sub.responses_sent += 1
        session.insight_dirty = True
        self.configs_sent += 1
        log.debug("%s: config %s sent", session.describe(), config.version)

    def _unavailable(self, session: Session, reason: str) -> None:
        if reason == session.unavailable:
            return
        session.unavailable = reason
        log.warning("%s: no config for now: %s", session.describe(), reason)
        session.outbox.put_nowait(error_message(pb.Error.CONFIG_UNAVAILABLE, reason))

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


def _no_mesh(mesh: str, zone: str) -> str:
    return (
        f"mesh {mesh!r} does not exist in zone {zone!r} "
        "(meshes are created at the global control plane)"
    )


def _reason(session: Session) -> str:
    return f" ({session.stop_reason})" if session.stop_reason else ""


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
            ("configs_sent", "Configs sent (a new version)", s.configs_sent),
            ("acks", "Configs acknowledged", s.acks),
            ("nacks", "Configs rejected by a proxy", s.nacks),
            ("passes", "Config rebuild passes", s.passes),
            ("certificates_issued", "Dataplane certificates issued", s.issuer.issued_total),
        ):
            yield CounterMetricFamily(f"meshfed_dp_server_{name}", text, value=value)
