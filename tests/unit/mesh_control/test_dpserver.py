"""The dataplane config server in process, over real gRPC on loopback, with a memory store and
the zone's real ZoneServices: registration, configs and their pushes, ACK/NACK, reports,
offline on disconnect, refusals, certificates and their rotation, ingress configs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

import grpc
import pytest

from global_cp.mesh_ca import ensure_ca, plan_for
from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.protocol import (
    ProxyType,
    ack_message,
    hello_message,
    nack_message,
    parse_ingress_config,
)
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from tests.unit.mesh_control.dpserver_support import (
    BACKEND,
    WEB,
    ZONE,
    Proxy,
    Zone,
    connect,
    doc,
    start_zone,
    token_for,
)
from tests.unit.policy.factories import dataplane, inbound, mesh_resource
from zone_cp.dpserver import DEFAULT_MAX_RECEIVE_BYTES
from zone_cp.settings import CONFIG, ZoneSettings


async def test_a_sidecar_registers_and_gets_its_config(zone: Zone, proxies: list[Proxy]) -> None:
    web = await connect(zone, proxies, WEB)
    config = await web.config()
    assert (config.mesh, config.zone, config.dataplane) == ("default", ZONE, "web-1")
    assert config.identity == "spiffe://default/web"
    assert config.mtls_enabled and config.tls is not None
    assert [(i.port, i.service_port) for i in config.inbounds] == [(8080, 18080)]
    assert config.inbounds[0].permissions.sources == ("MeshTrafficPermission/allow-all",)
    # Not reported yet: the next insight flush stores it (decision 183), not ready
    stored = await async_wait_until(lambda: zone.dataplane("web-1"), what="web-1 stored")
    assert stored.meta.labels == {"kuma.io/origin": "zone", "kuma.io/zone": ZONE}
    assert await zone.ready("web-1") == [False]  # until it reports the app answers

    await web.call.write(ack_message(config.version))
    await web.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=True)]))
    )
    await async_wait_until(lambda: zone.ready("web-1"), what="web ready")
    # Now in the catalog: the zone resolves it, and its own config gets the VIP outbound.
    config = await web.config()
    assert [o.service for o in config.outbounds] == ["web", "web"]  # web.mesh, web.zone-1.mesh
    await web.call.write(ack_message(config.version))
    insight = await async_wait_until(
        lambda: acked_insight(zone, "web-1", config.version), what="insight with the ACK"
    )
    sub = insight.spec["subscriptions"][-1]
    assert sub["controlPlaneInstanceId"] == "cp-test"
    assert sub["status"]["total"]["responsesAcknowledged"] == 2
    assert insight.spec["mTLS"]["issuedBackend"] == "ca-1"


async def test_a_first_report_writes_the_insight_without_waiting_for_a_flush(
    store: MemoryStore, proxies: list[Proxy]
) -> None:
    """Decisions 179, 183: a sidecar's first registration stores neither its insight nor its
    Dataplane; its first report stores both, even one that changes no readiness (no flush
    comes within this test: 1 hour)."""
    zones = start_zone(store, insight_flush=3600.0)
    zone = await anext(zones)
    try:
        web = await connect(zone, proxies, WEB)
        config = await web.config()
        keys = [("Dataplane", "default", "web-1"), ("DataplaneInsight", "default", "web-1")]
        assert await store.get_many(keys) == {}
        await web.call.write(ack_message(config.version))
        await web.call.write(
            pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=False)]))
        )
        insight = await async_wait_until(
            lambda: acked_insight(zone, "web-1", config.version), what="web-1's insight"
        )
        assert insight.spec["subscriptions"][-1]["controlPlaneInstanceId"] == "cp-test"
        assert await zone.ready("web-1") == [False]
    finally:
        await zones.aclose()


async def test_a_report_inside_an_ack_counts_as_the_report(
    store: MemoryStore, proxies: list[Proxy]
) -> None:
    """Config.ack_report: the zone says it reads a report inside an ACK, and one that comes
    there does what a Report message does (the first one stores the Dataplane with its
    health and the insight with the ACK, no flush within this test; a later one changes the
    readiness). An ACK without one, then a Report (an older proxy): the tests above."""
    zones = start_zone(store, insight_flush=3600.0)
    zone = await anext(zones)
    try:
        web = await connect(zone, proxies, WEB)
        msg = await web.read()
        assert msg.config.ack_report
        version = msg.config.version
        assert await store.get_many([("Dataplane", "default", "web-1")]) == {}
        report = pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=True)])
        await web.call.write(ack_message(version, report))
        await async_wait_until(lambda: readiness_is(zone, "web-1", [True]), what="web ready")
        await async_wait_until(lambda: acked_insight(zone, "web-1", version), what="insight")
        # Its config grows the web outbounds (it is in the catalog now); the report in its
        # ACK changes the readiness as a Report would.
        config = await web.config()
        not_ready = pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=False)])
        await web.call.write(ack_message(config.version, not_ready))
        await async_wait_until(lambda: readiness_is(zone, "web-1", [False]), what="web not ready")
        assert (zone.server.reports, zone.server.reports_in_acks) == (2, 2)
        await web.call.write(pb.DpMessage(report=report))  # a Report of its own still counts
        await async_wait_until(lambda: readiness_is(zone, "web-1", [True]), what="web ready")
        assert (zone.server.reports, zone.server.reports_in_acks) == (3, 2)
    finally:
        await zones.aclose()


async def readiness_is(zone: Zone, name: str, want: list[bool]) -> bool:
    return await zone.ready(name) == want


async def acked_insight(zone: Zone, name: str, version: str) -> Resource | None:
    insight = await zone.store.get("DataplaneInsight", "default", name)
    sub = insight.spec["subscriptions"][-1]
    return insight if sub["config"]["acknowledged"] == version else None


async def test_configs_follow_the_catalog_and_the_policies(
    zone: Zone, proxies: list[Proxy]
) -> None:
    web = await connect(zone, proxies, WEB)
    first = await web.config()
    assert first.outbounds == ()
    backend = await connect(zone, proxies, BACKEND)
    await backend.config()
    await backend.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=9090, ready=True)]))
    )
    config = await web.config()
    (out, pinned) = config.outbounds
    assert (out.service, out.port, out.zone, pinned.zone) == ("backend", 19090, None, ZONE)
    assert [(e.address, e.port) for e in out.endpoints] == [("127.0.0.6", 9090)]
    assert out.address == zone.services.snapshot.vips[VipKey("default", "backend")]

    # A policy change reaches the sidecar as a new version; an equal rebuild sends nothing.
    await zone.store.create(
        resource_from_dict(
            {
                "type": "MeshTimeout",
                "name": "t",
                "mesh": "default",
                "spec": {
                    "targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "7s"}}],
                },
            },
            default_registry(),
        )
    )
    config = await web.config()
    assert config.outbounds[0].policies.idle_timeout == 7.0
    zone.server.invalidate()
    with pytest.raises(TimeoutError):
        await web.read(timeout=0.3)


async def test_a_disconnected_sidecar_goes_offline_and_comes_back(
    zone: Zone, proxies: list[Proxy]
) -> None:
    backend = await connect(zone, proxies, BACKEND)
    await backend.config()
    await backend.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=9090, ready=True)]))
    )
    await async_wait_until(lambda: zone.ready("backend-1"), what="ready")
    await async_wait_until(
        lambda: asyncio.sleep(0, zone.services.snapshot.catalog.get("default", "backend")),
        what="backend in the catalog",
    )
    await backend.close()
    await async_wait_until(
        lambda: asyncio.sleep(0, zone.services.snapshot.catalog.get("default", "backend") is None),
        what="backend leaves the catalog",
    )
    assert await zone.ready("backend-1") == [False]
    insight = await zone.store.get("DataplaneInsight", "default", "backend-1")
    assert "disconnectTime" in insight.spec["subscriptions"][-1]

    again = await connect(zone, proxies, BACKEND)
    await again.config()
    await again.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=9090, ready=True)]))
    )
    await async_wait_until(
        lambda: asyncio.sleep(0, zone.services.snapshot.catalog.get("default", "backend")),
        what="backend back in the catalog",
    )
    insight = await zone.store.get("DataplaneInsight", "default", "backend-1")
    assert len(insight.spec["subscriptions"]) == 2


async def test_refusals(zone: Zone, proxies: list[Proxy]) -> None:
    bad = Proxy(zone.address)
    proxies.append(bad)
    await bad.call.write(
        pb.DpMessage(hello=pb.Hello(proxy_type=pb.SIDECAR, resource=b"{", mesh="default"))
    )
    msg = await bad.read()
    assert msg.error.code == pb.Error.BAD_REQUEST and msg.error.fatal
    assert "not valid JSON" in msg.error.message
    assert await bad.ended()

    other_mesh = dataplane("x", inbound("x", 1000), mesh="nope")
    nomesh = await connect(zone, proxies, other_mesh)
    msg = await nomesh.read()
    assert msg.error.code == pb.Error.REGISTRATION_REFUSED
    assert "mesh 'nope' does not exist" in msg.error.message

    first = await connect(zone, proxies, WEB)
    await first.config()
    await first.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=8080, ready=True)]))
    )
    await async_wait_until(lambda: zone.ready("web-1"), what="web ready")
    impostor = dataplane("web-1", inbound("web", 8081), address="127.0.0.7")
    second = await connect(zone, proxies, impostor)
    msg = await second.read()
    assert msg.error.code == pb.Error.REGISTRATION_REFUSED
    assert "connected with a different Dataplane" in msg.error.message

    # The same Dataplane again (the proxy restarted): the new stream replaces the old.
    third = await connect(zone, proxies, WEB)
    await third.config()
    assert await first.ended()
    assert zone.server.refused_total == 3
    # Taken over, not disconnected: still ready, and the old subscription is closed.
    assert await zone.ready("web-1") == [True]
    insight = await zone.store.get("DataplaneInsight", "default", "web-1")
    first_sub, third_sub = insight.spec["subscriptions"]
    assert "disconnectTime" in first_sub and "disconnectTime" not in third_sub


async def test_nacks_are_recorded(zone: Zone, proxies: list[Proxy]) -> None:
    web = await connect(zone, proxies, WEB)
    config = await web.config()
    await web.call.write(nack_message(config.version, "port 8080 is taken"))
    insight = await async_wait_until(lambda: nacked(zone, "web-1"), what="insight with the NACK")
    assert insight.spec["subscriptions"][-1]["config"]["lastNackError"] == "port 8080 is taken"
    assert zone.server.nacks == 1


async def nacked(zone: Zone, name: str) -> Resource | None:
    insight = await zone.store.get("DataplaneInsight", "default", name)
    sub = insight.spec["subscriptions"][-1]
    return insight if sub["status"]["total"]["responsesRejected"] else None


async def test_no_ca_yet_then_the_config(proxies: list[Proxy]) -> None:
    store = MemoryStore()
    mesh = mesh_resource()
    await store.create(mesh)
    async for zone in start_zone(store):
        web = await connect(zone, proxies, WEB)
        msg = await web.read()
        assert msg.error.code == pb.Error.CONFIG_UNAVAILABLE and not msg.error.fatal
        assert "CA has not reached this zone" in msg.error.message
        plan = plan_for(mesh)
        assert plan is not None
        await ensure_ca(store, plan)  # as the global's sync would bring it
        config = await web.config()
        assert config.tls is not None
    await store.close()


async def test_certificates_rotate_before_they_expire(
    store: MemoryStore, proxies: list[Proxy]
) -> None:
    async for zone in start_zone(store, validity=dt.timedelta(seconds=2)):
        web = await connect(zone, proxies, WEB)
        first = await web.config()
        second = await web.config(timeout=5)  # at 80% of 2 s
        assert first.tls is not None and second.tls is not None
        assert second.tls.cert_pem != first.tls.cert_pem
        assert second.tls.expires_at >= first.tls.expires_at


async def test_an_ingress_gets_the_local_services_by_sni(zone: Zone, proxies: list[Proxy]) -> None:
    ingress = resource_from_dict(
        {
            "type": "ZoneIngress",
            "name": "zi-1",
            "networking": {"address": "127.0.0.8", "port": 10001},
        },
        default_registry(),
    )
    zi = await connect(zone, proxies, ingress, ProxyType.INGRESS)
    msg = await zi.read()
    config = parse_ingress_config(msg)
    assert (config.zone, config.ingress, config.services) == (ZONE, "zi-1", ())
    backend = await connect(zone, proxies, BACKEND)
    await backend.config()
    await backend.call.write(
        pb.DpMessage(report=pb.Report(inbounds=[pb.InboundStatus(port=9090, ready=True)]))
    )
    msg = await zi.read()
    config = parse_ingress_config(msg)
    (svc,) = config.services
    assert (svc.service, [(e.address, e.port) for e in svc.endpoints]) == (
        "backend",
        [("127.0.0.6", 9090)],
    )
    stored = await async_wait_until(
        lambda: advertised(zone, "zi-1"), what="availableServices of zi-1"
    )
    assert stored.spec["zone"] == ZONE
    assert json.dumps(stored.spec["availableServices"]).count("backend") == 1


async def advertised(zone: Zone, name: str) -> Resource | None:
    res = await zone.store.get("ZoneIngress", "", name)
    return res if res.spec.get("availableServices") else None


async def test_a_message_over_the_limit_is_refused_and_the_server_keeps_serving(
    zone: Zone, proxies: list[Proxy]
) -> None:
    """Issue 16: a 12 MB Hello was accepted; now anything over --dp-max-message-bytes (4 MiB
    by default) ends its stream with RESOURCE_EXHAUSTED before it is parsed."""
    token = await token_for(zone.store, WEB)
    big = Proxy(zone.address, token)
    proxies.append(big)
    hello = hello_message(ProxyType.SIDECAR, doc(WEB), proxy_version="test/1")
    hello.hello.proxy_version = "x" * (12 * 1000 * 1000)
    with contextlib.suppress(Exception):  # the write may already fail as the call ends
        await big.call.write(hello)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await big.read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
    assert not zone.server.sessions  # nothing registered
    web = await connect(zone, proxies, WEB)  # a normal proxy is served as before
    config = await web.config()
    assert config.dataplane == "web-1"
    assert zone.server.max_receive_bytes == 4 * 1024 * 1024  # the default


def test_the_dataplane_port_limit_is_an_option_defaulting_to_the_servers() -> None:
    def resolve(argv: list[str]) -> ZoneSettings:
        return CONFIG.resolve(CONFIG.parser().parse_args(argv), {})

    s = resolve(["--zone", "z"])
    assert s.dp_max_message_bytes == DEFAULT_MAX_RECEIVE_BYTES == 4 * 1024 * 1024
    s = resolve(["--zone", "z", "--dp-max-message-bytes", "1MiB"])
    assert s.dp_max_message_bytes == 1024 * 1024
