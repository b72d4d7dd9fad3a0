"""Helpers for the mesh-dp and zone-ingress integration tests (this module has no tests).

`Scenario` builds a mesh the way zone-cp would, from resources: Dataplanes per zone, each
zone's ZoneIngress with the availableServices its instances give it, VIPs, policies, and
certificates from a real mesh CA (meshfed.pki); then `meshfed.dpconfig.build` makes the
sidecar and ingress configs. `Launcher` runs the real processes from those configs in static
mode (`--config-file`): mesh-dp sidecars, zone-ingresses, and `mesh_dp.echo` applications.

Every address is a fresh loopback address (127.x.y.z, random per test) so tests never clash
with each other or with anything else listening on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import random
import socket
import ssl
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshfed.dpconfig.build import build_ingress_config, build_sidecar_config
from meshfed.dpconfig.catalog import VipKey, available_services, build_catalog
from meshfed.dpconfig.model import IngressConfig, Outbound, SidecarConfig
from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.leaf import Leaf, issue_leaf
from meshfed.resources.model import Resource
from tests.support import Proc, Procs, free_port, port_open, wait_until
from tests.unit.policy.factories import (
    MESH_REF,
    dataplane,
    frm,
    inbound,
    mesh_resource,
    mtp,
    zone_ingress,
)

MESH = "default"
ALLOW_ALL = mtp("allow-all", MESH_REF, from_=[frm(MESH_REF, "Allow")])


class Addresses:
    """Fresh loopback addresses: one random /24 per test inside 127.64.0.0-127.250.255.255."""

    def __init__(self) -> None:
        self._prefix = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self._next = itertools.count(1)

    def next(self) -> str:
        n = next(self._next)
        if n > 254:
            raise RuntimeError("more than 254 addresses in one test")
        return f"{self._prefix}.{n}"


@dataclass
class Instance:
    name: str
    zone: str
    service: str
    address: str  # sidecar inbound address
    port: int  # sidecar inbound port
    app_address: str
    app_port: int
    dataplane: Resource


@dataclass
class IngressSpot:
    zone: str
    name: str
    address: str
    port: int


@dataclass
class Scenario:
    mtls: bool = True
    ca: MeshCA = field(default_factory=lambda: create_mesh_ca(MESH))
    addresses: Addresses = field(default_factory=Addresses)
    instances: dict[str, Instance] = field(default_factory=dict)
    ingresses: dict[str, IngressSpot] = field(default_factory=dict)
    vips: dict[str, dict[VipKey, str]] = field(default_factory=dict)
    policies: dict[str, list[Resource]] = field(
        default_factory=lambda: {"MeshTrafficPermission": [ALLOW_ALL]}
    )

    @property
    def mesh(self) -> Resource:
        return mesh_resource(MESH, mtls=self.mtls)

    def add_instance(
        self, name: str, zone: str, service: str, tags: dict[str, str] | None = None
    ) -> Instance:
        address = self.addresses.next()
        app_address = self.addresses.next()
        port, app_port = free_port(address), free_port(app_address)
        dp = dataplane(
            name,
            inbound(
                service, port, servicePort=app_port, serviceAddress=app_address, tags=tags or {}
            ),
            address=address,
        )
        inst = Instance(name, zone, service, address, port, app_address, app_port, dp)
        self.instances[name] = inst
        return inst

    def add_ingress(self, zone: str) -> IngressSpot:
        address = self.addresses.next()
        spot = IngressSpot(zone, f"ingress-{zone}", address, free_port(address))
        self.ingresses[zone] = spot
        return spot

    def add_policy(self, policy: Resource) -> None:
        self.policies.setdefault(policy.type, []).append(policy)

    def set_policies(self, policy_type: str, policies: Sequence[Resource]) -> None:
        self.policies[policy_type] = list(policies)

    def vip(self, zone: str, service: str, pinned: str | None = None) -> str:
        table = self.vips.setdefault(zone, {})
        key = VipKey(MESH, service, pinned)
        if key not in table:
            table[key] = self.addresses.next()
        return table[key]

    def dataplanes(self, zone: str) -> list[Resource]:
        return [i.dataplane for i in self.instances.values() if i.zone == zone]

    def ingress_resources(self) -> list[Resource]:
        return [
            zone_ingress(
                s.name,
                s.zone,
                s.address,
                s.port,
                available_services(self.dataplanes(s.zone), s.zone),
            )
            for s in self.ingresses.values()
        ]

    def leaf(self, service: str, validity: dt.timedelta = dt.timedelta(hours=1)) -> Leaf:
        return issue_leaf(self.ca, service, validity=validity)

    def sidecar_config(
        self, instance: Instance, cert: Leaf | None = None, **kwargs: Any
    ) -> SidecarConfig:
        zone = instance.zone
        catalog = build_catalog(zone, self.dataplanes(zone), self.ingress_resources())
        for entry in catalog.services(MESH):
            self.vip(zone, entry.service)
        if self.mtls and cert is None:
            cert = self.leaf(instance.service)
        return build_sidecar_config(
            instance.dataplane,
            zone,
            self.mesh,
            catalog,
            self.vips.get(zone, {}),
            self.policies,
            cert if self.mtls else None,
            **kwargs,
        )

    def callee_config(self, instance: Instance, cert: Leaf | None = None) -> SidecarConfig:
        """A sidecar that calls nobody: it binds no VIP, so many can share one host."""
        return self.sidecar_config(instance, cert, reachable=())

    def ingress_config(self, zone: str) -> IngressConfig:
        spot = self.ingresses[zone]
        resource = next(r for r in self.ingress_resources() if r.meta.name == spot.name)
        catalog = build_catalog(zone, self.dataplanes(zone), self.ingress_resources())
        return build_ingress_config(resource, zone, catalog, {MESH: self.mesh})


def outbound(config: SidecarConfig, service: str, zone: str | None = None) -> Outbound:
    return next(o for o in config.outbounds if o.service == service and o.zone == zone)


def http_get(
    host: str, port: int, path: str = "/", timeout: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """One request on a new connection; (status, JSON body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def admin_json(port: int, path: str = "/stats") -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


def recv_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def closed_without_data(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closed (EOF or reset) before sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


@dataclass
class SidecarProc:
    proc: Proc
    admin: int
    config_path: Path
    config: SidecarConfig

    def stats(self) -> Any:
        return admin_json(self.admin)

    def inbound(self, index: int = 0) -> Any:
        return self.stats()["inbounds"][index]

    def outbound(self, service: str) -> Any:
        return next(o for o in self.stats()["outbounds"] if o["service"] == service)

    def reload(self, config: SidecarConfig) -> None:
        """Writes the new config and sends SIGHUP; returns once it runs."""
        import signal

        before = self.stats()["source"]["reloads"]
        self.config_path.write_bytes(config.to_bytes())
        self.proc.signal(signal.SIGHUP)
        wait_until(
            lambda: (
                self.stats()["source"]["reloads"] > before
                or self.stats()["source"]["failedReloads"] > 0
            ),
            what="reload",
        )
        self.config = config


@dataclass
class IngressProc:
    proc: Proc
    admin: int
    address: str
    port: int
    config_path: Path

    def stats(self) -> Any:
        return admin_json(self.admin)


class Launcher:
    def __init__(self, procs: Procs, tmp: Path) -> None:
        self.procs = procs
        self.tmp = tmp

    def echo(self, instance: Instance, mode: str = "http", *, at_inbound: bool = False) -> Proc:
        """The instance's application; `at_inbound`: listening where its sidecar would (for
        plain-TCP tests of a caller's outbound without a callee sidecar)."""
        host, port = (
            (instance.address, instance.port)
            if at_inbound
            else (instance.app_address, instance.app_port)
        )
        proc = self.procs.start(
            f"echo-{instance.name}",
            [
                sys.executable,
                "-m",
                "mesh_dp.echo",
                "--address",
                f"{host}:{port}",
                "--name",
                instance.name,
                "--zone",
                instance.zone,
                "--mode",
                mode,
            ],
        )
        wait_until(lambda: port_open(host, port) or not proc.alive(), what=f"echo {instance.name}")
        assert proc.alive(), proc.log()
        return proc

    def sidecar(
        self, name: str, config: SidecarConfig, *extra: str, wait: bool = True
    ) -> SidecarProc:
        path = self.tmp / f"{name}.json"
        path.write_bytes(config.to_bytes())
        admin = free_port()
        proc = self.procs.start(
            name,
            [
                self.procs.script("mesh-dp"),
                "run",
                "--config-file",
                str(path),
                "--admin-address",
                f"127.0.0.1:{admin}",
                "--log-level",
                "debug",
                *extra,
            ],
        )
        sidecar = SidecarProc(proc, admin, path, config)
        if wait:
            wait_until(lambda: _ready(admin) or not proc.alive(), what=f"sidecar {name}")
            assert proc.alive(), proc.log()
        return sidecar

    def ingress(
        self, spot: IngressSpot, config: IngressConfig, *extra: str, wait: bool = True
    ) -> IngressProc:
        path = self.tmp / f"{spot.name}.json"
        path.write_bytes(config.to_bytes())
        admin = free_port()
        proc = self.procs.start(
            spot.name,
            [
                self.procs.script("zone-ingress"),
                "run",
                "--config-file",
                str(path),
                "--address",
                spot.address,
                "--port",
                str(spot.port),
                "--admin-address",
                f"127.0.0.1:{admin}",
                "--log-level",
                "debug",
                "--drain-timeout",  # teardown: no 30 s drain (a test's `extra` may set its own)
                "1s",
                *extra,
            ],
        )
        ingress = IngressProc(proc, admin, spot.address, spot.port, path)
        if wait:
            wait_until(lambda: _ready(admin) or not proc.alive(), what=f"ingress {spot.name}")
            assert proc.alive(), proc.log()
        return ingress


def _ready(admin: int) -> bool:
    try:
        return bool(admin_json(admin, "/ready")["ready"])
    except OSError:
        return False
