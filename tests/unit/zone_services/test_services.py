"""ZoneServices over a real (memory) store: event-driven passes, VIPs persisted before DNS
answers, restored after a restart, own ingresses rewritten only on change; the DNS table
swaps under a live server; the services views of zone and global."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dnslib import DNSRecord

from meshfed.api.services import services_from
from meshfed.config import Address
from meshfed.dpconfig.catalog import VipKey
from meshfed.resources.model import Meta, Resource
from meshfed.store.base import StoreError
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from zone_cp.dns_wiring import ZoneDns
from zone_cp.services import ZoneServices, services_json

ZONE = "zone-1"
CIDR = ipaddress.IPv4Network("127.1.0.0/16")
BACKEND = VipKey("default", "backend")


def mesh(name: str = "default") -> Resource:
    return Resource("Mesh", Meta(name=name))


def dataplane(name: str, *services: str, mesh: str = "default") -> Resource:
    inbound = [{"port": 8080 + i, "tags": {"kuma.io/service": s}} for i, s in enumerate(services)]
    spec = {"networking": {"address": "127.0.0.1", "inbound": inbound}}
    return Resource("Dataplane", Meta(name=name, mesh=mesh), spec)


def own_ingress(name: str = "zi-1") -> Resource:
    return Resource(
        "ZoneIngress", Meta(name=name), {"networking": {"address": "127.0.0.1", "port": 10001}}
    )


def relayed_ingress(zone: str, *services: str) -> Resource:
    groups = [{"tags": {"kuma.io/service": s}, "instances": 3, "mesh": "default"} for s in services]
    labels = {"kuma.io/origin": "global", "kuma.io/zone": zone}
    spec = {"networking": {"address": "127.0.0.2", "port": 10001}, "availableServices": groups}
    return Resource("ZoneIngress", Meta(name=f"zi.{zone}", labels=labels), spec)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.create(mesh())
    yield s
    await s.close()


async def started(store: MemoryStore) -> ZoneServices:
    services = ZoneServices(store, ZONE, CIDR)
    await services.start()
    return services


async def until(predicate: Any, what: str) -> Any:
    async def check() -> Any:
        return predicate()

    return await async_wait_until(check, timeout=5, what=what)


async def test_a_dataplane_becomes_names_and_persisted_vips_and_comes_back_to_its_vip(
    store: MemoryStore,
) -> None:
    services = await started(store)
    try:
        assert services.snapshot.names.records == {}
        await store.create(dataplane("dp-1", "backend"))
        await until(lambda: "backend.mesh" in services.snapshot.names.records, "backend.mesh")
        vip = services.snapshot.vips[BACKEND]
        assert services.snapshot.names.records["backend.zone-1.mesh"] != vip
        stored = await store.get("VirtualIPs", "default", ZONE)
        assert stored.spec["services"]["backend"]["vip"] == vip
        assert stored.meta.labels == {"kuma.io/origin": "zone", "kuma.io/zone": ZONE}

        await store.delete("Dataplane", "default", "dp-1")
        await until(lambda: services.snapshot.names.records == {}, "backend gone")
        stored = await store.get("VirtualIPs", "default", ZONE)
        assert [r["service"] for r in stored.spec["reserved"]] == ["backend", "backend"]
        await store.create(dataplane("dp-1", "backend"))
        await until(lambda: services.snapshot.vips.get(BACKEND) == vip, "same VIP again")
    finally:
        await services.stop()


async def test_vips_survive_a_restart_and_a_burst_costs_few_passes(store: MemoryStore) -> None:
    services = await started(store)
    try:
        passes = services.passes
        for i in range(200):
            await store.create(dataplane(f"dp-{i}", f"svc-{i}"))
        await until(lambda: len(services.snapshot.catalog) == 200, "200 services")
        assert services.passes - passes < 200  # bursts coalesce into fewer passes
        before = dict(services.snapshot.vips)
    finally:
        await services.stop()
    again = await started(store)
    try:
        assert again.snapshot.vips == before
        assert again.passes == 1
    finally:
        await again.stop()


async def test_own_ingress_gets_zone_and_services_once_and_relayed_ones_are_left_alone(
    store: MemoryStore,
) -> None:
    await store.create(own_ingress())
    await store.create(relayed_ingress("zone-2", "backend"))
    services = await started(store)
    try:
        await until(lambda: services.snapshot.catalog.get("default", "backend"), "remote")
        mine = await store.get("ZoneIngress", "", "zi-1")
        assert mine.spec["zone"] == ZONE and mine.spec["availableServices"] == []
        await store.create(dataplane("dp-1", "web"))

        async def advertised() -> Any:
            got = await store.get("ZoneIngress", "", "zi-1")
            return got.spec["availableServices"] and got

        got = await async_wait_until(advertised, timeout=5, what="web advertised")
        groups = got.spec["availableServices"]
        assert [(g["tags"]["kuma.io/service"], g["instances"]) for g in groups] == [("web", 1)]
        version = got.meta.version
        services.invalidate()  # an extra pass with nothing new writes nothing
        passes = services.passes
        await until(lambda: services.passes > passes, "another pass")
        assert (await store.get("ZoneIngress", "", "zi-1")).meta.version == version
        theirs = await store.get("ZoneIngress", "", "zi.zone-2")
        assert "zone" not in theirs.spec

        body = services_json(services.snapshot, "default")
        backend = next(i for i in body["items"] if i["service"] == "backend")
        assert backend["zones"] == [{"zone": "zone-2", "instances": 3}]
        assert backend["instances"] == 3 and backend["vip"] == services.snapshot.vips[BACKEND]
        assert backend["names"] == ["backend.mesh", "backend.zone-2.mesh"]
        assert set(backend["zoneVips"]) == {"zone-2"}
        assert body["total"] == 2 and body["zone"] == ZONE
        assert services_json(services.snapshot, "other")["items"] == []
    finally:
        await services.stop()


async def test_deleting_a_mesh_releases_its_vips(store: MemoryStore) -> None:
    await store.create(mesh("payments"))
    await store.create(dataplane("dp-1", "backend", mesh="payments"))
    services = await started(store)
    try:
        assert "backend.payments.meshes.mesh" in services.snapshot.names.records
        await store.delete_mesh_scoped("payments")
        await store.delete("Mesh", "", "payments")
        await until(lambda: services.snapshot.vips == {}, "VIPs gone")
        await until(lambda: services.book.reserved() == [], "released")

        async def deleted() -> bool:
            return (await store.list("VirtualIPs", "payments")).total == 0

        await async_wait_until(deleted, timeout=5, what="VirtualIPs deleted")
    finally:
        await services.stop()


class FlakyStore(MemoryStore):
    """Refuses the first `failures` VirtualIPs writes, as a full disk would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def create(self, resource: Resource) -> Resource:
        if resource.type == "VirtualIPs" and self.failures > 0:
            self.failures -= 1
            raise StoreError("disk full")
        return await super().create(resource)


async def test_a_refused_write_is_retried_and_dns_waits_for_the_persisted_vip() -> None:
    store = FlakyStore(failures=2)
    await store.create(mesh())
    services = await started(store)
    try:
        await store.create(dataplane("dp-1", "backend"))
        await until(lambda: services.failures >= 1, "a failed pass")
        assert "backend.mesh" not in services.snapshot.names.records  # not persisted yet
        await until(lambda: "backend.mesh" in services.snapshot.names.records, "retried")
        assert (await store.get("VirtualIPs", "default", ZONE)).spec["services"]
    finally:
        await services.stop()
        await store.close()


def query(port: int, name: str) -> DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(DNSRecord.question(name).pack(), ("127.0.0.1", port))
        return DNSRecord.parse(sock.recv(4096))


async def test_the_dns_table_follows_the_snapshots(store: MemoryStore) -> None:
    services = await started(store)
    dns = ZoneDns(Address("127.0.0.1", 0))
    try:
        address = await dns.start(services.snapshot.names)
        services.listen(lambda snapshot: dns.update(snapshot.names))
        reply = await asyncio.to_thread(query, address.port, "backend.mesh")
        assert reply.header.rcode == 3  # NXDOMAIN
        await store.create(dataplane("dp-1", "backend"))

        async def answered() -> bool:
            reply = await asyncio.to_thread(query, address.port, "backend.mesh")
            return [str(rr.rdata) for rr in reply.rr] == [services.snapshot.vips[BACKEND]]

        await async_wait_until(answered, timeout=5, what="backend.mesh answered")
        with pytest.raises(OSError, match="choose another --dns-address"):
            await ZoneDns(address).start(services.snapshot.names)
    finally:
        await dns.close()
        await services.stop()


def test_global_view_counts_instances_per_zone_and_shows_each_zones_vip() -> None:
    def labelled(res: Resource, zone: str) -> Resource:
        res.meta.labels = {"kuma.io/origin": "zone", "kuma.io/zone": zone}
        return res

    dps = [
        labelled(dataplane("a.1", "backend"), "zone-2"),
        labelled(dataplane("b.1", "backend", "web"), "zone-2"),
        labelled(dataplane("c.1", "web"), "zone-1"),
        labelled(dataplane("d.1", "backend", mesh="other"), "zone-1"),
    ]
    vips = [
        labelled(
            Resource(
                "VirtualIPs",
                Meta(name="zone-1.x", mesh="default"),
                {"cidr": "127.1.0.0/16", "services": {"backend": {"vip": "127.1.0.1"}}},
            ),
            "zone-1",
        ),
        labelled(
            Resource(
                "VirtualIPs",
                Meta(name="zone-2.y", mesh="default"),
                {
                    "cidr": "127.2.0.0/16",
                    "services": {"backend": {"vip": "127.2.0.1"}, "web": {"vip": "127.2.0.2"}},
                    "reserved": [{"service": "old", "vip": "127.2.0.3"}],
                },
            ),
            "zone-2",
        ),
    ]
    body = services_from("default", dps, vips)
    assert body["items"] == [
        {
            "service": "backend",
            "instances": 2,
            "zones": [{"zone": "zone-2", "instances": 2}],
            "vips": {"zone-1": "127.1.0.1", "zone-2": "127.2.0.1"},
        },
        {
            "service": "web",
            "instances": 2,
            "zones": [{"zone": "zone-1", "instances": 1}, {"zone": "zone-2", "instances": 1}],
            "vips": {"zone-2": "127.2.0.2"},
        },
    ]
    assert body["total"] == 2 and body["mesh"] == "default"


async def test_replicas_sharing_a_store_answer_with_the_leaders_vips(store: MemoryStore) -> None:
    """Only the writer allocates and writes; a replica that takes over continues from the
    store, so no VIP changes hands and none is handed out twice."""
    leader = await started(store)
    follower = ZoneServices(store, ZONE, CIDR, writer=False)
    await follower.start()
    try:
        await store.create(dataplane("dp-1", "backend"))
        await until(lambda: BACKEND in follower.snapshot.vips, "follower sees backend")
        assert follower.snapshot.vips == leader.snapshot.vips
        assert follower.snapshot.names.records == leader.snapshot.names.records

        leader.set_writer(False)
        follower.set_writer(True)
        await store.create(dataplane("dp-2", "web"))
        web = VipKey("default", "web")
        await until(lambda: web in leader.snapshot.vips, "old leader follows")
        assert follower.snapshot.vips == leader.snapshot.vips
        assert follower.snapshot.vips[BACKEND] == "127.1.0.1"
        assert len(set(follower.snapshot.vips.values())) == 4  # backend, web and their pins
        stored = await store.get("VirtualIPs", "default", ZONE)
        assert set(stored.spec["services"]) == {"backend", "web"}
    finally:
        await follower.stop()
        await leader.stop()


async def test_an_exhausted_range_is_logged_and_counted_never_duplicated(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    services = ZoneServices(store, ZONE, ipaddress.IPv4Network("10.0.0.0/30"))  # 2 addresses
    await services.start()
    try:
        await store.create(dataplane("dp-1", "backend", "web"))
        await until(lambda: services.snapshot.unallocated, "exhaustion")
        vips = services.snapshot.vips
        assert len(vips) == 2 and len(set(vips.values())) == 2
        assert len(services.snapshot.unallocated) == 2
        assert "VIP range 10.0.0.0/30 is exhausted" in caplog.text
        metrics = {
            m.name: m.samples[0].value
            for m in services.collector().collect()
            if len(m.samples) == 1
        }
        assert metrics["meshfed_vips_unallocated"] == 2
        assert metrics["meshfed_vip_allocation_failures"] >= 2
        assert metrics["meshfed_vip_capacity"] == 2
    finally:
        await services.stop()
