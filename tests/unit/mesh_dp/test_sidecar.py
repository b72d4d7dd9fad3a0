"""Applying configs to a Sidecar in-process: listeners bound, reachable services, atomic
failure, removal, TLS context reuse, and the report sent back to the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator

import msgspec
import pytest

from mesh_dp.sidecar import ApplyError, Sidecar
from meshfed.dpconfig.model import Endpoint, Inbound, Outbound, OutboundKind, SidecarConfig, Tls
from meshfed.dpconfig.tracing import Tracing
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf
from meshfed.policy.permissions import Permissions
from tests.support import async_wait_until, free_port


def addresses() -> list[str]:
    prefix = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}"
    return [f"{prefix}.{i}" for i in range(1, 20)]


A = addresses()
OPEN = Permissions(mesh="default", enforced=False)


def inbound(address: str, app_port: int) -> Inbound:
    return Inbound("", address, free_port(address), "127.0.0.1", app_port, "web", {}, OPEN)


def vip_outbound(service: str, address: str, **kw: object) -> Outbound:
    return Outbound(service, address, free_port(address), (Endpoint("127.0.0.1", 1, "z"),), **kw)  # type: ignore[arg-type]


def config(
    *outbounds: Outbound, inbounds: tuple[Inbound, ...] = (), tls: Tls | None = None
) -> SidecarConfig:
    return SidecarConfig(
        mesh="default",
        zone="zone-1",
        dataplane="web-1",
        identity="spiffe://default/web",
        mtls_enabled=tls is not None,
        inbounds=inbounds,
        outbounds=tuple(outbounds),
        tls=tls,
    ).stamped()


def listening(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
        return True
    return False


@pytest.fixture
async def app() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@contextlib.asynccontextmanager
async def sidecar(**kwargs: object) -> AsyncIterator[Sidecar]:
    s = Sidecar(**kwargs)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        await s.stop()


async def test_listeners_follow_the_config(app: int) -> None:
    backend = vip_outbound("backend", A[0])
    redis = vip_outbound("redis", A[1])
    explicit = msgspec.structs.replace(vip_outbound("db", A[2]), kind=OutboundKind.EXPLICIT)
    inb = inbound(A[3], app)
    async with sidecar(reachable={"backend"}) as s:
        await s.apply(config(backend, redis, explicit, inbounds=(inb,)))
        assert listening(backend.address, backend.port)
        assert listening(explicit.address, explicit.port)  # explicit: always bound
        assert not listening(redis.address, redis.port)  # not reachable: not bound
        assert listening(inb.address, inb.port)
        await s.apply(config(explicit))
        assert not listening(backend.address, backend.port)
        assert not listening(inb.address, inb.port)
        assert [o.service for o in s.outbound_stats()] == ["db"]


async def test_a_failing_config_changes_nothing(app: int) -> None:
    backend = vip_outbound("backend", A[4])
    redis = vip_outbound("redis", A[5])
    async with sidecar() as s:
        first = config(backend)
        await s.apply(first)
        with socket.create_server((A[6], 0)) as squatter:
            taken = vip_outbound("db", A[6])
            taken = msgspec.structs.replace(taken, port=squatter.getsockname()[1])
            with pytest.raises(
                ApplyError, match=rf"outbound db: cannot listen on {A[6]}:\d+: already in use"
            ):
                await s.apply(config(redis, taken, inbounds=(inbound(A[7], app),)))
        assert s.version == first.version
        assert listening(backend.address, backend.port)  # kept
        assert not listening(redis.address, redis.port)  # rolled back
        assert [o.service for o in s.outbound_stats()] == ["backend"]


async def test_port_80_is_a_convenience(app: int) -> None:
    web = vip_outbound("web", A[8], also_port_80=True)
    try:
        with socket.create_server((A[9], 80)):
            can_bind_80 = True
    except PermissionError:
        can_bind_80 = False
    async with sidecar() as s:
        await s.apply(config(web))  # never fails because of port 80
        assert listening(web.address, web.port)
        assert listening(web.address, 80) == can_bind_80
        await s.apply(config(msgspec.structs.replace(web, also_port_80=False)))
        assert listening(web.address, web.port)
        assert not listening(web.address, 80)


async def test_tls_contexts_are_rebuilt_only_for_new_material(app: int) -> None:
    ca = create_mesh_ca("default")

    def tls() -> Tls:
        leaf = issue_leaf(ca, "web")
        return Tls(leaf.cert_pem.decode(), leaf.key_pem.decode(), (ca.cert_pem.decode(),), "x")

    first = tls()
    async with sidecar() as s:
        await s.apply(config(tls=first))
        contexts = s.contexts
        await s.apply(config(vip_outbound("backend", A[10]), tls=first))
        assert s.contexts is contexts
        await s.apply(config(tls=tls()))
        assert s.contexts is not contexts and s.contexts is not None
        broken = msgspec.structs.replace(first, key_pem="junk")
        with pytest.raises(ApplyError, match=r"tls\.keyPem"):
            await s.apply(config(tls=broken))


async def test_report_carries_readiness_and_counters(app: int) -> None:
    inb = inbound(A[11], app)
    dead = msgspec.structs.replace(inbound(A[12], app), service_port=free_port())
    backend = vip_outbound("backend", A[13])
    changes: list[int] = []
    async with sidecar(probe_interval=0.05, on_health_change=lambda: changes.append(1)) as s:
        await s.apply(config(backend, inbounds=(inb, dead)))
        s.start()

        async def ready() -> bool:
            return s.inbound_stats()[0].ready

        await async_wait_until(ready, what="the app probe")
        reader, writer = await asyncio.open_connection(backend.address, backend.port)
        with contextlib.suppress(ConnectionResetError):  # its only endpoint is closed
            assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        report = s.report()
        assert report.config_version == s.version
        assert [(i.port, i.ready) for i in report.inbounds] == [
            (inb.port, True),
            (dead.port, False),
        ]
        (svc,) = report.services
        assert (svc.mesh, svc.service) == ("default", "backend")
        assert svc.counters.connections_total == 1
        assert svc.counters.connections_rejected == 1
        assert changes  # readiness changed at least once


async def test_meshtrace_attaches_a_tracer_per_listener_and_detaches(app: int) -> None:
    backend, inb = vip_outbound("backend", A[10]), inbound(A[11], app)
    traced = msgspec.structs.replace(
        config(backend, inbounds=(inb,)),
        tracing=Tracing("zipkin", f"http://127.0.0.1:{free_port()}/s", "web"),
    )
    async with sidecar() as s:
        await s.apply(traced)
        (o,), (i,) = s.outbounds.values(), s.inbounds.values()
        assert o.http.tracer is not None and not o.http.tracer.listener.server
        assert i.http.tracer is not None and i.http.tracer.listener.server
        assert i.http.tracer.listener.shared  # Zipkin: Kuma's default shared span context
        exporter = s.tracing.exporter
        assert exporter is not None
        await s.apply(config(backend, inbounds=(inb,)))
        assert o.http.tracer is None and i.http.tracer is None
        assert s.tracing.exporter is None and exporter.closing
