"""Zone DNS in a real federation: one global and two zones (real processes, `dig`), a backend
that lives in zone-2 only, VIPs that stay put through removals, restarts, a killed global and
a thousand services coming and going."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, DNSRecord

from meshfed.vip_ranges import zone_vip_cidr
from tests.integration.federation_support import Cluster, Http, Node, dataplane
from tests.integration.test_dns_server import dig
from tests.support import VENV_BIN, Procs, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
]

BACKEND_DP = "/meshes/default/dataplanes/backend-1"
SERVICES = "/meshes/default/services"


@dataclass
class Zone:
    node: Node
    dns: int
    cidr: IPv4Network

    @property
    def http(self) -> Http:
        return self.node.http


@dataclass
class Federation:
    cluster: Cluster
    z1: Zone
    z2: Zone


@pytest.fixture
def fed(procs: Procs, tmp_path: Path) -> Iterator[Federation]:
    """Global + zone-1 + zone-2, each zone with its own DNS port and VIP range (as `meshctl
    up` lays them out), and a ZoneIngress registered in zone-2 by the operator."""
    cluster = Cluster.create(procs, tmp_path)
    zones = []
    for index, node in enumerate(cluster.zones.values()):
        port, cidr = free_port(), zone_vip_cidr(index)
        node.argv += ["--dns-address", f"127.0.0.1:{port}", "--vip-cidr", str(cidr)]
        zones.append(Zone(node, port, cidr))
    cluster.start()
    cluster.wait_online()
    networking = {"address": "127.0.0.1", "port": free_port()}
    ingress = {"type": "ZoneIngress", "name": "zi-2", "networking": networking}
    zones[1].http.put("/zoneingresses/zi-2", ingress)
    yield Federation(cluster, zones[0], zones[1])


def query(zone: Zone, name: str, qtype: str = "A") -> tuple[str, list[str]]:
    """(rcode, addresses) straight from the zone's DNS over UDP: cheap enough to poll."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(DNSRecord.question(name, qtype).pack(), ("127.0.0.1", zone.dns))
        try:
            reply = DNSRecord.parse(sock.recv(4096))
        except TimeoutError:  # a busy machine; callers poll again
            return "TIMEOUT", []
    return RCODE.get(reply.header.rcode), [str(rr.rdata) for rr in reply.rr]


def resolves(zone: Zone, name: str) -> str | None:
    rcode, addresses = query(zone, name)
    return addresses[0] if rcode == "NOERROR" and len(addresses) == 1 else None


def gone(zone: Zone, name: str) -> bool:
    return query(zone, name)[0] == "NXDOMAIN"


def service(zone: Zone, name: str) -> dict[str, Any] | None:
    items = zone.http.get(SERVICES)["items"]
    return next((i for i in items if i["service"] == name), None)


def vips(fed: Federation) -> dict[str, str | None]:
    """Every VIP of `backend` the zones answer with, by name and zone."""
    return {
        "zone-1 backend.mesh": resolves(fed.z1, "backend.mesh"),
        "zone-1 backend.zone-2.mesh": resolves(fed.z1, "backend.zone-2.mesh"),
        "zone-2 backend.mesh": resolves(fed.z2, "backend.mesh"),
        "zone-2 backend.zone-2.mesh": resolves(fed.z2, "backend.zone-2.mesh"),
    }


def all_resolved(fed: Federation) -> dict[str, str | None] | None:
    found = vips(fed)
    return found if all(found.values()) else None


def timed(check: Any, limit: float, what: str) -> float:
    """Seconds until `check` holds (polled every 10 ms); fails beyond `limit`."""
    start = time.monotonic()
    wait_until(check, timeout=10, interval=0.01, what=what)
    elapsed = time.monotonic() - start
    assert elapsed < limit, f"{what} took {elapsed:.2f}s"
    return elapsed


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "meshctl"), *args], capture_output=True, text=True, timeout=30
    )


def test_a_backend_in_zone_2_resolves_in_both_zones_and_follows_changes(fed: Federation) -> None:
    z1, z2 = fed.z1, fed.z2
    z2.http.put(BACKEND_DP, dataplane("backend-1", service="backend"))
    found = wait_until(lambda: all_resolved(fed), timeout=10, what="backend in both zones")

    # Each zone answers with its own VIP, from its own range; zone-2's pinned name resolves
    # in zone-1 too.
    a1, a2 = dig(z1.dns, "backend.mesh"), dig(z2.dns, "backend.mesh")
    assert a1.status == a2.status == "NOERROR", (a1.output, a2.output)
    assert a1.addresses == [found["zone-1 backend.mesh"]]
    assert a2.addresses == [found["zone-2 backend.mesh"]]
    assert IPv4Address(a1.addresses[0]) in z1.cidr and IPv4Address(a2.addresses[0]) in z2.cidr
    assert a1.records[0].split()[1] == "30" and "aa" in a1.flags
    pinned = dig(z1.dns, "backend.zone-2.mesh")
    assert pinned.status == "NOERROR" and pinned.addresses != a1.addresses
    assert dig(z1.dns, "nosuch.mesh").status == "NXDOMAIN"
    assert dig(z2.dns, "nosuch.mesh").status == "NXDOMAIN"
    aaaa = dig(z1.dns, "backend.mesh", "AAAA")
    assert aaaa.status == "NOERROR" and aaaa.records == []
    tcp = dig(z1.dns, "backend.mesh", "A", "+tcp")
    assert tcp.status == "NOERROR" and tcp.addresses == a1.addresses
    assert dig(z1.dns, "example.com").status == "REFUSED"  # no --dns-upstream

    # The services views: each zone's own, and the global's with both zones' VIPs.
    in_zone_1 = service(z1, "backend")
    assert in_zone_1 is not None
    assert in_zone_1["zones"] == [{"zone": "zone-2", "instances": 1}]
    assert in_zone_1["vip"] == a1.addresses[0]
    assert in_zone_1["zoneVips"] == {"zone-2": pinned.addresses[0]}
    glob = fed.cluster.glob.http

    def global_view() -> Any:
        items = glob.get(SERVICES)["items"]
        backend = next((i for i in items if i["service"] == "backend"), None)
        return backend if backend and len(backend["vips"]) == 2 else None

    at_global = wait_until(global_view, timeout=10, what="global services view")
    assert at_global["zones"] == [{"zone": "zone-2", "instances": 1}]
    assert at_global["vips"] == {"zone-1": a1.addresses[0], "zone-2": a2.addresses[0]}

    # meshctl shows the same, and resolves through the zone's DNS (found via its API).
    table = meshctl("inspect", "services", "--api", z1.node.url)
    assert table.returncode == 0, table.stderr
    assert "backend" in table.stdout and a1.addresses[0] in table.stdout
    resolved = meshctl("resolve", "backend.mesh", "--zone", "zone-1", "--api", z1.node.url)
    assert resolved.returncode == 0, resolved.stderr
    assert a1.addresses[0] in resolved.stdout
    assert "served by zone-2 (1 instance)" in resolved.stdout
    missing = meshctl("resolve", "nosuch.mesh", "--zone", "zone-1", "--api", z1.node.url)
    assert missing.returncode == 1 and "NXDOMAIN" in missing.stderr

    # Removed: gone from both zones within a second. Back: the same VIPs, as fast.
    z2.http.delete(BACKEND_DP)
    timed(lambda: gone(z1, "backend.mesh") and gone(z2, "backend.mesh"), 1.0, "backend gone")
    assert gone(z1, "backend.zone-2.mesh")
    z2.http.put(BACKEND_DP, dataplane("backend-1", service="backend"))
    timed(lambda: vips(fed) == found, 1.0, "backend back with the same VIPs")


def bulk(count: int) -> dict[str, Any]:
    """One Dataplane with `count` inbounds, each its own service."""
    inbound = [{"port": 20000 + i, "tags": {"kuma.io/service": f"svc-{i}"}} for i in range(count)]
    return {
        "type": "Dataplane",
        "name": "bulk",
        "mesh": "default",
        "networking": {"address": "127.0.0.1", "inbound": inbound},
    }


def test_vips_survive_restarts_a_killed_global_and_a_thousand_services(fed: Federation) -> None:
    cluster, z1, z2 = fed.cluster, fed.z1, fed.z2
    z2.http.put(BACKEND_DP, dataplane("backend-1", service="backend"))
    found = wait_until(lambda: all_resolved(fed), timeout=10, what="backend in both zones")

    def unchanged(when: str) -> None:
        """Polled only to ride out a slow answer on a busy machine: any other VIP, even once,
        fails."""
        seen: list[dict[str, str | None]] = []

        def same() -> bool:
            seen.append(vips(fed))
            return bool(seen[-1] == found)

        wait_until(same, timeout=10, what=f"the same VIPs {when}")
        wrong = [v for answer in seen for k, v in answer.items() if v and v != found[k]]
        assert not wrong, f"other VIPs {when}: {wrong}"

    for zone in (z1, z2):
        cluster.stop(zone.node)
        cluster.start(zone.node)
        unchanged(f"after restarting {zone.node.name}")

    cluster.stop(cluster.glob, signal.SIGKILL)
    unchanged("with the global killed")  # the zones answer on their own
    cluster.start(cluster.glob)
    cluster.wait_online()
    unchanged("after the global restarted")

    # The backend leaves; a thousand services come and go; the backend returns to its VIPs.
    z2.http.delete(BACKEND_DP)
    wait_until(lambda: gone(z1, "backend.mesh"), timeout=10, what="backend gone")
    z2.http.put("/meshes/default/dataplanes/bulk", bulk(1000))
    wait_until(lambda: resolves(z1, "svc-999.mesh"), timeout=60, what="1000 services in zone-1")
    new_vips = {resolves(z1, f"svc-{i}.mesh") for i in (0, 500, 999)}
    assert not new_vips & set(found.values())
    z2.http.delete("/meshes/default/dataplanes/bulk")
    wait_until(lambda: gone(z1, "svc-999.mesh"), timeout=60, what="1000 services gone")
    z2.http.put(BACKEND_DP, dataplane("backend-1", service="backend"))
    wait_until(lambda: all_resolved(fed), timeout=10, what="backend back")
    unchanged("after 1,000 services came and went")

    # The reservations are in each zone's VirtualIPs, and the global has every zone's copy.
    at_zone = z1.http.get("/meshes/default/virtualips/zone-1")
    assert at_zone["spec"]["services"]["backend"]["vip"] == found["zone-1 backend.mesh"]
    assert len(at_zone["spec"]["reserved"]) >= 2000
    at_global = cluster.glob.http.items("/meshes/default/virtualips")
    assert sorted(i["labels"]["kuma.io/zone"] for i in at_global) == ["zone-1", "zone-2"]
