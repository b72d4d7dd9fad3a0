"""A whole mesh on loopback for the cross-zone tests (this module has no tests).

Real processes throughout: a global-cp, zone-cps (each with its DNS and dataplane config
server on free ports and its own random VIP range), `mesh_dp.echo` applications, mesh-dp
sidecars and zone-ingresses configured by their zone-cp over the config stream (`--cp`), not
from files. The mesh gets builtin mTLS through the global's API, as a user would set it.

Workload and VIP addresses are random 127.x.y.z so parallel tests never meet. Callers reach
a service the way an application does: resolve `<service>.mesh` through the zone's DNS, then
connect to that VIP on the service's port (`GET /meshes/default/services` says which).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import random
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from dnslib import RCODE, DNSRecord

from meshfed.resources.types import default_registry
from tests.integration.federation_support import Cluster, Http, Node
from tests.integration.test_mesh_dp_support import Addresses, admin_json
from tests.integration.token_support import dataplane_token, write_token, zone_token
from tests.support import Proc, Procs, free_port, port_open, wait_until

MESH = "default"
CA_CERT_SECRET = "default.ca-builtin-cert-ca-1"
MTLS_MESH: dict[str, Any] = {
    "type": "Mesh",
    "name": MESH,
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


def allow(name: str, service: str, caller: str) -> dict[str, Any]:
    """MeshTrafficPermission: `caller` may call `service`."""
    return {
        "type": "MeshTrafficPermission",
        "name": name,
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": service},
            "from": [
                {
                    "targetRef": {"kind": "MeshService", "name": caller},
                    "default": {"action": "Allow"},
                }
            ],
        },
    }


def random_cidr() -> ipaddress.IPv4Network:
    """A /24 inside 127.0.0.0/8, away from the /24s of Addresses (127.64-250.x.y)."""
    return ipaddress.IPv4Network(f"127.{random.randint(2, 60)}.{random.randint(0, 255)}.0/24")


def common_free_port(hosts: Sequence[str]) -> int:
    """One port number free on every host (instances of a service share their app port)."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no common free port on {hosts}")


def _hostport(arg: str) -> bool:
    host, _, port = arg.rpartition(":")
    return host.startswith(("127.", "grpc://127.")) and port.isdigit()


def _fresh_port(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


def dns_query(port: int, name: str) -> tuple[str, list[str]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(DNSRecord.question(name).pack(), ("127.0.0.1", port))
        reply = DNSRecord.parse(sock.recv(4096))
    return RCODE.get(reply.header.rcode), [str(rr.rdata) for rr in reply.rr]


@dataclass
class Zone:
    name: str
    node: Node
    dns: int
    dp: int
    cidr: ipaddress.IPv4Network

    @property
    def http(self) -> Http:
        return self.node.http

    @property
    def cp_url(self) -> str:
        return f"grpc://127.0.0.1:{self.dp}"

    def resolve(self, name: str) -> str | None:
        rcode, addresses = dns_query(self.dns, name)
        return addresses[0] if rcode == "NOERROR" and addresses else None

    def service(self, name: str) -> dict[str, Any] | None:
        items = self.http.get(f"/meshes/{MESH}/services")["items"]
        return next((i for i in items if i["service"] == name), None)


@dataclass
class Workload:
    """An echo application and its sidecar."""

    name: str
    zone: str
    service: str
    address: str  # sidecar inbound address
    port: int  # sidecar inbound port
    app: Proc
    sidecar: Proc
    admin: int
    app_address: str = ""  # where the application listens (tests talk to it directly)
    app_port: int = 0

    def stats(self) -> Any:
        return admin_json(self.admin)

    def callers(self) -> dict[str, int]:
        return dict(self.stats()["inbounds"][0]["authorized"])

    def stop(self) -> None:
        self.sidecar.stop()
        self.app.stop()


@dataclass
class Ingress:
    zone: str
    address: str
    port: int
    proc: Proc
    admin: int

    def stats(self) -> Any:
        return admin_json(self.admin)


@dataclass
class Mesh:
    procs: Procs
    root: Path
    cluster: Cluster
    zones: dict[str, Zone]
    addresses: Addresses = field(default_factory=Addresses)
    app_ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        procs: Procs,
        root: Path,
        zone_names: Sequence[str] = ("zone-1", "zone-2"),
        zone_args: Sequence[str] = (),
        global_args: Sequence[str] = (),
    ) -> Mesh:
        cluster = Cluster.create(
            procs,
            root,
            tuple(zone_names),
            global_args=tuple(global_args),
            zone_args=tuple(zone_args),
        )
        zones: dict[str, Zone] = {}
        # Ports picked but not bound yet (the cluster's) must not be picked twice.
        taken = {int(a.rsplit(":", 1)[1]) for n in cluster.nodes() for a in n.argv if _hostport(a)}
        for name, node in cluster.zones.items():
            dns, dp, cidr = _fresh_port(taken), _fresh_port(taken), random_cidr()
            node.argv += [
                "--dns-address",
                f"127.0.0.1:{dns}",
                "--dp-server-address",
                f"127.0.0.1:{dp}",
                "--vip-cidr",
                str(cidr),
            ]
            zones[name] = Zone(name, node, dns, dp, cidr)
        cluster.start()
        cluster.wait_online()
        mesh = cls(procs, root, cluster, zones)
        mesh.glob.put(f"/meshes/{MESH}", MTLS_MESH)
        return mesh

    @property
    def glob(self) -> Http:
        return self.cluster.glob.http

    def apply(self, doc: dict[str, Any]) -> None:
        plural = default_registry().get(doc["type"]).plural
        self.glob.put(f"/meshes/{MESH}/{plural}/{doc['name']}", doc)

    def dataplane_token(self, service: str, name: str = "") -> str:
        """A dataplane token for `service` (and Dataplane `name`), from the global's API."""
        admin = self.cluster.admin_token()
        return dataplane_token(self.glob.base, admin, [service], mesh=MESH, name=name)

    def ca_cert(self) -> x509.Certificate:
        secret = self.glob.get(f"/meshes/{MESH}/secrets/{CA_CERT_SECRET}")
        return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]))

    def workload(
        self,
        zone: str,
        name: str,
        service: str,
        *,
        reachable: Sequence[str] = (),
        wait: bool = True,
        app_module: str = "mesh_dp.echo",
        protocol: str | None = None,
        tags: dict[str, str] | None = None,
        outbounds: Sequence[dict[str, Any]] = (),
    ) -> Workload:
        """An app with its sidecar; `reachable`: the services its sidecar binds VIPs of
        (none by default, so many sidecars can share this host); `app_module`: the
        application (`--address`, `--name`, `--zone`); `protocol`: `kuma.io/protocol`;
        `outbounds`: the Dataplane's explicit `networking.outbound` entries."""
        address, app_address = self.addresses.next(), self.addresses.next()
        # Instances of a service share their app port (each has its own address), so the
        # service has one port callers use. A random high port on a fresh address is free.
        if service not in self.app_ports:
            self.app_ports[service] = common_free_port([app_address])
        app_port = self.app_ports[service]
        port = free_port(address)
        app = self.procs.start(
            f"app-{name}",
            [
                sys.executable,
                "-m",
                app_module,
                "--address",
                f"{app_address}:{app_port}",
                "--name",
                name,
                "--zone",
                zone,
            ],
        )
        wait_until(lambda: port_open(app_address, app_port) or not app.alive(), what=name)
        assert app.alive(), app.log()
        dataplane: dict[str, Any] = {
            "type": "Dataplane",
            "mesh": MESH,
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": port,
                        "servicePort": app_port,
                        "serviceAddress": app_address,
                        "tags": {**(tags or {}), "kuma.io/service": service}
                        | ({"kuma.io/protocol": protocol} if protocol else {}),
                    }
                ],
                "transparentProxying": {"reachableServices": list(reachable)},
            },
        }
        if outbounds:
            dataplane["networking"]["outbound"] = list(outbounds)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(dataplane))
        admin = free_port()
        token = write_token(self.root / f"{name}.token", self.dataplane_token(service, name))
        sidecar = self.procs.start(
            name,
            [
                self.procs.script("mesh-dp"),
                "run",
                "--cp",
                self.zones[zone].cp_url,
                "--dataplane-file",
                str(path),
                "--dataplane-token-file",
                str(token),
                "--admin-address",
                f"127.0.0.1:{admin}",
                "--probe-interval",
                "100ms",
                "--report-interval",
                "1s",
            ],
        )
        w = Workload(name, zone, service, address, port, app, sidecar, admin)
        w.app_address, w.app_port = app_address, app_port
        if wait:
            wait_until(lambda: _ready(admin) or not sidecar.alive(), timeout=20, what=name)
            assert sidecar.alive(), sidecar.log()
        return w

    def ingress(self, zone: str) -> Ingress:
        address = self.addresses.next()
        port, admin = free_port(address), free_port()
        token = zone_token(self.glob.base, self.cluster.admin_token(), zone, "ingress")
        token_file = write_token(self.root / f"ingress-{zone}.token", token)
        proc = self.procs.start(
            f"ingress-{zone}",
            [
                self.procs.script("zone-ingress"),
                "run",
                "--cp",
                self.zones[zone].cp_url,
                "--zone-token-file",
                str(token_file),
                "--name",
                f"ingress-{zone}",
                "--address",
                address,
                "--port",
                str(port),
                "--admin-address",
                f"127.0.0.1:{admin}",
                # Teardown stops it before the sidecars that hold connections to it: the 30 s
                # default drain would cost each test 10 s and a SIGKILL.
                "--drain-timeout",
                "1s",
            ],
        )
        wait_until(lambda: _ready(admin) or not proc.alive(), timeout=20, what=f"ingress {zone}")
        assert proc.alive(), proc.log()
        return Ingress(zone, address, port, proc, admin)

    def target(self, zone: str, service: str, *, zones: Sequence[str] = ()) -> tuple[str, int]:
        """(VIP, port) of `service` as `zone` resolves it, once the zone's catalog lists it
        (in every zone of `zones`, when given)."""

        def found() -> tuple[str, int] | None:
            entry = self.zones[zone].service(service)
            if entry is None or entry["port"] is None:
                return None
            have = {z["zone"] for z in entry["zones"]}
            if not set(zones) <= have:
                return None
            vip = self.zones[zone].resolve(f"{service}.mesh")
            return None if vip is None else (vip, int(entry["port"]))

        vip, port = wait_until(found, timeout=20, interval=0.05, what=f"{service}.mesh in {zone}")
        return str(vip), int(port)


def _ready(admin: int) -> bool:
    try:
        return bool(admin_json(admin, "/ready")["ready"])
    except OSError:
        return False


def get(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """One HTTP request on a new connection; the echo's JSON answer (raises on failure)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        answer: dict[str, Any] = json.loads(body)
        return answer
    finally:
        conn.close()


def try_get(host: str, port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    try:
        return get(host, port, timeout)
    except (OSError, http.client.HTTPException, ValueError):
        return None


def answered_by(host: str, port: int, zone: str) -> bool:
    answer = try_get(host, port)
    return answer is not None and answer["zone"] == zone
