"""One global-cp and N zones spread over K worker processes: what the global carries (issue 19).

    .venv/bin/python benchmarks/scale.py [--zones 20] [--dataplanes 100] [--policies 100] \
        [--rounds 20] [--workers K] [--ramp M] [--changes 10] [--json FILE]

The global-cp is a real process (embedded SQLite store, KDS over TLS, admin token), as
`benchmarks/kds_propagation.py` deploys it. Each zone is the zone control plane's own KDS
client (`zone_cp.kds.ZoneKds`: the Receiver that stores and ACKs what the global sends, the
view that sends the zone's inventory up) over an in-memory store, authenticated with a zone
token issued by the global's API and checking the global's TLS certificate: no zone API, DNS
or dataplane server. The zones run in `--workers` processes (this file with `--worker`, zone
i in worker i mod K), which the parent drives with one JSON line per command on their stdin
and answers on their stdout: one process could not keep 100 zones' streams alive (they
missed the global's stale-stream timeout and reconnected, and the latencies measured the
simulator). Each zone holds its own inventory: `--dataplanes` Dataplanes (services
`svc-<zone>-<j mod 10>`) and its ZoneIngress, whose `availableServices` (what every other
zone receives) counts them. Measured:

- initial sync: from starting the N zones (all at once, or `--ramp` M at a time, each group
  once the global holds the previous one's Dataplanes) until each holds every policy and
  every other zone's ingress, and the global every zone's Dataplanes;
- global RSS then (issue 19: <= 1 GB at 100 zones);
- policy change: `--rounds` times, a MeshTimeout PUT through the global's API, until each
  zone has stored it (its Receiver stores, then ACKs): p50/p99 over zones x rounds
  (target p99 <= 250 ms);
- inventory change: `--rounds` times, zone-0's ingress changes (one more instance), until each
  other zone has stored the new version: p50/p99 over the others x rounds (target 500 ms);
- cold sync of a new zone: one more zone starts, until it holds every policy and every other
  zone's ingress (target <= 3 s), and what it received (its client's KDS counters);
- a reconnect: zone-1's client stops, `--changes` policies change, a new client starts over
  the same store (a zone-cp restart with its store): what it receives and sends, against the
  cold sync (issue 19: only the difference).

Times are taken by the workers on CLOCK_MONOTONIC (one clock for all processes of the
machine) from each zone store's watch. Every zone's reconnects are counted: a run with any
(other than zone-1's planned one) prints NOT VALID, since its latencies then measure the
simulator. Not a test: prints numbers, exits 0 unless the deployment fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
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
from meshfed.kds.metrics import KdsMetrics
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
TIMEOUT_S = 900.0


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


@dataclass(frozen=True)
class Global:
    """What a worker needs to reach the global: the run's folder (its CA, the zone tokens)."""

    root: Path
    kds_port: int

    def token_file(self, zone: str) -> Path:
        return self.root / f"{zone}.zone-token"  # where `issue_zone_token` writes it


class SimZone:
    """One zone: its store (own inventory, and what the global sends) and its KDS client.
    `policy_seen` / `ingress_seen` record when a value was first stored (CLOCK_MONOTONIC,
    one clock for every process of the machine, so the parent compares it with its own)."""

    def __init__(self, name: str, target: Global, dataplanes: int, metrics: KdsMetrics) -> None:
        self.name = name
        self.store = MemoryStore()
        self.registry = default_registry()
        self._target = target
        self._dataplanes = dataplanes
        self._metrics = metrics
        self.kds: ZoneKds | None = None
        self.policies: dict[str, str] = {}  # name -> idleTimeout stored
        self.ingresses: dict[str, int] = {}  # zone -> svc-<zone>-0 instances stored
        self.policy_seen: dict[str, float] = {}  # p-0's idleTimeout -> first stored
        self.ingress_seen: dict[tuple[str, int], float] = {}
        self.earlier_reconnects = 0  # of clients stopped on purpose (`disconnect`)
        self._watch: asyncio.Task[None] | None = None

    async def fill(self) -> None:
        docs = [dataplane_doc(self.name, j) for j in range(self._dataplanes)]
        docs.append(ingress_doc(self.name, self._dataplanes))
        for doc in docs:
            await self.store.create(resource_from_dict(doc, self.registry))

    async def start(self) -> None:
        if self._watch is None:
            self._watch = asyncio.create_task(self._follow())
        ca = (self._target.root / "kds-ca.crt").read_bytes()
        self.kds = ZoneKds(
            self.store,
            self.registry,
            self.name,
            Address("127.0.0.1", self._target.kds_port),
            max_message_bytes=MAX_MESSAGE,
            reconnect_max=2.0,
            stale_timeout=60.0,
            tls=OwnConnection(ca_pem=ca),
            token_file=self._target.token_file(self.name),
            metrics=self._metrics,
        )
        await self.kds.start()

    async def _follow(self) -> None:
        async for event in self.store.watch(types=["MeshTimeout", "ZoneIngress"], copy=False):
            res = event.resource
            if event.kind == "DELETE":
                continue
            now = time.monotonic()
            if res.type == "MeshTimeout":
                to = res.spec.get("to") or [{}]
                value = str(to[0].get("default", {}).get("idleTimeout"))
                self.policies[res.name] = value
                if res.name == "p-0":
                    self.policy_seen.setdefault(value, now)
            else:
                zone = res.meta.labels.get(LABEL_ZONE, "")
                if zone and zone != self.name:
                    first = (res.spec.get("availableServices") or [{}])[0]
                    self.ingresses[zone] = int(first.get("instances", 0))
                    self.ingress_seen.setdefault((zone, self.ingresses[zone]), now)

    @property
    def reconnects(self) -> int:
        """KDS sessions beyond each client's first (0: never reconnected)."""
        client = self.kds.client if self.kds is not None else None
        return self.earlier_reconnects + (max(0, client.sessions - 1) if client else 0)

    @property
    def last_error(self) -> str:
        """Why the client's last session ended ("" if none did)."""
        client = self.kds.client if self.kds is not None else None
        return (client.last_error or "") if client is not None else ""

    async def disconnect(self) -> None:
        """Stop the KDS client, keep the store: `start` then resumes as a restarted zone-cp
        with a persistent store does."""
        self.earlier_reconnects = self.reconnects
        if self.kds is not None:
            await self.kds.stop()
        self.kds = None

    async def stop(self) -> None:
        if self.kds is not None:
            await self.kds.stop()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.store.close()


def synced(zone: SimZone, policies: dict[str, str], others: Sequence[str]) -> bool:
    return zone.policies == policies and all(z in zone.ingresses for z in others)


def transferred(metrics: KdsMetrics, zone: str) -> dict[str, float]:
    """What went over `zone`'s streams so far (its client's counters, all types)."""
    wanted = {
        "meshfed_kds_resources_received": "resources_received",
        "meshfed_kds_response_bytes_received": "bytes_received",
        "meshfed_kds_resources_sent": "resources_sent",
        "meshfed_kds_response_bytes_sent": "bytes_sent",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for metric in metrics.registry.collect():
        if metric.name in wanted:
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("zone") == zone:
                    out[wanted[metric.name]] += sample.value
    return out


def received_by_type(metrics: KdsMetrics, zone: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in metrics.registry.collect():
        if metric.name == "meshfed_kds_resources_received":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("zone") == zone:
                    kind = f"{sample.labels['type']} {sample.labels['op']}"
                    out[kind] = out.get(kind, 0) + int(sample.value)
    return out


def minus(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(after[k] - before.get(k, 0.0)) for k in after}


async def until(condition: Any, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(POLL_S / 4)


class Worker:
    """One worker process's zones, driven by the parent's commands (one JSON line each on
    stdin, one JSON line answered on stdout)."""

    def __init__(self, target: Global, dataplanes: int) -> None:
        self.target = target
        self.dataplanes = dataplanes
        self.metrics = KdsMetrics()
        self.zones: dict[str, SimZone] = {}

    def others(self, zone: SimZone, names: Sequence[str]) -> list[str]:
        return [n for n in names if n != zone.name]

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["cmd"]
        if op == "fill":
            for name in cmd["names"]:
                self.zones[name] = SimZone(name, self.target, self.dataplanes, self.metrics)
            await asyncio.gather(*(z.fill() for z in self.zones.values()))
            return {}
        if op == "start":
            await asyncio.gather(*(self.zones[n].start() for n in cmd["names"]))
            return {}
        if op == "synced":
            zones = list(self.zones.values())
            started = time.monotonic()
            await until(
                lambda: all(
                    synced(z, cmd["policies"], self.others(z, cmd["names"])) for z in zones
                ),
                f"sync of {len(zones)} zones",
            )
            return {"seconds": time.monotonic() - started}
        if op == "policy":
            value = cmd["value"]
            zones = list(self.zones.values())
            await until(lambda: all(value in z.policy_seen for z in zones), "policy change", 60)
            return {"times": [z.policy_seen[value] for z in zones]}
        if op == "ingress":
            source = self.zones[cmd["zone"]]
            doc = ingress_doc(source.name, self.dataplanes, extra=cmd["extra"])
            at = time.monotonic()
            await source.store.update(resource_from_dict(doc, source.registry))
            return {"at": at}
        if op == "ingress_wait":
            key = (cmd["zone"], cmd["instances"])
            zones = [z for z in self.zones.values() if z.name != cmd["zone"]]
            await until(lambda: all(key in z.ingress_seen for z in zones), "ingress change", 60)
            return {"times": [z.ingress_seen[key] for z in zones]}
        if op == "add":
            started = time.monotonic()
            zone = SimZone(cmd["name"], self.target, self.dataplanes, self.metrics)
            self.zones[zone.name] = zone
            await zone.fill()
            filled = time.monotonic()
            await zone.start()
            others = self.others(zone, cmd["names"])
            await until(lambda: synced(zone, cmd["policies"], others), "cold sync", 60)
            done = time.monotonic()
            up = self.dataplanes + 1  # and its ingress

            def sent_up() -> bool:
                return transferred(self.metrics, zone.name)["resources_sent"] >= up

            await until(sent_up, "the new zone's inventory sent up", 60)
            return {
                "seconds": done - filled,
                "inventory_up_seconds": time.monotonic() - filled,
                "fill_seconds": filled - started,
                **transferred(self.metrics, zone.name),
            }
        if op == "disconnect":
            await self.zones[cmd["name"]].disconnect()
            return transferred(self.metrics, cmd["name"])
        if op == "resume":
            zone = self.zones[cmd["name"]]
            before = transferred(self.metrics, zone.name)
            types_before = received_by_type(self.metrics, zone.name)
            # One Dataplane registered while away: the only thing the zone should send up.
            doc = dataplane_doc(zone.name, self.dataplanes)
            await zone.store.create(resource_from_dict(doc, zone.registry))
            started = time.monotonic()
            await zone.start()
            others = self.others(zone, cmd["names"])
            await until(lambda: synced(zone, cmd["policies"], others), "resume", 60)
            seconds = time.monotonic() - started
            # What else might still arrive (nothing, if the resume was only the difference).
            await asyncio.sleep(1.0)
            by_type = {
                k: n - types_before.get(k, 0)
                for k, n in received_by_type(self.metrics, zone.name).items()
                if n > types_before.get(k, 0)
            }
            return {
                "seconds": seconds,
                **minus(transferred(self.metrics, zone.name), before),
                "received_by_type": by_type,
            }
        if op == "stats":
            return {
                "reconnects": {n: z.reconnects for n, z in self.zones.items()},
                "errors": {n: z.last_error for n, z in self.zones.items() if z.reconnects},
                "cpu_s": time.process_time(),
            }
        raise RuntimeError(f"unknown command {op!r}")

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "stop":
                    break
                try:
                    reply = await self.handle(cmd)
                except RuntimeError as exc:
                    reply = {"error": str(exc)}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
        finally:
            for zone in self.zones.values():
                await zone.stop()


class WorkerProcess:
    """The parent's handle on one worker: this file run with `--worker`."""

    def __init__(self, proc: asyncio.subprocess.Process, names: list[str]) -> None:
        self.proc = proc
        self.names = names

    @classmethod
    async def spawn(cls, target: Global, dataplanes: int, names: list[str]) -> WorkerProcess:
        config = {"root": str(target.root), "kds_port": target.kds_port, "dataplanes": dataplanes}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(proc, names)

    async def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} exited during {cmd!r}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.proc.pid}, {cmd!r}: {reply['error']}")
        return reply

    async def close(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b'{"cmd": "stop"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 30)
            except (OSError, TimeoutError):
                self.proc.kill()
                await self.proc.wait()


async def everyone(workers: Sequence[WorkerProcess], cmd: str, **fields: Any) -> list[Any]:
    return list(await asyncio.gather(*(w.ask(cmd, **fields) for w in workers)))


async def global_dataplanes(http: aiohttp.ClientSession, dep: Deployment) -> int:
    async with http.get(f"{dep.global_.api}/meshes/default/dataplanes?size=1") as resp:
        return int((await resp.json())["total"])


async def timed_rounds(
    workers: Sequence[WorkerProcess], change: Any, wait: Any, rounds: int
) -> list[list[float]]:
    """`rounds` times: `change(round)` (returns when it was made), then every worker's
    `wait(round)` command: seconds from the change to each zone's store."""
    out: list[list[float]] = []
    for r in range(1, rounds + 1):
        started = await change(r)
        cmd, fields = wait(r)
        out.append([])
        for reply in await everyone(workers, cmd, **fields):
            out[-1].extend(t - started for t in reply["times"])
        await asyncio.sleep(0.2)  # apart: each round on a quiet system
    return out


def ms_rounds(rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """p50/p99 over every zone of every round, and each round's slowest zone (a round
    slow for all zones at once is the machine's load, not one zone's stream)."""
    return {
        **ms([t for one in rounds for t in one]),
        "round_max_ms": [round(1000 * max(one)) for one in rounds],
    }


async def stats(
    workers: Sequence[WorkerProcess],
) -> tuple[dict[str, int], float, dict[str, str]]:
    """Reconnects per zone (and why the last one's session ended, printed), workers' CPU."""
    replies = await everyone(workers, "stats")
    per_zone: dict[str, int] = {}
    errors: dict[str, str] = {}
    for reply in replies:
        per_zone.update(reply["reconnects"])
        errors.update(reply["errors"])
    reasons: dict[str, list[str]] = {}
    for error in errors.values():
        reason = re.sub(r"'zone-\d+' for [\d.]+s", "'<zone>' for <n>s", error)
        reasons.setdefault(reason, []).append(error)
    for reason, each in sorted(reasons.items()):
        idle = sorted(float(m) for e in each for m in re.findall(r"for ([\d.]+)s", e))
        span = f" (<n>: {idle[0]:g} to {idle[-1]:g})" if idle else ""
        print(f"  {len(each)} zones' last session ended: {reason}{span}", flush=True)
    return per_zone, sum(r["cpu_s"] for r in replies), errors


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    dep = Deployment.create(root)
    target = Global(root, dep.kds_port)
    workers: list[WorkerProcess] = []
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
            for name in [*names, f"zone-{args.zones}"]:
                await issue_zone_token(http, dep, name)
            k = max(1, min(args.workers, args.zones))
            for w in range(k):
                workers.append(await WorkerProcess.spawn(target, args.dataplanes, names[w::k]))
            await asyncio.gather(*(w.ask("fill", names=w.names) for w in workers))
            cpu0 = cpu_seconds(dep.global_.pid)
            _, own0, _ = await stats(workers)
            started = time.monotonic()
            step = args.ramp or args.zones
            for first_zone in range(0, args.zones, step):
                group = set(names[first_zone : first_zone + step])
                await asyncio.gather(
                    *(w.ask("start", names=[n for n in w.names if n in group]) for w in workers)
                )
                want = (first_zone + len(group)) * args.dataplanes
                while await global_dataplanes(http, dep) < want:
                    if time.monotonic() - started > TIMEOUT_S:
                        raise RuntimeError("the global never held every zone's Dataplanes")
                    await asyncio.sleep(POLL_S)
            await everyone(workers, "synced", policies=policies, names=names)
            initial_s = time.monotonic() - started
            initial_cpu = cpu_seconds(dep.global_.pid) - cpu0
            at_sync, own1, _ = await stats(workers)
            rss = rss_kib(dep.global_.pid)
            print(
                f"{args.zones} zones x {args.dataplanes} Dataplanes, {args.policies} policies, "
                f"{k} worker processes: initial sync {initial_s:.1f} s (global CPU "
                f"{initial_cpu:.1f} s, workers {own1 - own0:.1f} s); global RSS "
                f"{rss['VmRSS'] // 1024} MiB (peak {rss['VmHWM'] // 1024} MiB); reconnects "
                f"{sum(at_sync.values())}; load {load_average()}",
                flush=True,
            )

            async def change_policy(r: int) -> float:
                at = time.monotonic()
                await put(http, dep.global_, policy("p-0", idle=f"{10 + r}s"))
                return at

            policy_s = await timed_rounds(
                workers,
                change_policy,
                lambda r: ("policy", {"value": f"{10 + r}s"}),
                args.rounds,
            )
            policies["p-0"] = f"{10 + args.rounds}s"
            print(f"policy change stored by every zone: {ms_rounds(policy_s)}", flush=True)

            source = workers[0]  # holds zone-0

            async def change_inventory(r: int) -> float:
                reply = await source.ask("ingress", zone="zone-0", extra=r)
                return float(reply["at"])

            first = (args.dataplanes + SERVICES_PER_ZONE - 1) // SERVICES_PER_ZONE
            inventory_s = await timed_rounds(
                workers,
                change_inventory,
                lambda r: ("ingress_wait", {"zone": "zone-0", "instances": first + r}),
                args.rounds,
            )
            print(
                f"zone-0's ingress change stored by the others: {ms_rounds(inventory_s)}",
                flush=True,
            )

            cpu0 = cpu_seconds(dep.global_.pid)
            cold = await source.ask(
                "add", name=f"zone-{args.zones}", policies=policies, names=names
            )
            source.names.append(f"zone-{args.zones}")
            names.append(f"zone-{args.zones}")
            # Every zone holds the new zone's ingress before zone-1 goes away: else that
            # ingress would be part of the difference the reconnect receives.
            await everyone(workers, "synced", policies=policies, names=names)
            print(
                f"cold sync of a new zone ({args.policies} policies, {args.zones} ingresses, "
                f"its {args.dataplanes} Dataplanes up): {cold['seconds']:.2f} s (global CPU "
                f"{cpu_seconds(dep.global_.pid) - cpu0:.2f} s), its inventory up in "
                f"{cold['inventory_up_seconds']:.2f} s; received "
                f"{cold['resources_received']:.0f} resources / "
                f"{cold['bytes_received'] / 1024:.0f} KiB, sent "
                f"{cold['resources_sent']:.0f} / {cold['bytes_sent'] / 1024:.0f} KiB; "
                f"load {load_average()}",
                flush=True,
            )

            # A reconnect: zone-1 goes away, `--changes` policies change and one Dataplane
            # registers in zone-1 meanwhile, it comes back with its store: what it receives
            # and sends should be those changes, no more.
            away = workers[1 % k]
            await away.ask("disconnect", name="zone-1")
            for i in range(1, 1 + args.changes):
                policies[f"p-{i}"] = "30s"
                await put(http, dep.global_, policy(f"p-{i}", idle="30s"))
            resumed = await away.ask("resume", name="zone-1", policies=policies, names=names)
            print(
                f"zone-1's reconnect after {args.changes} policy changes and one new Dataplane: "
                f"in sync in "
                f"{resumed['seconds']:.2f} s; received {resumed['resources_received']} "
                f"resources / {resumed['bytes_received'] / 1024:.1f} KiB, sent "
                f"{resumed['resources_sent']} / {resumed['bytes_sent'] / 1024:.1f} KiB "
                f"{resumed['received_by_type']} "
                f"(a cold sync: {cold['resources_received']:.0f} / "
                f"{cold['bytes_received'] / 1024:.0f} KiB received)",
                flush=True,
            )

            reconnects, _, errors = await stats(workers)
            total = sum(reconnects.values())
            during_sync = sum(at_sync.values())
            valid = total == 0
            flagged = {z: n for z, n in reconnects.items() if n}
            stale = [e for e in errors.values() if "stale stream" in e]
            verdict = (
                "VALID"
                if valid
                else f"NOT VALID: {during_sync} during the initial sync, "
                f"{total - during_sync} during the measurements ({flagged}); the global "
                f"closed {len(stale)} of their last sessions as stale"
                + (f", e.g. {stale[0][-160:]!r}" if stale else "")
            )
            print(f"unplanned reconnects: {total}; {verdict}; load {load_average()}", flush=True)
            return {
                "zones": args.zones,
                "workers": k,
                "dataplanes_per_zone": args.dataplanes,
                "policies": args.policies,
                "valid": valid,
                "reconnects": total,
                "reconnects_during_initial_sync": during_sync,
                "stale_streams_closed_by_global": len(stale),
                "reconnects_per_zone": reconnects,
                "initial_sync_s": round(initial_s, 2),
                "global_rss_mib": rss["VmRSS"] // 1024,
                "global_peak_rss_mib": rss["VmHWM"] // 1024,
                "policy_change": ms_rounds(policy_s),
                "inventory_change": ms_rounds(inventory_s),
                "cold_sync": cold,
                "reconnect_resume": resumed,
                "load_average_end": load_average(),
            }
        finally:
            await asyncio.gather(*(w.close() for w in workers))
            dep.stop()


def worker_main(config: str) -> int:
    """A worker process: `--worker '{"root": ..., "kds_port": ..., "dataplanes": ...}'`."""
    cfg = json.loads(config)
    worker = Worker(Global(Path(cfg["root"]), int(cfg["kds_port"])), int(cfg["dataplanes"]))
    asyncio.run(worker.serve())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=20)
    parser.add_argument("--dataplanes", type=int, default=100, help="per zone")
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, help="processes that run the zones (default: max(2, zones // 25))"
    )
    parser.add_argument(
        "--ramp",
        type=int,
        default=0,
        help="start the zones this many at a time, each group once the global holds its "
        "Dataplanes (default: all at once)",
    )
    parser.add_argument(
        "--changes", type=int, default=10, help="policies changed while zone-1 is away"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a worker process's config
    args = parser.parse_args()
    # The zones' clients log each reconnect; counted and printed instead.
    logging.basicConfig(level=logging.ERROR)
    if args.worker:
        return worker_main(args.worker)
    if args.workers is None:
        args.workers = max(2, args.zones // 25)
    args.changes = max(1, min(args.changes, args.policies - 1))
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
