"""KDS propagation: one global-cp and N zone-cp processes on loopback (SQLite stores), measured.

    .venv/bin/python benchmarks/kds_propagation.py [--zones 10] [--changes 200] \
        [--policies 10000] [--json FILE]

1. Propagation: `--changes` single MeshTimeout PUTs at the global, one at a time. Each change
   carries a sequence label; it has landed when EVERY zone's `GET /_watch` stream (NDJSON, one
   line per store change) has reported a PUT with that label. Reported: p50/p99/max from the PUT
   returning (and, stricter, from the PUT being sent) until the last zone has it.
2. Bulk: `--policies` policies PUT at the global (32 at a time); the time until every zone holds
   them all, and the global's RSS (VmRSS/VmHWM from /proc) with N zones and that many policies.
   Then step 1 again, with that many policies at the global.
3. Cold sync: one more zone started against that global; time until its store holds every
   policy, from the process start, from its API being ready, and from the start of its KDS
   connection (`connectedSince` in its `GET /_kds`).

Each phase also reports the CPU time the global and the zones used (from /proc) and the load
average: on a shared machine wall times swing with the neighbours, CPU time much less.

Kuma's figure is its default KDS snapshot refresh (1 s, `KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL`
in https://kuma.io/docs/latest/reference/kuma-cp/): a published default, not measured here.
Not a test: prints numbers, exits 0 unless the deployment fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from _support import cpu_seconds, free_port, stop_process

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEQ_LABEL = "bench.meshfed.io/seq"
PLURAL = "meshtimeouts"
KUMA_REFRESH_S = 1.0  # Kuma's default KDS snapshot refresh: published, not measured
TARGET_P99_MS = 100.0
TARGET_COLD_S = 3.0
PUT_CONCURRENCY = 32
POLL_S = 0.02  # how often a zone's policy count is read while waiting for a sync


def policy(name: str, seq: int | None = None, idle: str = "10s") -> dict[str, Any]:
    labels = {} if seq is None else {SEQ_LABEL: str(seq)}
    return {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": name,
        "labels": labels,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
        },
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    argv: list[str]
    api: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        log.close()  # the child has its own copy

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen is not None:
            stop_process(self.popen, grace=15)


@dataclass
class Deployment:
    root: Path
    global_: Node
    kds_port: int
    zones: list[Node] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path) -> Deployment:
        api, kds = free_port(), free_port()
        argv = [
            str(BIN / "global-cp"),
            "run",
            "--api-address",
            f"127.0.0.1:{api}",
            "--kds-address",
            f"127.0.0.1:{kds}",
            "--data-dir",
            str(root / "global"),
            "--log-level",
            "warning",
            # KDS over TLS with zone tokens, as deployed: the bench reads these two files.
            "--admin-token-file",
            str(root / "admin-token"),
            "--kds-ca-out",
            str(root / "kds-ca.crt"),
        ]
        node = Node("global", argv, f"http://127.0.0.1:{api}", root / "global.log")
        return cls(root, node, kds)

    def zone(self, name: str, index: int) -> Node:
        api = free_port()
        argv = [
            str(BIN / "zone-cp"),
            "run",
            "--zone",
            name,
            "--global-kds",
            f"grpcs://127.0.0.1:{self.kds_port}",
            "--api-address",
            f"127.0.0.1:{api}",
            "--data-dir",
            str(self.root / name),
            "--zone-token-file",
            str(self.token_file(name)),
            "--kds-ca-file",
            str(self.root / "kds-ca.crt"),
        ]
        # Zone DNS and the dataplane server on free ports and a VIP range per zone, so zones
        # can share the host; no access log, whose lines would cost the zones more CPU than
        # the polling that waits for a sync.
        env = {
            "MESHFED_LOG_LEVEL": "warning",
            "MESHFED_DNS_ADDRESS": "127.0.0.1:0",
            "MESHFED_DP_SERVER_ADDRESS": "127.0.0.1:0",
            "MESHFED_VIP_CIDR": f"127.{100 + index}.0.0/16",
        }
        node = Node(name, argv, f"http://127.0.0.1:{api}", self.root / f"{name}.log", env)
        self.zones.append(node)
        return node

    def token_file(self, zone: str) -> Path:
        return self.root / f"{zone}.zone-token"

    def admin_token(self) -> str:
        return (self.root / "admin-token").read_text().strip()

    def stop(self) -> None:
        for node in [*self.zones, self.global_]:
            node.stop()


async def issue_zone_token(http: aiohttp.ClientSession, dep: Deployment, zone: str) -> None:
    """The zone's token through the global's API (the session carries the admin token)."""
    async with http.post(dep.global_.api + "/tokens/zone", json={"zone": zone}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /tokens/zone {zone}: {resp.status} {await resp.text()}")
        dep.token_file(zone).write_text(await resp.text())


class CpuMeter:
    """CPU seconds the global and the zones use during one phase (steadier than wall time on
    a shared machine), and the machine's load meanwhile."""

    def __init__(self, dep: Deployment) -> None:
        self._nodes = [dep.global_, *dep.zones]
        self._start = {n.name: cpu_seconds(n.pid) for n in self._nodes}
        self._load_before = load_average()

    def result(self) -> dict[str, float]:
        used = {n.name: cpu_seconds(n.pid) - self._start[n.name] for n in self._nodes}
        return {
            "global_cpu_s": round(used["global"], 2),
            "zones_cpu_s": round(sum(v for k, v in used.items() if k != "global"), 2),
            "load_average_1m": round(max(self._load_before, load_average()), 2),
        }


async def wait_ready(http: aiohttp.ClientSession, node: Node, timeout: float = 60) -> float:
    """Until the node's API answers /ready; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.alive():
            raise RuntimeError(f"{node.name} exited:\n{node.log()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(node.api + "/ready") as resp:
                if resp.status == 200:
                    return time.perf_counter()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{node.name} not ready after {timeout}s:\n{node.log()[-3000:]}")


async def wait_connected(http: aiohttp.ClientSession, zone: Node, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(zone.api + "/_kds") as resp:
            if (await resp.json())["state"] == "connected":
                return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{zone.name} did not connect to the global:\n{zone.log()[-3000:]}")


async def count_policies(http: aiohttp.ClientSession, node: Node) -> int:
    async with http.get(f"{node.api}/meshes/default/{PLURAL}?size=1") as resp:
        if resp.status != 200:
            return -1
        return int((await resp.json())["total"])


async def wait_count(
    http: aiohttp.ClientSession, node: Node, want: int, timeout: float = 300
) -> float:
    """Until the node holds `want` policies; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            if await count_policies(http, node) == want:
                return time.perf_counter()
        if not node.alive():
            raise RuntimeError(f"{node.name} exited:\n{node.log()[-3000:]}")
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"{node.name} holds {await count_policies(http, node)}, not {want}")


async def put(http: aiohttp.ClientSession, node: Node, doc: dict[str, Any]) -> None:
    url = f"{node.api}/meshes/default/{PLURAL}/{doc['name']}"
    async with http.put(url, json=doc) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"PUT {doc['name']}: {resp.status} {await resp.text()}")
        await resp.read()


# -- 1. propagation -------------------------------------------------------------------------------


class Arrivals:
    """When each zone's watch reported each sequence number (perf_counter)."""

    def __init__(self, zones: int) -> None:
        self.zones = zones
        self.seen: dict[int, dict[str, float]] = {}
        self.complete: dict[int, asyncio.Event] = {}
        self.open_streams = 0
        self.all_open = asyncio.Event()

    def opened(self) -> None:
        """A zone's stream is open: from now on it reports every change of that zone."""
        self.open_streams += 1
        if self.open_streams == self.zones:
            self.all_open.set()

    def expect(self, seq: int) -> asyncio.Event:
        return self.complete.setdefault(seq, asyncio.Event())

    def record(self, seq: int, zone: str, when: float) -> None:
        per_zone = self.seen.setdefault(seq, {})
        per_zone.setdefault(zone, when)
        if len(per_zone) == self.zones:
            self.expect(seq).set()


async def follow(http: aiohttp.ClientSession, zone: Node, arrivals: Arrivals) -> None:
    """Reads the zone's /_watch stream for as long as the benchmark runs."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get(f"{zone.api}/_watch?types=MeshTimeout", timeout=timeout) as resp:
        resp.raise_for_status()
        arrivals.opened()  # the server subscribed before sending the headers
        async for line in resp.content:
            now = time.perf_counter()
            if not line.strip():
                continue
            event = json.loads(line)
            seq = event.get("labels", {}).get(SEQ_LABEL)
            if event["kind"] == "PUT" and seq is not None:
                arrivals.record(int(seq), zone.name, now)


async def propagation(
    http: aiohttp.ClientSession, dep: Deployment, changes: int, names: int, first_seq: int = 0
) -> dict[str, Any]:
    arrivals = Arrivals(len(dep.zones))
    cpu = CpuMeter(dep)
    watchers = [asyncio.create_task(follow(http, z, arrivals)) for z in dep.zones]
    try:
        await asyncio.wait_for(arrivals.all_open.wait(), 30)
        from_return: list[float] = []
        from_send: list[float] = []
        for seq in range(first_seq, first_seq + changes):
            done = arrivals.expect(seq)
            doc = policy(f"bench-{(seq - first_seq) % names}", seq, idle=f"{seq + 1}s")
            sent = time.perf_counter()
            await put(http, dep.global_, doc)
            returned = time.perf_counter()
            await asyncio.wait_for(done.wait(), 30)
            last = max(arrivals.seen[seq].values())
            from_return.append((last - returned) * 1000)
            from_send.append((last - sent) * 1000)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return {
        "changes": changes,
        "zones": len(dep.zones),
        "policies_at_global": await count_policies(http, dep.global_),
        "from_put_return_ms": summary(from_return),
        "from_put_send_ms": summary(from_send),
        "landed_before_put_returned": sum(1 for v in from_return if v <= 0),
        **cpu.result(),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2),
        "mean": round(sum(values) / len(values), 2),
    }


# -- 2. bulk and RSS ------------------------------------------------------------------------------


async def bulk(
    http: aiohttp.ClientSession, dep: Deployment, count: int, total: int
) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await put(http, dep.global_, policy(f"load-{i:05}"))

    cpu = CpuMeter(dep)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(PUT_CONCURRENCY)))
    loaded = time.perf_counter()
    zones = dep.zones
    held = await asyncio.gather(*(wait_count(http, z, total) for z in zones))
    return {
        "policies": count,
        "put_rate_per_s": round(count / (loaded - started)),
        "all_zones_hold_all_s_after_last_put": round(max(held) - loaded, 3),
        "global_rss_kib": rss_kib(dep.global_.pid),
        "zone_rss_kib_mean": round(sum(rss_kib(z.pid)["VmRSS"] for z in zones) / len(zones)),
        **cpu.result(),
    }


# -- 3. cold sync ---------------------------------------------------------------------------------


def _since(when: Any, start: float | None) -> float | None:
    if not isinstance(when, int | float) or start is None:
        return None
    return round(when - start, 3)


def connected_at(status: dict[str, Any]) -> float | None:
    """Wall-clock time the zone's current KDS connection started (its `GET /_kds`)."""
    since = status.get("connectedSince")
    if not isinstance(since, str):
        return None
    return datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


async def cold_sync(http: aiohttp.ClientSession, dep: Deployment, total: int) -> dict[str, Any]:
    zone = dep.zone("zone-cold", len(dep.zones))
    await issue_zone_token(http, dep, zone.name)
    zone.start()
    ready = await wait_ready(http, zone)
    held = await wait_count(http, zone, total)
    held_wall = time.time()
    async with http.get(zone.api + "/_kds") as resp:
        status = await resp.json()
    connected = connected_at(status)
    received = status["received"]["MeshTimeout"]
    return {
        "policies": total,
        "from_process_start_s": round(held - zone.started, 3),
        "from_api_ready_s": round(held - ready, 3),
        "from_kds_connected_s": None if connected is None else round(held_wall - connected, 3),
        # Splits the time after the connection: the global builds and sends the response, the
        # zone decodes it (until it is received), then validates and stores it (until held).
        "response_received_after_connect_s": _since(received.get("lastReceivedTime"), connected),
        "responses_received": received.get("responsesReceived"),
        "zone_rss_kib": rss_kib(zone.pid),
        "zone_cpu_s_since_start": round(cpu_seconds(zone.pid), 2),
        "load_average_1m": load_average(),
    }


# -- main -----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    dep = Deployment.create(root)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        try:
            dep.global_.start()
            await wait_ready(http, dep.global_)
            # Every request as the admin: writes at the global, /_watch at the zones (whose
            # copy of the user-token public key arrives with their first sync).
            http.headers["Authorization"] = f"Bearer {dep.admin_token()}"
            zones = [dep.zone(f"zone-{i + 1}", i) for i in range(args.zones)]
            for zone in zones:
                await issue_zone_token(http, dep, zone.name)
                zone.start()
            await asyncio.gather(*(wait_ready(http, z) for z in zones))
            await asyncio.gather(*(wait_connected(http, z) for z in zones))
            print(f"deployment: global + {len(zones)} zones up (logs in {root})", flush=True)
            results: dict[str, Any] = {"global_rss_kib_idle": rss_kib(dep.global_.pid)}
            few = await propagation(http, dep, args.changes, args.names)
            results["propagation"] = few
            print_propagation(few)
            total = min(args.changes, args.names) + args.policies
            results["bulk"] = await bulk(http, dep, args.policies, total)
            print_bulk(results["bulk"], len(zones))
            many = await propagation(http, dep, args.changes, args.names, first_seq=args.changes)
            results["propagation_loaded"] = many
            results["global_rss_kib_loaded"] = rss_kib(dep.global_.pid)
            print_propagation(many)
            results["cold_sync"] = await cold_sync(http, dep, total)
            print_cold(results["cold_sync"])
            print_comparison(few, many)
            return results
        finally:
            dep.stop()


def print_propagation(res: dict[str, Any]) -> None:
    ret, snd = res["from_put_return_ms"], res["from_put_send_ms"]
    verdict = "meets" if ret["p99"] <= TARGET_P99_MS else "MISSES"
    print(
        f"propagation, {res['changes']} single changes to {res['zones']} zones with "
        f"{res['policies_at_global']} policies at the global (every zone's /_watch): from PUT "
        f"return p50 {ret['p50']} ms, p99 {ret['p99']} ms, max {ret['max']} ms ({verdict} p99 "
        f"<= {TARGET_P99_MS:g} ms); from PUT sent p50 {snd['p50']} ms, p99 {snd['p99']} ms; "
        f"CPU global {res['global_cpu_s']} s, zones {res['zones_cpu_s']} s; load "
        f"{res['load_average_1m']}",
        flush=True,
    )


def print_bulk(res: dict[str, Any], zones: int) -> None:
    rss = res["global_rss_kib"]
    print(
        f"bulk: {res['policies']} policies PUT at {res['put_rate_per_s']}/s; all {zones} zones "
        f"held them {res['all_zones_hold_all_s_after_last_put']} s after the last PUT; global "
        f"RSS {rss['VmRSS'] / 1024:.1f} MiB (peak {rss['VmHWM'] / 1024:.1f} MiB), zone RSS mean "
        f"{res['zone_rss_kib_mean'] / 1024:.1f} MiB; CPU global {res['global_cpu_s']} s, zones "
        f"{res['zones_cpu_s']} s; load {res['load_average_1m']}",
        flush=True,
    )


def print_cold(res: dict[str, Any]) -> None:
    verdict = "meets" if res["from_process_start_s"] <= TARGET_COLD_S else "MISSES"
    print(
        f"cold sync of a new zone, {res['policies']} policies: {res['from_process_start_s']} s "
        f"from process start ({verdict} <= {TARGET_COLD_S:g} s), {res['from_api_ready_s']} s "
        f"from API ready, {res['from_kds_connected_s']} s from KDS connected "
        f"({res['responses_received']} response(s), received "
        f"{res['response_received_after_connect_s']} s after connecting); the zone used "
        f"{res['zone_cpu_s_since_start']} s CPU since it started; load {res['load_average_1m']}"
    )


def print_comparison(*rounds: dict[str, Any]) -> None:
    p99 = max(r["from_put_return_ms"]["p99"] for r in rounds)
    kuma_ms = KUMA_REFRESH_S * 1000
    print(
        f"vs Kuma: its default KDS snapshot refresh is {kuma_ms:g} ms (Kuma's published default, "
        f"KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL in kuma-cp's configuration reference; not "
        f"measured here), so a single change can wait up to "
        f"{kuma_ms:g} ms before it is even sent; meshfed p99 {p99} ms end to end "
        f"= {kuma_ms / max(p99, 0.01):.0f}x below that bound"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--names", type=int, default=20, help="policies the changes cycle over")
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="meshfed-kds-bench-"))
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
