"""One global-cp and N zones simulated in one process: what the global carries (issue 19).

    .venv/bin/python benchmarks/scale.py [--zones 20] [--dataplanes 100] [--policies 100] \
        [--rounds 20] [--json FILE]

The global-cp is a real process (embedded SQLite store, KDS over TLS, admin token), as
`benchmarks/kds_propagation.py` deploys it. Each zone is the zone control plane's own KDS
client (`zone_cp.kds.ZoneKds`: the Receiver that stores and ACKs what the global sends, the
view that sends the zone's inventory up) over an in-memory store, authenticated with a zone
token issued by the global's API and checking the global's TLS certificate, all N in this
process: no zone API, DNS or dataplane server. Each zone holds its own inventory:
`--dataplanes` Dataplanes (services `svc-<zone>-<j mod 10>`) and its ZoneIngress, whose
`availableServices` (what every other zone receives) counts them. Measured:

- initial sync: from starting the N zones until each holds every policy and every other
  zone's ingress, and the global every zone's Dataplanes;
- global RSS then (issue 19: <= 1 GB at 100 zones);
- policy change: `--rounds` times, a MeshTimeout PUT through the global's API, until each
  zone has stored it (its Receiver stores, then ACKs): p50/p99 over zones x rounds
  (target p99 <= 250 ms);
- inventory change: `--rounds` times, zone-0's ingress changes (one more instance), until each
  other zone has stored the new version: p50/p99 over the others x rounds (target 500 ms);
- cold sync of a new zone: one more zone starts, until it holds every policy and every other
  zone's ingress (target <= 3 s).

Times are observed through each zone store's watch, in this process, which also runs every
zone's gRPC stream: with many zones this process, not the global, can be the bottleneck (its
CPU is printed). Not a test: prints numbers, exits 0 unless the deployment fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from _support import cpu_seconds
from kds_propagation import (
    Deployment,
    issue_zone_token,
    load_average,
    policy,
    put,
    rss_kib,
    wait_ready,
)

from meshfed.config import Address
from meshfed.kds.client import CONNECTED
from meshfed.kds.tls import ClientTls
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import LABEL_ZONE
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from zone_cp.kds import ZoneKds

SERVICES_PER_ZONE = 10
MAX_MESSAGE = 4 * 1024 * 1024
PUT_CONCURRENCY = 16
POLL_S = 0.02
TIMEOUT_S = 300.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(1000 * percentile(values, 0.5), 1),
        "p99_ms": round(1000 * percentile(values, 0.99), 1),
        "max_ms": round(1000 * max(values), 1),
    }


def ingress_doc(zone: str, dataplanes: int, extra: int = 0) -> dict[str, Any]:
    counts = [0] * SERVICES_PER_ZONE
    for j in range(dataplanes):
        counts[j % SERVICES_PER_ZONE] += 1
    counts[0] += extra
    return {
        "type": "ZoneIngress",
        "name": f"{zone}-ingress",
        "networking": {"address": "127.0.0.1", "port": 10001},
        "availableServices": [
            {"tags": {"kuma.io/service": f"svc-{zone}-{k}"}, "instances": n, "mesh": "default"}
            for k, n in enumerate(counts)
            if n
        ],
    }


def dataplane_doc(zone: str, j: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"{zone}-dp-{j}",
        "networking": {
            "address": f"10.0.{j // 256 % 256}.{j % 256}",
            "inbound": [
                {
                    "port": 8080,
                    "tags": {"kuma.io/service": f"svc-{zone}-{j % SERVICES_PER_ZONE}"},
                }
            ],
        },
    }


@dataclass(frozen=True)
class OwnConnection(ClientTls):
    """The zone's TLS settings, and a connection of its own: gRPC shares one connection
    between a process's channels to the same target, which real zones, each its own process,
    never do (100 zones' keepalive pings on one connection draw a GOAWAY too_many_pings)."""

    async def credentials(self, target: str) -> tuple[grpc.ChannelCredentials, list[Any]]:
        credentials, options = await super().credentials(target)
        return credentials, [*options, ("grpc.use_local_subchannel_pool", 1)]


class SimZone:
    """One zone: its store (own inventory, and what the global sends) and its KDS client.
    `seen` records when each (type, name, version marker) was first stored."""

    def __init__(self, name: str, dep: Deployment, args: argparse.Namespace) -> None:
        self.name = name
        self.store = MemoryStore()
        self.registry = default_registry()
        self._dep = dep
        self._args = args
        self.kds: ZoneKds | None = None
        self.policies: dict[str, str] = {}  # name -> idleTimeout stored
        self.ingresses: dict[str, int] = {}  # zone -> svc-<zone>-0 instances stored
        self.changed = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def fill(self) -> None:
        docs = [dataplane_doc(self.name, j) for j in range(self._args.dataplanes)]
        docs.append(ingress_doc(self.name, self._args.dataplanes))
        for doc in docs:
            await self.store.create(resource_from_dict(doc, self.registry))

    async def start(self) -> None:
        self._watch = asyncio.create_task(self._follow())
        ca = (self._dep.root / "kds-ca.crt").read_bytes()
        self.kds = ZoneKds(
            self.store,
            self.registry,
            self.name,
            Address("127.0.0.1", self._dep.kds_port),
            max_message_bytes=MAX_MESSAGE,
            reconnect_max=2.0,
            stale_timeout=60.0,
            tls=OwnConnection(ca_pem=ca),
            token_file=self._dep.token_file(self.name),
        )
        await self.kds.start()

    async def _follow(self) -> None:
        async for event in self.store.watch(types=["MeshTimeout", "ZoneIngress"], copy=False):
            res = event.resource
            if event.kind == "DELETE":
                continue
            if res.type == "MeshTimeout":
                to = res.spec.get("to") or [{}]
                self.policies[res.name] = str(to[0].get("default", {}).get("idleTimeout"))
            else:
                zone = res.meta.labels.get(LABEL_ZONE, "")
                if zone and zone != self.name:
                    first = (res.spec.get("availableServices") or [{}])[0]
                    self.ingresses[zone] = int(first.get("instances", 0))
            self.changed.set()

    @property
    def sessions(self) -> int:
        """KDS sessions so far (1: never reconnected)."""
        return self.kds.client.sessions if self.kds is not None and self.kds.client else 0

    @property
    def connected(self) -> bool:
        return (
            self.kds is not None
            and self.kds.client is not None
            and (self.kds.client.state == CONNECTED)
        )

    async def stop(self) -> None:
        if self.kds is not None:
            await self.kds.stop()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.store.close()


async def until(condition: Any, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(POLL_S / 4)


def synced(zone: SimZone, policies: dict[str, str], others: Sequence[str]) -> bool:
    return zone.policies == policies and all(z in zone.ingresses for z in others)


async def global_dataplanes(http: aiohttp.ClientSession, dep: Deployment) -> int:
    async with http.get(f"{dep.global_.api}/meshes/default/dataplanes?size=1") as resp:
        return int((await resp.json())["total"])


async def start_zone(
    http: aiohttp.ClientSession, dep: Deployment, name: str, args: argparse.Namespace
) -> SimZone:
    await issue_zone_token(http, dep, name)
    zone = SimZone(name, dep, args)
    await zone.fill()
    await zone.start()
    return zone


async def timed_changes(
    zones: Sequence[SimZone], change: Any, arrived: Any, rounds: int
) -> list[float]:
    """`rounds` times: `change(round)` then, per zone, seconds until `arrived(zone, round)`."""
    out: list[float] = []
    for r in range(1, rounds + 1):
        started = time.monotonic()
        await change(r)
        waiting = set(range(len(zones)))
        deadline = started + 60
        while waiting and time.monotonic() < deadline:
            for i in list(waiting):
                if arrived(zones[i], r):
                    out.append(time.monotonic() - started)
                    waiting.discard(i)
            await asyncio.sleep(0.001)
        if waiting:
            raise RuntimeError(f"round {r}: {len(waiting)} zones never got the change")
        await asyncio.sleep(0.2)  # apart: each round on a quiet system
    return out


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    dep = Deployment.create(root)
    zones: list[SimZone] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            dep.global_.start()
            await wait_ready(http, dep.global_)
            http.headers["Authorization"] = f"Bearer {dep.admin_token()}"
            queue = iter(range(args.policies))

            async def putter() -> None:
                for i in queue:
                    await put(http, dep.global_, policy(f"p-{i}"))

            await asyncio.gather(*(putter() for _ in range(PUT_CONCURRENCY)))
            policies = {f"p-{i}": "10s" for i in range(args.policies)}
            names = [f"zone-{i}" for i in range(args.zones)]
            cpu0, own0 = cpu_seconds(dep.global_.pid), time.process_time()
            started = time.monotonic()
            zones = list(await asyncio.gather(*(start_zone(http, dep, n, args) for n in names)))
            await until(
                lambda: all(synced(z, policies, [n for n in names if n != z.name]) for z in zones),
                "initial sync of the zones",
            )
            want = args.zones * args.dataplanes
            while await global_dataplanes(http, dep) < want:
                if time.monotonic() - started > TIMEOUT_S:
                    raise RuntimeError("the global never held every zone's Dataplanes")
                await asyncio.sleep(POLL_S)
            initial_s = time.monotonic() - started
            initial_cpu = cpu_seconds(dep.global_.pid) - cpu0
            own_cpu = time.process_time() - own0
            rss = rss_kib(dep.global_.pid)
            print(
                f"{args.zones} zones x {args.dataplanes} Dataplanes, {args.policies} policies: "
                f"initial sync {initial_s:.1f} s (global CPU {initial_cpu:.1f} s, this "
                f"process {own_cpu:.1f} s); global RSS {rss['VmRSS'] // 1024} MiB (peak "
                f"{rss['VmHWM'] // 1024} MiB); all {len(zones)} connected: "
                f"{all(z.connected for z in zones)}, sessions beyond the first: "
                f"{sum(z.sessions - 1 for z in zones)}; load {load_average()}",
                flush=True,
            )

            async def change_policy(r: int) -> None:
                await put(http, dep.global_, policy("p-0", idle=f"{10 + r}s"))

            def stored(zone: SimZone, r: int) -> bool:
                return zone.policies.get("p-0") == f"{10 + r}s"

            policy_s = await timed_changes(zones, change_policy, stored, args.rounds)
            policies["p-0"] = f"{10 + args.rounds}s"
            print(f"policy change stored by every zone: {ms(policy_s)}", flush=True)

            source, others = zones[0], zones[1:]

            async def change_inventory(r: int) -> None:
                doc = ingress_doc(source.name, args.dataplanes, extra=r)
                await source.store.update(resource_from_dict(doc, source.registry))

            first = (args.dataplanes + SERVICES_PER_ZONE - 1) // SERVICES_PER_ZONE
            inventory_s = await timed_changes(
                others,
                change_inventory,
                lambda z, r: z.ingresses.get(source.name) == first + r,
                args.rounds,
            )
            print(f"zone-0's ingress change stored by the others: {ms(inventory_s)}", flush=True)

            cpu0 = cpu_seconds(dep.global_.pid)
            started = time.monotonic()
            new = await start_zone(http, dep, f"zone-{args.zones}", args)
            zones.append(new)
            await until(lambda: synced(new, policies, names), "cold sync of a new zone")
            cold_s = time.monotonic() - started
            print(
                f"cold sync of a new zone ({args.policies} policies, {args.zones} ingresses): "
                f"{cold_s:.2f} s (global CPU {cpu_seconds(dep.global_.pid) - cpu0:.2f} s); "
                f"load {load_average()}",
                flush=True,
            )
            reconnects = sum(z.sessions - 1 for z in zones)
            print(f"sessions beyond the first, all zones, at the end: {reconnects}", flush=True)
            return {
                "zones": args.zones,
                "reconnects": reconnects,
                "dataplanes_per_zone": args.dataplanes,
                "policies": args.policies,
                "initial_sync_s": round(initial_s, 2),
                "global_rss_mib": rss["VmRSS"] // 1024,
                "global_peak_rss_mib": rss["VmHWM"] // 1024,
                "policy_change": ms(policy_s),
                "inventory_change": ms(inventory_s),
                "cold_sync_s": round(cold_s, 2),
                "load_average_end": load_average(),
            }
        finally:
            for zone in zones:
                await zone.stop()
            dep.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=20)
    parser.add_argument("--dataplanes", type=int, default=100, help="per zone")
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    args = parser.parse_args()
    # The zones' clients log each reconnect; counted and printed instead.
    logging.basicConfig(level=logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="meshfed-scale-bench-"))
    try:
        results = asyncio.run(run(args, root))
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}\nlogs and data kept in {root}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
