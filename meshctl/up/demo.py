"""`meshctl up --demo`: a working mesh on top of the local federation, to call right away.

What it adds (all real processes, supervised like the control planes):

- zone-2: `backend` twice (mesh_dp.echo, which answers with its instance and zone), each
  with a mesh-dp sidecar, and a zone-ingress; every service is tagged
  `kuma.io/protocol: http`, so the sidecars run their HTTP/1.1 path;
- zone-1: one more `backend` instance, a client `web` with a sidecar (the only one that binds
  VIPs: it is the one a user calls through), and a zone-ingress;
- at the global: Mesh `default` with builtin mTLS (its CA is created there and synced to the
  zones), a MeshTrafficPermission allowing web -> backend, a MeshAccessLog writing every
  sidecar's requests to `<up dir>/demo/access.log` and a MeshMetric serving each sidecar's
  metrics for Prometheus on its address, port 5670.

Every workload has its own loopback address, so fixed ports serve them all: the app on 8080,
its sidecar's inbound on 18080, the sidecar's admin on 9901, an ingress on 10001 (admin 9902).
A demo lives in one 127.N.0.0/16 (`DemoNet`): 127.N.i.h for the i-th zone's workloads and
ingress, 127.N.128+i.0/24 for its VIPs. `up` takes the first N from 200 that no other demo
claims and where none of those listeners is bound, so two demos on one host run side by side.
The sidecars and ingresses get their configs from their zone-cp over the config stream, so they
keep retrying until the zone and the mesh CA are there; the resources are applied as soon as
the global answers.

Every sidecar and ingress authenticates to its zone-cp: once the global answers, the demo
issues their tokens with the global's admin token (meshctl/up/tokens.py) into
`<up dir>/demo/tokens/`, and the proxies, which read their token file at every connection
attempt, connect as soon as it is there.

`try_commands` is what the banner prints: one line resolving `backend.mesh` through zone-1's
DNS and calling it through web's sidecar (the answer names the zone that served it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from meshctl.errors import CliError
from meshctl.up.state import ComponentRecord
from meshctl.up.tokens import (
    DEMO_VALIDITY,
    TokenIssueError,
    dataplane_token,
    proxy_token_file,
    read_admin_token,
    save,
    zone_ingress_token,
)

ROLE_DEMO: Final = "demo"
MESH: Final = "default"
APP_PORT: Final = 8080
INBOUND_PORT: Final = 18080
SIDECAR_ADMIN_PORT: Final = 9901
INGRESS_PORT: Final = 10001
INGRESS_ADMIN_PORT: Final = 9902
INGRESS_HOST: Final = 100  # last octet of a zone's ingress address
DEMO_NET_FIRST: Final = 200  # second octets tried for a demo's 127.N.0.0/16, in order
DEMO_NET_LAST: Final = 254
_VIP_OCTET: Final = 128  # 127.N.128+i.0/24: the i-th zone's VIPs
APPLY_TIMEOUT: Final = 60.0

DEMO_RESOURCES: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    (
        f"/meshes/{MESH}",
        {
            "type": "Mesh",
            "name": MESH,
            "mtls": {
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin"}],
            },
        },
    ),
    (
        f"/meshes/{MESH}/meshtrafficpermissions/web-to-backend",
        {
            "type": "MeshTrafficPermission",
            "name": "web-to-backend",
            "mesh": MESH,
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "from": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "web"},
                        "default": {"action": "Allow"},
                    }
                ],
            },
        },
    ),
)


METRICS_PORT: Final = 5670  # Kuma's default port for a MeshMetric Prometheus backend
ACCESS_LOG: Final = "access.log"  # in `<up dir>/demo/`, one file all the sidecars append to


def access_log_path(data_dir: Path) -> Path:
    return data_dir / "demo" / ACCESS_LOG


def observability_resources(log_file: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
    """A MeshAccessLog (every sidecar's requests, both directions, to `log_file`) and a
    MeshMetric (each sidecar serves its metrics for Prometheus on its own address, port
    METRICS_PORT), as Kuma's examples do (issue 18). Not in DEMO_RESOURCES: the file's path is
    this `up`'s, and the compose deployment reads DEMO_RESOURCES as they are."""
    backends = [{"type": "File", "file": {"path": str(log_file)}}]
    everyone = {"kind": "Mesh"}
    return (
        (
            f"/meshes/{MESH}/meshaccesslogs/demo-access-log",
            {
                "type": "MeshAccessLog",
                "name": "demo-access-log",
                "mesh": MESH,
                "spec": {
                    "targetRef": everyone,
                    "from": [{"targetRef": everyone, "default": {"backends": backends}}],
                    "to": [{"targetRef": everyone, "default": {"backends": backends}}],
                },
            },
        ),
        (
            f"/meshes/{MESH}/meshmetrics/demo-metrics",
            {
                "type": "MeshMetric",
                "name": "demo-metrics",
                "mesh": MESH,
                "spec": {
                    "targetRef": everyone,
                    "default": {
                        "backends": [
                            {
                                "type": "Prometheus",
                                "prometheus": {"port": METRICS_PORT, "path": "/metrics"},
                            }
                        ]
                    },
                },
            },
        ),
    )


@dataclass(frozen=True, slots=True)
class DemoPrograms:
    python: str
    mesh_dp: str
    zone_ingress: str


@dataclass(frozen=True, slots=True)
class Workload:
    zone: str
    name: str
    service: str
    address: str
    reachable: tuple[str, ...] = ()  # services whose VIPs its sidecar binds


@dataclass(frozen=True, slots=True)
class DemoNet:
    """The 127.N.0.0/16 one demo's addresses come from (N = `octet`)."""

    octet: int

    def __post_init__(self) -> None:
        if not DEMO_NET_FIRST <= self.octet <= DEMO_NET_LAST:
            raise ValueError(f"must be from {DEMO_NET_FIRST} to {DEMO_NET_LAST}, got {self.octet}")

    @property
    def cidr(self) -> str:
        return f"127.{self.octet}.0.0/16"

    def address(self, zone_index: int, host: int) -> str:
        return f"127.{self.octet}.{zone_index}.{host}"

    def vip_cidr(self, zone_index: int) -> ipaddress.IPv4Network:
        """The zone's VIP range: web's sidecar binds backend's VIP, so two demos' VIPs must
        differ as much as their workloads' addresses."""
        return ipaddress.IPv4Network(f"127.{self.octet}.{_VIP_OCTET + zone_index}.0/24")


def workloads(zones: Sequence[str], net: DemoNet) -> list[Workload]:
    """zone-1: backend-z1-1 and web-1; zone-2: backend-z2-1 and backend-z2-2."""
    if len(zones) < 2:
        raise CliError("--demo needs at least 2 zones (it calls from zone-1 into zone-2)")
    z1, z2 = zones[0], zones[1]
    return [
        Workload(z2, "backend-z2-1", "backend", net.address(1, 1)),
        Workload(z2, "backend-z2-2", "backend", net.address(1, 2)),
        Workload(z1, "backend-z1-1", "backend", net.address(0, 1)),
        Workload(z1, "web-1", "web", net.address(0, 2), reachable=("backend",)),
    ]


def listeners(zones: Sequence[str], net: DemoNet) -> list[tuple[str, int]]:
    """Every (address, port) the demo in `net` listens on, VIPs' first hosts included: a
    range where one of them is bound belongs to something else."""
    out = [
        (w.address, port)
        for w in workloads(zones, net)
        for port in (APP_PORT, INBOUND_PORT, SIDECAR_ADMIN_PORT)
    ]
    for index in range(2):
        ingress = net.address(index, INGRESS_HOST)
        out += [(ingress, INGRESS_PORT), (ingress, INGRESS_ADMIN_PORT)]
        out.append((str(next(net.vip_cidr(index).hosts())), APP_PORT))
    return out


def choose_net(
    zones: Sequence[str],
    remembered: int | None,
    claim: Callable[[DemoNet], bool],
    is_free: Callable[[str, int], bool],
) -> DemoNet:
    """The first range (the remembered one first) that this `up` can claim (no other live demo
    holds it) and where nothing listens on the demo's addresses; `claim` keeps the range
    claimed for the caller once it says True. Raises CliError when none is left."""
    order = list(range(DEMO_NET_FIRST, DEMO_NET_LAST + 1))
    if remembered in order:
        order.remove(remembered)
        order.insert(0, remembered)
    for octet in order:
        net = DemoNet(octet)
        if all(is_free(host, port) for host, port in listeners(zones, net)) and claim(net):
            return net
    raise CliError(
        f"no free range for the demo in 127.{DEMO_NET_FIRST}-{DEMO_NET_LAST}.0.0/16",
        details=["stop another `meshctl up --demo` (`meshctl up status` lists its addresses)"],
    )


def dataplane(w: Workload) -> dict[str, Any]:
    """The Dataplane a demo sidecar announces (Kuma's Universal shape)."""
    return {
        "type": "Dataplane",
        "mesh": MESH,
        "name": w.name,
        "networking": {
            "address": w.address,
            "inbound": [
                {
                    "port": INBOUND_PORT,
                    "servicePort": APP_PORT,
                    "serviceAddress": w.address,
                    # HTTP: the sidecars parse requests (per-request balancing,
                    # pooled mTLS connections, 403 from a denying permission).
                    "tags": {"kuma.io/service": w.service, "kuma.io/protocol": "http"},
                }
            ],
            "transparentProxying": {"reachableServices": list(w.reachable)},
        },
    }


def _record(
    name: str, zone: str, argv: list[str], data_dir: Path, *, api: str = "", admin: str = ""
) -> ComponentRecord:
    """An app has an `api` (the echo server itself), a proxy an `admin` (its /ready)."""
    return ComponentRecord(
        name=name,
        role=ROLE_DEMO,
        zone=zone,
        argv=argv,
        api=api,
        admin=admin or None,
        data_dir=str(data_dir / "demo"),
        log=str(data_dir / "logs" / f"{name}.log"),
    )


def demo_components(
    zones: Sequence[str],
    data_dir: Path,
    dp_servers: Mapping[str, str],
    programs: DemoPrograms,
    net: DemoNet,
) -> list[ComponentRecord]:
    """The demo's processes, apps before their sidecars; `dp_servers`: zone -> the
    grpc:// address of its config server."""
    out: list[ComponentRecord] = []
    for w in workloads(zones, net):
        out.append(
            _record(
                f"app-{w.name}",
                w.zone,
                [
                    programs.python,
                    "-m",
                    "mesh_dp.echo",
                    "--address",
                    f"{w.address}:{APP_PORT}",
                    "--name",
                    w.name,
                    "--zone",
                    w.zone,
                ],
                data_dir,
                api=f"http://{w.address}:{APP_PORT}",
            )
        )
        out.append(
            _record(
                w.name,
                w.zone,
                [
                    programs.mesh_dp,
                    "run",
                    "--cp",
                    dp_servers[w.zone],
                    "--dataplane",
                    json.dumps(dataplane(w), separators=(",", ":")),
                    "--admin-address",
                    f"{w.address}:{SIDECAR_ADMIN_PORT}",
                    "--dataplane-token-file",
                    str(proxy_token_file(data_dir, w.name)),
                ],
                data_dir,
                admin=f"http://{w.address}:{SIDECAR_ADMIN_PORT}",
            )
        )
    for index, zone in enumerate(zones[:2]):
        address = net.address(index, INGRESS_HOST)
        out.append(
            _record(
                f"ingress-{zone}",
                zone,
                [
                    programs.zone_ingress,
                    "run",
                    "--cp",
                    dp_servers[zone],
                    "--name",
                    f"ingress-{zone}",
                    "--address",
                    address,
                    "--port",
                    str(INGRESS_PORT),
                    "--admin-address",
                    f"{address}:{INGRESS_ADMIN_PORT}",
                    "--zone-token-file",
                    str(proxy_token_file(data_dir, f"ingress-{zone}")),
                ],
                data_dir,
                admin=f"http://{address}:{INGRESS_ADMIN_PORT}",
            )
        )
    return out


def try_commands(zone: str, dns: str) -> list[str]:
    """One-liners calling backend through web's sidecar after resolving it with `zone`'s DNS
    (HOST:PORT): any backend (zone-1's own first), and pinned to zone-2."""
    host, _, port = dns.rpartition(":")

    def curl(name: str) -> str:
        return f"curl -s http://$(dig +short @{host} -p {port} {name}):{APP_PORT}/; echo"

    return [curl("backend.mesh"), curl("backend.zone-2.mesh")]


def python_program() -> str:
    return sys.executable


async def apply_resources(
    api: str,
    notice: Callable[[str], None],
    timeout: float = APPLY_TIMEOUT,
    *,
    data_dir: Path | None = None,
    zones: Sequence[str] = (),
    net: DemoNet | None = None,
) -> bool:
    """PUTs the demo's Mesh and permission to the global as soon as it answers, then (with
    `data_dir`) issues the proxies' tokens into their files; True when all of it worked. The
    global's admin token is read from `data_dir` (without it, requests go unauthenticated:
    only a global with --api-localhost-is-admin accepts them). A refusal (4xx) is reported
    and not retried."""
    deadline = asyncio.get_running_loop().time() + timeout
    admin = None
    if data_dir is not None:
        admin = await read_admin_token(data_dir, deadline)
        if admin is None:
            notice(f"demo: the global wrote no admin token within {timeout:g}s")
            return False
    headers = {} if admin is None else {"Authorization": f"Bearer {admin}"}
    client_timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        extra = () if data_dir is None else observability_resources(access_log_path(data_dir))
        for path, body in (*DEMO_RESOURCES, *extra):
            while True:
                try:
                    async with session.put(api + path, json=body, headers=headers) as resp:
                        if resp.status in (200, 201):
                            break
                        text = await resp.text()
                        if 400 <= resp.status < 500:
                            notice(f"demo: the global refused {path}: HTTP {resp.status} {text}")
                            return False
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not answering yet
                if asyncio.get_running_loop().time() > deadline:
                    notice(f"demo: the global did not accept {path} within {timeout:g}s")
                    return False
                await asyncio.sleep(0.2)
        if data_dir is not None:
            try:
                await issue_tokens(session, api, admin, data_dir, zones, deadline)
            except (TokenIssueError, aiohttp.ClientError, TimeoutError) as exc:
                notice(f"demo: cannot issue the proxies' tokens: {exc}")
                return False
    notice(
        "demo: Mesh default has builtin mTLS and web may call backend; the sidecars get "
        "their certificates from their zones"
    )
    if data_dir is not None:
        web = next(
            w for w in workloads(zones, net or DemoNet(DEMO_NET_FIRST)) if w.service == "web"
        )
        notice(
            f"demo: MeshAccessLog demo-access-log: every request, both sides, in "
            f"{access_log_path(data_dir)}; MeshMetric demo-metrics: each sidecar's metrics on "
            f"its address, port {METRICS_PORT}, e.g. curl -s http://{web.address}:{METRICS_PORT}"
            "/metrics"
        )
    return True


async def issue_tokens(
    session: aiohttp.ClientSession,
    api: str,
    admin: str | None,
    data_dir: Path,
    zones: Sequence[str],
    deadline: float,
) -> None:
    """Each sidecar's dataplane token (its service and name only) and each ingress's zone
    token (scope ingress, its zone), written where their `--*-token-file` points."""
    for w in workloads(zones, DemoNet(DEMO_NET_FIRST)):  # names and services: any range
        body = {
            "mesh": MESH,
            "tags": {"kuma.io/service": [w.service]},
            "name": w.name,
            "validFor": DEMO_VALIDITY,
        }
        token = await dataplane_token(session, api, admin, body, deadline)
        save(proxy_token_file(data_dir, w.name), token)
    for zone in zones[:2]:
        token = await zone_ingress_token(session, api, admin, zone)
        save(proxy_token_file(data_dir, f"ingress-{zone}"), token)
