"""`meshctl up --demo`: a working mesh on top of the local federation, to call right away.

What it adds (all real processes, supervised like the control planes):

- zone-2: `backend` twice (mesh_dp.echo, which answers with its instance and zone), each
  with a mesh-dp sidecar, and a zone-ingress;
- zone-1: one more `backend` instance, a client `web` with a sidecar (the only one that binds
  VIPs: it is the one a user calls through), and a zone-ingress;
- at the global: Mesh `default` with builtin mTLS (its CA is created there and synced to the
  zones) and a MeshTrafficPermission allowing web -> backend.

Every workload has its own loopback address (127.200+i.0.n for the i-th zone), so fixed ports
serve them all: the app on 8080, its sidecar's inbound on 18080, the sidecar's admin on 9901,
an ingress on 10001 (admin 9902). The sidecars and ingresses get their configs from their
zone-cp over the config stream, so they keep retrying until the zone and the mesh CA are
there; the resources are applied as soon as the global answers.

`try_commands` is what the banner prints: one line resolving `backend.mesh` through zone-1's
DNS and calling it through web's sidecar (the answer names the zone that served it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from meshctl.errors import CliError
from meshctl.up.credentials import read_token
from meshctl.up.state import ComponentRecord

ROLE_DEMO: Final = "demo"
MESH: Final = "default"
APP_PORT: Final = 8080
INBOUND_PORT: Final = 18080
SIDECAR_ADMIN_PORT: Final = 9901
INGRESS_PORT: Final = 10001
INGRESS_ADMIN_PORT: Final = 9902
INGRESS_HOST: Final = 100  # last octet of a zone's ingress address
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


def zone_address(zone_index: int, host: int) -> str:
    return f"127.{200 + zone_index}.0.{host}"


def workloads(zones: Sequence[str]) -> list[Workload]:
    """zone-1: backend-z1-1 and web-1; zone-2: backend-z2-1 and backend-z2-2."""
    if len(zones) < 2:
        raise CliError("--demo needs at least 2 zones (it calls from zone-1 into zone-2)")
    z1, z2 = zones[0], zones[1]
    return [
        Workload(z2, "backend-z2-1", "backend", zone_address(1, 1)),
        Workload(z2, "backend-z2-2", "backend", zone_address(1, 2)),
        Workload(z1, "backend-z1-1", "backend", zone_address(0, 1)),
        Workload(z1, "web-1", "web", zone_address(0, 2), reachable=("backend",)),
    ]


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
                    "tags": {"kuma.io/service": w.service},
                }
            ],
            "transparentProxying": {"reachableServices": list(w.reachable)},
        },
    }


def _record(name: str, zone: str, argv: list[str], api: str, data_dir: Path) -> ComponentRecord:
    return ComponentRecord(
        name=name,
        role=ROLE_DEMO,
        zone=zone,
        argv=argv,
        api=api,
        data_dir=str(data_dir / "demo"),
        log=str(data_dir / "logs" / f"{name}.log"),
    )


def demo_components(
    zones: Sequence[str], data_dir: Path, dp_servers: Mapping[str, str], programs: DemoPrograms
) -> list[ComponentRecord]:
    """The demo's processes, apps before their sidecars; `dp_servers`: zone -> the
    grpc:// address of its config server."""
    out: list[ComponentRecord] = []
    for w in workloads(zones):
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
                "",
                data_dir,
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
                ],
                f"http://{w.address}:{SIDECAR_ADMIN_PORT}",
                data_dir,
            )
        )
    for index, zone in enumerate(zones[:2]):
        address = zone_address(index, INGRESS_HOST)
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
                ],
                f"http://{address}:{INGRESS_ADMIN_PORT}",
                data_dir,
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
    token_file: Path | None = None,
) -> bool:
    """PUTs the demo's Mesh and permission to the global as soon as it answers; True when
    both were accepted. A refusal (4xx) is reported and not retried. Writes need the admin
    token, which the global writes to `token_file` once it runs."""
    deadline = asyncio.get_running_loop().time() + timeout
    client_timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        for path, body in DEMO_RESOURCES:
            while True:
                token = read_token(token_file) if token_file is not None else ""
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                # No token yet: the global has not started; wait as for an unanswered call.
                try:
                    if token or token_file is None:
                        async with session.put(api + path, json=body, headers=headers) as resp:
                            if resp.status in (200, 201):
                                break
                            text = await resp.text()
                            if 400 <= resp.status < 500:
                                notice(
                                    f"demo: the global refused {path}: HTTP {resp.status} {text}"
                                )
                                return False
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not answering yet
                if asyncio.get_running_loop().time() > deadline:
                    notice(f"demo: the global did not accept {path} within {timeout:g}s")
                    return False
                await asyncio.sleep(0.2)
    notice(
        "demo: Mesh default has builtin mTLS and web may call backend; the sidecars get "
        "their certificates from their zones"
    )
    return True
