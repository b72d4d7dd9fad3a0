"""The dataplane config server honours a sidecar's reachable services (in process, real gRPC
on loopback, memory store, the zone's real ZoneServices): only their outbounds are built and
sent, a change to another service neither sends nor rebuilds that sidecar's config, and a
Hello with bad names is refused (fatal BAD_REQUEST, then status INVALID_ARGUMENT) while the
server goes on serving."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import grpc
import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.protocol import ProxyType, ack_message, hello_message
from tests.support import async_wait_until
from tests.unit.mesh_control.dpserver_support import WEB, Proxy, Zone, doc, token_for
from tests.unit.policy.factories import dataplane, inbound

SERVICES = {"backend": "127.0.0.6", "other": "127.0.0.9", "third": "127.0.0.10"}


async def with_services(zone: Zone) -> None:
    """One ready instance of each of SERVICES (stored as the API would: no proxy), each with
    its VIPs allocated."""
    for service, address in SERVICES.items():
        await zone.store.create(dataplane(f"{service}-1", inbound(service, 9090), address=address))

    async def allocated() -> bool:
        vips = zone.services.snapshot.vips
        return all(VipKey("default", s) in vips for s in SERVICES)

    await async_wait_until(allocated, what="VIPs of every service")


async def sidecar(
    zone: Zone, proxies: list[Proxy], name: str, reachable: Collection[str] | None
) -> Proxy:
    resource = dataplane(name, inbound(name.split("-")[0], 8080), address="127.0.0.5")
    proxy = Proxy(zone.address, await token_for(zone.store, resource))
    proxies.append(proxy)
    await proxy.call.write(hello_message(ProxyType.SIDECAR, doc(resource), reachable=reachable))
    return proxy


def services_of(config: SidecarConfig) -> list[tuple[str, str | None]]:
    return [(o.service, o.zone) for o in config.outbounds]


async def scale(zone: Zone, service: str, instance: str, address: str) -> None:
    """A second instance of `service`, and the zone's catalog lists it."""
    await zone.store.create(dataplane(instance, inbound(service, 9090), address=address))

    async def listed() -> bool:
        entry = zone.services.snapshot.catalog.get("default", service)
        return entry is not None and len(entry.local) == 2

    await async_wait_until(listed, what=f"{instance} in the catalog")


async def test_only_reachable_outbounds_are_sent(zone: Zone, proxies: list[Proxy]) -> None:
    await with_services(zone)
    web = await sidecar(zone, proxies, "web-1", ["backend"])
    broad = await sidecar(zone, proxies, "broad-1", None)
    none = await sidecar(zone, proxies, "none-1", [])

    config = await web.config()
    assert services_of(config) == [("backend", None), ("backend", "zone-1")]
    backend = config.outbounds[0]
    assert backend.address == zone.services.snapshot.vips[VipKey("default", "backend")]
    assert [(e.address, e.port) for e in backend.endpoints] == [("127.0.0.6", 9090)]
    # The same mesh, without a list: every service; with an empty one: none.
    assert {s for s, _ in services_of(await broad.config())} == set(SERVICES)
    assert (await none.config()).outbounds == ()
    key = ("Dataplane", "default", "web-1")
    session = zone.server.sessions[key]
    assert zone.server.status()["proxies"][-1]["reachableServices"] == ["backend"]
    await web.call.write(ack_message(config.version))

    # Another service scales: the broad sidecar gets a config, web nothing (its config
    # would be the same, and it is not even rebuilt: the server knows web does not call it).
    sent = session.subscription.responses_sent
    await scale(zone, "other", "other-2", "127.0.0.11")
    other = next(o for o in (await broad.config()).outbounds if o.service == "other")
    assert len(other.endpoints) == 2
    # broad's config came from a pass that was over before it was written: had web been
    # in it, its config would already be queued.
    assert session.subscription.responses_sent == sent and session.outbox.empty()

    # backend scales: web gets the new endpoint.
    await scale(zone, "backend", "backend-2", "127.0.0.12")
    config = await web.config()
    assert {e.address for e in config.outbounds[0].endpoints} == {"127.0.0.6", "127.0.0.12"}
    assert session.subscription.responses_sent == sent + 1


async def test_a_change_elsewhere_does_not_rebuild(zone: Zone, proxies: list[Proxy]) -> None:
    await with_services(zone)
    web = await sidecar(zone, proxies, "web-1", ["backend"])
    await web.config()
    passes = zone.server.pusher.passes

    await scale(zone, "third", "third-2", "127.0.0.13")
    await scale(zone, "backend", "backend-2", "127.0.0.12")
    config = await web.config()
    assert len(config.outbounds[0].endpoints) == 2
    # One rebuild pass for the two changes: the one web calls.
    assert zone.server.pusher.passes == passes + 1


async def test_bad_reachable_services_are_refused_and_the_server_goes_on(
    zone: Zone, proxies: list[Proxy]
) -> None:
    channel = grpc.aio.insecure_channel(str(zone.address))
    try:
        call = pb_grpc.DataplaneConfigStub(channel).Stream(None)
        await call.write(
            pb.DpMessage(
                hello=pb.Hello(
                    proxy_type=pb.SIDECAR,
                    resource=hello_message(ProxyType.SIDECAR, doc(WEB)).hello.resource,
                    mesh="default",
                    reachable_services=["backend", ""],
                    reachable_services_set=True,
                )
            )
        )
        msg = await asyncio.wait_for(call.read(), 10)
        assert isinstance(msg, pb.CpMessage)
        assert msg.error.code == pb.Error.BAD_REQUEST and msg.error.fatal
        expected = "Hello.reachable_services: reachable service [1] is empty"
        assert msg.error.message == expected
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 10)
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ended.value.details() == expected
    finally:
        await channel.close(grace=None)
    assert zone.server.refused_total == 1
    assert not (await zone.store.list("Dataplane")).items  # nothing registered

    # The same server serves the next proxy.
    good = await sidecar(zone, proxies, "web-1", ["backend"])
    assert (await good.config()).dataplane == "web-1"
