"""Cross-zone calls with real control planes (issue 5's acceptance): a global, two zones, echo
applications with mesh-dp sidecars and zone-ingresses configured over the config stream, real
mTLS from the mesh CA the global created, names resolved through the zone's DNS.

- web (zone-1) -> backend.mesh, backend only in zone-2: every request crosses through
  zone-2's ingress and names zone-2; the backend sidecars saw spiffe://default/web;
- the ingress closes garbage and keeps serving; callers with another CA's certificate or
  none are refused by the backend sidecar; removing the allow refuses new connections
  within a second;
- local preference and failover; killing the global during steady traffic fails nothing
  and DNS keeps answering;
- certificate rotation (10 s validity) under a long-lived connection.
"""

from __future__ import annotations

import http.client
import ipaddress
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf
from meshfed.pki.tls import client_context
from tests.integration.test_cross_zone_support import (
    Mesh,
    allow,
    answered_by,
    get,
    try_get,
)
from tests.integration.test_mesh_dp_support import closed_without_data
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration


def refused(ctx: ssl.SSLContext, host: str, port: int) -> bool:
    """The server refuses the caller: a failed handshake or a close before any answer."""
    with socket.create_connection((host, port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
                return closed_without_data(tls)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True


def test_cross_zone_through_the_ingress_with_permissions(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    backends = [mesh.workload("zone-2", f"backend-z2-{i}", "backend") for i in (1, 2)]
    ingress = mesh.ingress("zone-2")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    assert ipaddress.IPv4Address(vip) in mesh.zones["zone-1"].cidr
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="first answer")
    before = sum(sum(b.callers().values()) for b in backends)

    answers = [get(vip, port) for _ in range(100)]

    assert {a["zone"] for a in answers} == {"zone-2"}
    assert {a["instance"] for a in answers} == {"backend-z2-1", "backend-z2-2"}
    callers: dict[str, int] = {}
    for b in backends:
        for caller, n in b.callers().items():
            callers[caller] = callers.get(caller, 0) + n
    assert callers == {"spiffe://default/web": before + 100}
    routed = {s["service"]: s["connectionsTotal"] for s in ingress.stats()["services"]}
    assert routed["backend"] >= 100

    # The ingress closes what is not a ClientHello for a service it routes, and goes on.
    with socket.create_connection((ingress.address, ingress.port), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage, not a ClientHello" * 20)
        assert closed_without_data(raw)
    assert get(vip, port)["zone"] == "zone-2"

    # The backend sidecar refuses a certificate from another CA, and no certificate at all.
    trust = mesh.ca_cert()
    target = backends[0]
    foreign = client_context(issue_leaf(create_mesh_ca("default"), "web"), trust)
    assert refused(foreign, target.address, target.port)
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=trust.public_bytes(Encoding.PEM).decode())
    assert refused(bare, target.address, target.port)

    # Remove the allow: with mTLS on and no policy, callers are denied; within a second.
    mesh.glob.delete("/meshes/default/meshtrafficpermissions/web-to-backend")
    removed = time.monotonic()
    wait_until(lambda: try_get(vip, port, timeout=2) is None, timeout=5, interval=0.02)
    assert time.monotonic() - removed < 1.0
    denied = wait_until(
        lambda: sum(sum(b.stats()["inbounds"][0]["denied"].values()) for b in backends),
        what="a denial counted by a backend sidecar",
    )
    assert denied >= 1
    assert all(try_get(vip, port, timeout=2) is None for _ in range(5))
    assert web.stats()["source"]["state"] == "connected"

    # What the zones registered went up to the global (KDS), labelled with their zone.
    dataplanes = {d["labels"]["kuma.io/display-name"]: d for d in mesh.glob.items("/dataplanes")}
    assert dataplanes["web-1"]["labels"]["kuma.io/zone"] == "zone-1"
    assert dataplanes["backend-z2-1"]["labels"]["kuma.io/zone"] == "zone-2"

    def web_insight() -> dict[str, Any] | None:
        for item in mesh.glob.items("/dataplane-insights"):
            if item["labels"].get("kuma.io/display-name") != "web-1":
                continue
            if item["subscriptions"][-1]["config"]["acknowledged"]:
                return dict(item)
        return None

    insights = wait_until(web_insight, timeout=20, what="web-1's insight (ACKed) at the global")
    assert insights["mTLS"]["issuedBackend"] == "ca-1"


def test_local_first_failover_and_a_dead_global(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    local = mesh.workload("zone-1", "backend-z1", "backend")
    mesh.workload("zone-2", "backend-z2", "backend")
    mesh.ingress("zone-2")
    mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-1", "zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-1"), timeout=20, what="local answer")

    # Local first: with an instance in zone-1, nothing crosses.
    assert {get(vip, port)["zone"] for _ in range(30)} == {"zone-1"}

    # Stop zone-1's instance (app and sidecar): requests move to zone-2.
    results: list[str | None] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            answer = try_get(vip, port, timeout=3)
            results.append(None if answer is None else answer["zone"])

    caller = threading.Thread(target=traffic, daemon=True)
    caller.start()
    try:
        wait_until(lambda: len(results) >= 10, what="steady traffic")
        stopped_at = len(results)
        local.stop()
        wait_until(lambda: "zone-2" in results[stopped_at:], timeout=15, what="failover")
        switched = stopped_at + results[stopped_at:].index("zone-2")
        wait_until(lambda: len(results) >= switched + 50, what="traffic after the switch")
    finally:
        stop.set()
        caller.join(10)
    assert results[:stopped_at] == ["zone-1"] * stopped_at
    assert results[switched:] == ["zone-2"] * len(results[switched:]), results[stopped_at:]
    # The switch-over window: requests in flight on the instance that went away.
    assert results[stopped_at:switched].count(None) <= 3, results[stopped_at:switched]

    # Kill the global during steady traffic: zones keep serving from what they hold.
    ca_before = mesh.ca_cert()
    results.clear()
    stop.clear()
    caller = threading.Thread(target=traffic, daemon=True)
    caller.start()
    try:
        wait_until(lambda: len(results) >= 10, what="steady traffic")
        mesh.cluster.stop(mesh.cluster.glob, signal.SIGKILL)
        killed_at = len(results)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert mesh.zones["zone-1"].resolve("backend.mesh") == vip
            time.sleep(0.1)
        wait_until(lambda: len(results) >= killed_at + 20, what="traffic without the global")
    finally:
        stop.set()
        caller.join(10)
    assert results == ["zone-2"] * len(results)

    # The global comes back with the same CA (created once, never regenerated): nothing is
    # reissued, and traffic goes on.
    mesh.cluster.start(mesh.cluster.glob)
    mesh.cluster.wait_online()
    assert mesh.ca_cert() == ca_before
    assert get(vip, port)["zone"] == "zone-2"


def test_certificate_rotation_under_a_long_lived_connection(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path, ("zone-1",), zone_args=("--dp-cert-validity", "4s"))
    mesh.apply(allow("web-to-backend", "backend", "web"))
    backend = mesh.workload("zone-1", "backend-1", "backend")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend")
    wait_until(lambda: answered_by(vip, port, "zone-1"), timeout=20, what="first answer")
    serials = {backend.stats()["certificate"]["serial"]}
    web_serials = {web.stats()["certificate"]["serial"]}

    conn = http.client.HTTPConnection(vip, port, timeout=5)
    conn.connect()
    sock = conn.sock
    deadline = time.monotonic() + 8  # two rotations (at 3.2 s and 6.4 s of each certificate)
    requests = 0
    while time.monotonic() < deadline:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        assert conn.sock is sock  # the very same connection, never reopened
        requests += 1
        serials.add(backend.stats()["certificate"]["serial"])
        web_serials.add(web.stats()["certificate"]["serial"])
        time.sleep(0.2)
    conn.close()
    assert len(serials) >= 3 and len(web_serials) >= 3, (serials, web_serials)
    assert backend.stats()["inbounds"][0]["connectionsTotal"] >= 1
    assert requests > 20
