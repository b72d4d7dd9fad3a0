"""Dataplane churn in one zone: registrations per second through the zone's API, and the zone's
CPU per registration, with N Dataplanes already present (issue 19).

    .venv/bin/python benchmarks/zone_churn.py [--present 1000,2000] [--changes 400] \
        [--services 500] [--clients 8] [--via api|streams] [--fanout] [--restart N] \
        [--profile FILE] [--json FILE]

One global-cp and one zone-cp (embedded SQLite stores, KDS over TLS with a zone token, as
`benchmarks/kds_propagation.py` deploys them). For each N of `--present`, in increasing order:
the zone is filled up to N Dataplanes (32 PUTs at a time, not measured), then `--changes` new
Dataplanes are PUT by `--clients` concurrent clients, measured:

- registrations/s: changes / (time from the first PUT until the zone's catalog counts every
  instance, `GET /meshes/default/services`): the API's rate AND the catalog keeping up;
- zone CPU per registration: the zone-cp process's CPU time (utime + stime from /proc) over the
  same interval divided by the changes; flat from 1k to 10k when a change costs a constant.

Each Dataplane has one inbound of service `svc-<i mod --services>`; the zone has its own
ZoneIngress (unless `--no-ingress`), whose `availableServices` it keeps current and syncs to
the global. The load average is printed
with each phase: on a shared machine wall times swing with the neighbours, CPU time much less.
`--profile FILE` runs the zone under cProfile, measured phases only (pstats to FILE when it stops).
`--fanout` (with `--via streams`): after each phase, with its sidecars still connected and
quiet, one new endpoint of svc-0 is PUT; printed: how long until every connected sidecar that
calls svc-0 received a new config (issue 19 item 2: <= 1 s with 1,000 connected), and how
many that do not call it received one anyway (should be none).
`--restart N` (with `--via streams`; starts zone-2 and gives both zones a DNS port): after
each phase, N of its sidecars are restarted (stream cancelled, a new one), then printed: how
long after the last restart zone-1's catalog, the global's and zone-2's count every
instance again and both zones' DNS answer every service with its VIP (issue 19: <= 5 s).
Each phase also prints the cores the zone, the global and this process's clients used, and
per registration what the clients sent (Hello, ACKs, Reports, ACKs carrying the report) and
the zone's counters (configs sent, ACKs, KDS responses, resources and bytes sent up to the
global, store calls by operation). The clients run on uvloop (`--client-loop asyncio`:
asyncio's own loop, as before): real sidecars run elsewhere.
Issue 19's target: >= 500 registrations/s with 10,000 Dataplanes present; CPU per change
within 2x from 1k to 10k. Not a test: prints numbers, exits 0 unless the deployment fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from _support import cpu_seconds, free_port
from dnslib import DNSRecord
from kds_propagation import (
    Deployment,
    Node,
    issue_zone_token,
    load_average,
    rss_kib,
    wait_connected,
    wait_ready,
)

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.protocol import ProxyType, ack_message, hello_message
from meshfed.process import loop_factory

TARGET_RATE = 500.0
# Whether the code on the path knows Config.ack_report (the script also measures older
# commits, run with their code first on PYTHONPATH, whose messages lack the field).
ACK_REPORT_KNOWN = "ack_report" in pb.Config.DESCRIPTOR.fields_by_name
STREAM_PATH = f"/{pb.DESCRIPTOR.services_by_name['DataplaneConfig'].full_name}/Stream"
TOKEN_SERVICES = 64
STREAM_TIMEOUT = 30.0
INBOUND_PORT = 8080  # kuma.io/service values one dataplane token may carry
FILL_CONCURRENCY = 32
POLL_S = 0.05
FANOUT_QUIET_S = 1.0  # no config for this long before the fan-out change
FANOUT_WATCH_S = 2.0  # how long after it a config counts as caused by it


def dataplane(i: int, services: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"dp-{i}",
        "networking": {
            "address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "inbound": [{"port": INBOUND_PORT, "tags": {"kuma.io/service": f"svc-{i % services}"}}],
        },
    }


async def put_dataplanes(
    http: aiohttp.ClientSession, zone: Node, first: int, count: int, services: int, clients: int
) -> None:
    """PUTs dp-<first> .. dp-<first+count-1> with `clients` requests in flight."""
    queue = iter(range(first, first + count))

    async def client() -> None:
        for i in queue:
            doc = dataplane(i, services)
            async with http.put(
                f"{zone.api}/meshes/default/dataplanes/{doc['name']}", json=doc
            ) as r:
                if r.status not in (200, 201):
                    raise RuntimeError(f"PUT {doc['name']}: {r.status} {await r.text()}")
                await r.read()

    await asyncio.gather(*(client() for _ in range(clients)))


class Streams:
    """Sidecars registering through the zone's dataplane server as mesh-dp does: a stream
    with a dataplane token, a Hello with the Dataplane and the two services it calls; the
    registration is done when its first config arrives. The streams stay open (a sidecar
    stays connected), their later configs read and dropped, until `close`."""

    def __init__(self, target: str, tokens: list[str], services: int, clients: int) -> None:
        self._channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
        self._tokens = tokens
        self._services = services
        self._open: dict[int, asyncio.Task[None]] = {}  # sidecar -> its stream
        self.configs: dict[int, list[float]] = {}  # sidecar -> when each config arrived
        # Messages written to the zone, by kind ("ack+report": an ACK carrying the report).
        self.sent: dict[str, int] = dict.fromkeys(("hello", "ack", "report", "ack+report"), 0)

    async def register(self, first: int, count: int) -> float:
        """Connects sidecars first .. first+count-1, `clients` at a time, each until its
        first config; one already connected is restarted (its stream cancelled, as when
        mesh-dp dies, then a new one). Returns when the last one was (re)connected."""
        queue = iter(range(first, first + count))
        last = 0.0

        async def client(channel: grpc.aio.Channel) -> None:
            nonlocal last
            stub = channel.stream_stream(
                STREAM_PATH,
                request_serializer=pb.DpMessage.SerializeToString,
                response_deserializer=pb.CpMessage.FromString,
            )
            for i in queue:
                old = self._open.pop(i, None)
                if old is not None:
                    old.cancel()
                    await asyncio.gather(old, return_exceptions=True)
                configured = asyncio.get_running_loop().create_future()
                last = time.monotonic()
                self._open[i] = asyncio.create_task(self._stream(stub, i, configured))
                try:
                    await asyncio.wait_for(configured, STREAM_TIMEOUT)
                except TimeoutError:
                    raise RuntimeError(f"dp-{i}: no config in {STREAM_TIMEOUT:g} s") from None

        await asyncio.gather(*(client(c) for c in self._channels))
        return last

    async def _stream(
        self,
        stub: grpc.aio.StreamStreamMultiCallable[pb.DpMessage, pb.CpMessage],
        i: int,
        configured: asyncio.Future[None],
    ) -> None:
        s = self._services
        calls = calls_of(i, s)
        token = self._tokens[(i % s) // TOKEN_SERVICES]
        hello = hello_message(ProxyType.SIDECAR, dataplane(i, s), reachable=calls)
        call = stub(None, metadata=(("authorization", f"Bearer {token}"),))
        try:
            await call.write(hello)
            self.sent["hello"] += 1
            async for msg in call:
                assert isinstance(msg, pb.CpMessage)
                kind = msg.WhichOneof("message")
                if kind == "error" and not configured.done():
                    configured.set_exception(RuntimeError(f"dp-{i}: {msg.error}"))
                elif kind == "config":
                    self.configs.setdefault(i, []).append(time.monotonic())
                    # Applied, and the application answers: the inbound becomes ready. As
                    # mesh-dp (meshfed.proxy.cpclient): the report inside the ACK when the
                    # zone reads it there, else a Report right after the ACK.
                    version = msg.config.version
                    status = pb.InboundStatus(port=INBOUND_PORT, ready=True)
                    report = pb.Report(inbounds=[status], config_version=version)
                    if ACK_REPORT_KNOWN and msg.config.ack_report:
                        await call.write(ack_message(version, report))
                        self.sent["ack+report"] += 1
                    else:
                        await call.write(ack_message(version))
                        await call.write(pb.DpMessage(report=report))
                        self.sent["ack"] += 1
                        self.sent["report"] += 1
                    if not configured.done():
                        configured.set_result(None)
        except grpc.aio.AioRpcError as exc:
            if not configured.done():
                configured.set_exception(RuntimeError(f"dp-{i}: {exc.code()} {exc.details()}"))
        except Exception as exc:
            if not configured.done():
                configured.set_exception(RuntimeError(f"dp-{i}: {exc!r}"))
            raise
        finally:
            call.cancel()

    def last_config(self) -> float:
        return max((times[-1] for times in self.configs.values()), default=0.0)

    async def quiet(self, quiet_s: float, timeout: float = 120) -> None:
        """Waits until no sidecar has received a config for `quiet_s`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_config() < quiet_s:
            if time.monotonic() > deadline:
                raise RuntimeError(f"configs still arriving after {timeout:g} s")
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        for task in self._open.values():
            task.cancel()
        await asyncio.gather(*self._open.values(), return_exceptions=True)
        self._open = {}
        for channel in self._channels:
            await channel.close(None)


def calls_of(i: int, services: int) -> set[str]:
    """The two services sidecar i calls (its Hello's reachable services)."""
    return {f"svc-{(i + 1) % services}", f"svc-{(i + 2) % services}"}


async def fanout(
    http: aiohttp.ClientSession, zone: Node, streams: Streams, first: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Issue 19 item 2: with the phase's sidecars connected (and quiet), one new endpoint of
    svc-0 (a Dataplane PUT through the API): how long until every sidecar that calls svc-0
    has a new config, and how many of the others got one within FANOUT_WATCH_S."""
    target = "svc-0"
    connected = range(first, first + args.changes)
    callers = {i for i in connected if target in calls_of(i, args.services)}
    await streams.quiet(FANOUT_QUIET_S)
    doc = dataplane(0, args.services) | {"name": "fanout-probe"}
    doc["networking"]["address"] = "10.255.255.254"
    started = time.monotonic()
    async with http.put(f"{zone.api}/meshes/default/dataplanes/fanout-probe", json=doc) as r:
        if r.status not in (200, 201):
            raise RuntimeError(f"PUT fanout-probe: {r.status} {await r.text()}")

    def after(i: int) -> float | None:
        return next((t for t in streams.configs.get(i, ()) if t > started), None)

    deadline = started + 30
    while True:  # polled: the streams only append arrival times
        if all(after(i) is not None for i in callers) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, started + FANOUT_WATCH_S - time.monotonic()))
    latencies = sorted(t - started for i in callers if (t := after(i)) is not None)
    others = sum(1 for i in connected if i not in callers and after(i) is not None)
    async with http.delete(f"{zone.api}/meshes/default/dataplanes/fanout-probe") as r:
        await r.read()
    return {
        "connected": len(connected),
        "callers": len(callers),
        "callers_updated": len(latencies),
        "p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
        "others_updated": others,
    }


def print_fanout(res: dict[str, Any]) -> None:
    ok = res["callers_updated"] == res["callers"] and (res["max_s"] or 99) <= 1.0
    print(
        f"fan-out: {res['connected']} sidecars connected; one new svc-0 endpoint reached "
        f"{res['callers_updated']} of its {res['callers']} callers, p50 {res['p50_s']} s, max "
        f"{res['max_s']} s ({'meets' if ok else 'MISSES'} <= 1 s); "
        f"{res['others_updated']} other sidecars got a config ({FANOUT_WATCH_S:g} s watched)",
        flush=True,
    )


ZONE = "zone-1"
OTHER_ZONE = "zone-2"
RESTART_TARGET_S = 5.0  # issue 19: converged within 5 s of the last restart


async def zone_counts(http: aiohttp.ClientSession, node: Node) -> dict[str, tuple[int, str]]:
    """Per service, the instances `node` (a zone, or the global) counts in zone-1, and the VIP
    it answers `<service>.mesh` with ("" on the global, which has no DNS)."""
    async with http.get(f"{node.api}/meshes/default/services") as resp:
        body = await resp.json()
    out = {}
    for item in body["items"]:
        count = sum(z["instances"] for z in item["zones"] if z["zone"] == ZONE)
        out[item["service"]] = (count, item.get("vip") or "")
    return out


def dns_agrees(port: int, vips: dict[str, tuple[int, str]]) -> bool:
    """Whether the zone DNS on `port` answers every `<service>.mesh` with the VIP its API
    lists (synchronous: a few hundred UDP round trips on loopback)."""
    for service, (_, vip) in vips.items():
        question = DNSRecord.question(f"{service}.mesh")
        try:
            reply = DNSRecord.parse(question.send("127.0.0.1", port, timeout=1.0))
        except OSError:
            return False
        if not vip or [str(r.rdata) for r in reply.rr] != [vip]:
            return False
    return True


async def converged(
    http: aiohttp.ClientSession,
    views: dict[str, tuple[Node, int | None]],
    expected: dict[str, int],
    since: float,
    timeout: float = 30,
) -> dict[str, float | None]:
    """Seconds from `since` until each view (name -> node and its DNS port, None for the
    global) counts `expected` instances of every zone-1 service and, for a zone, its DNS
    answers every name with the VIP it lists; None if not within `timeout`."""
    done: dict[str, float | None] = dict.fromkeys(views)
    deadline = since + timeout
    while any(t is None for t in done.values()) and time.monotonic() < deadline:
        for name, (node, dns_port) in views.items():
            if done[name] is not None:
                continue
            counts = await zone_counts(http, node)
            agree = {s: c for s, (c, _) in counts.items() if c} == expected
            if agree and dns_port is not None:
                agree = dns_agrees(dns_port, {s: counts[s] for s in expected})
            if agree:
                done[name] = round(time.monotonic() - since, 3)
        await asyncio.sleep(POLL_S)
    return done


async def rolling_restart(
    http: aiohttp.ClientSession,
    views: dict[str, tuple[Node, int | None]],
    streams: Streams,
    first: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Issue 19: restarts `--restart` of the phase's sidecars (`--clients` at a time: stream
    cancelled, new stream, until its first config), then times, from when the last one
    reconnected, until zone-1, the global and zone-2 (and both zones' DNS) agree again on
    every zone-1 service's instances."""
    zone1 = views[ZONE][0]
    expected = {s: c for s, (c, _) in (await zone_counts(http, zone1)).items() if c}
    before = await converged(http, views, expected, time.monotonic())
    if any(t is None for t in before.values()):
        raise RuntimeError(f"the views never agreed before the restart: {before}")
    started = time.monotonic()
    last = await streams.register(first, args.restart)
    restart_s = time.monotonic() - started
    after = await converged(http, views, expected, last)
    for name, (node, _) in views.items():
        if after[name] is None:
            counts = {s: c for s, (c, _) in (await zone_counts(http, node)).items() if c}
            wrong = {s: (c, expected.get(s)) for s, c in counts.items() if c != expected.get(s)}
            missing = sorted(expected.keys() - counts.keys())
            print(
                f"  {name} disagrees: {len(wrong)} wrong {list(wrong.items())[:5]}, "
                f"missing {missing[:5]}",
                flush=True,
            )
    times = [t for t in after.values() if t is not None]
    slowest = max(times) if len(times) == len(after) else None
    return {
        "restarted": args.restart,
        "instances": sum(expected.values()),
        "restart_s": round(restart_s, 2),
        "restarts_per_s": round(args.restart / restart_s, 1),
        "converged_s": after,
        "all_converged_s": slowest,
        "load_average_1m": load_average(),
    }


def print_restart(res: dict[str, Any]) -> None:
    slowest = res["all_converged_s"]
    ok = slowest is not None and slowest <= RESTART_TARGET_S
    print(
        f"rolling restart: {res['restarted']} sidecars restarted in {res['restart_s']} s "
        f"({res['restarts_per_s']}/s); from the last restart until zone-1, the global and "
        f"zone-2 (with both zones' DNS) agree on the {res['instances']} instances: {slowest} s "
        f"({'meets' if ok else 'MISSES'} <= {RESTART_TARGET_S:g} s; each: "
        f"{res['converged_s']}); load {res['load_average_1m']}",
        flush=True,
    )


async def dataplane_tokens(
    http: aiohttp.ClientSession, zone: Node, services: int, timeout: float = 60
) -> list[str]:
    """One token per TOKEN_SERVICES services (the zone answers 400 until the mesh's signing
    key has come from the global)."""
    tokens = []
    deadline = time.monotonic() + timeout
    for first in range(0, services, TOKEN_SERVICES):
        names = [f"svc-{j}" for j in range(first, min(services, first + TOKEN_SERVICES))]
        body = {"mesh": "default", "tags": {"kuma.io/service": names}, "validFor": "24h"}
        while True:
            async with http.post(f"{zone.api}/tokens/dataplane", json=body) as resp:
                text = await resp.text()
                if resp.status == 200:
                    tokens.append(text.strip())
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no dataplane token: {resp.status} {text}")
            await asyncio.sleep(POLL_S)
    return tokens


async def instances(http: aiohttp.ClientSession, zone: Node) -> int:
    async with http.get(f"{zone.api}/meshes/default/services") as resp:
        body = await resp.json()
    return sum(int(item["instances"]) for item in body["items"])


async def wait_instances(
    http: aiohttp.ClientSession, zone: Node, want: int, timeout: float = 600
) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await instances(http, zone)) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the zone's catalog counts {seen} instances, not {want}")
        await asyncio.sleep(POLL_S)


async def phase(
    http: aiohttp.ClientSession,
    zone: Node,
    global_pid: int,
    present: int,
    args: argparse.Namespace,
    streams: Streams | None,
) -> dict[str, Any]:
    load_before = load_average()
    counters_before = await zone_counters(http, zone)
    sent_before = dict(streams.sent) if streams is not None else {}
    if args.profile:
        os.kill(zone.pid, signal.SIGUSR1)
    cpu_before = cpu_seconds(zone.pid)
    global_before, own_before = cpu_seconds(global_pid), time.process_time()
    started = time.perf_counter()
    if streams is None:
        await put_dataplanes(http, zone, present, args.changes, args.services, args.clients)
    else:
        await streams.register(present, args.changes)
    api_s = time.perf_counter() - started
    await wait_instances(http, zone, present + args.changes)
    total_s = time.perf_counter() - started
    cpu = cpu_seconds(zone.pid) - cpu_before
    if args.profile:
        os.kill(zone.pid, signal.SIGUSR2)
    global_cpu, own_cpu = cpu_seconds(global_pid) - global_before, time.process_time() - own_before
    counters = await zone_counters(http, zone)
    # Per registration (load-independent): what the zone sent and read. The zone's counters
    # run on after the phase's end (callers' configs, insight flushes), so these are read
    # when the catalog counted everyone: a lower bound of the phase's work.
    per = {k: round((v - counters_before.get(k, 0)) / args.changes, 2) for k, v in counters.items()}
    if streams is not None:
        per |= {
            f"messages_{k}": round((v - sent_before[k]) / args.changes, 2)
            for k, v in streams.sent.items()
        }
    return {
        "via": args.via,
        "present": present,
        "changes": args.changes,
        "clients": args.clients,
        "registrations_per_s": round(args.changes / total_s, 1),
        "acknowledged_rate_per_s": round(args.changes / api_s, 1),
        "zone_cpu_ms_per_change": round(1000 * cpu / args.changes, 2),
        "zone_rss_mib": round(rss_kib(zone.pid)["VmRSS"] / 1024, 1),
        # How busy the machine was with this benchmark: zone, global and the clients here,
        # in cores (CPU seconds per second of the phase).
        "cores": {
            "zone": round(cpu / total_s, 2),
            "global": round(global_cpu / total_s, 2),
            "clients": round(own_cpu / total_s, 2),
        },
        "load_average_1m": round(max(load_before, load_average()), 2),
        "per_registration": per,
    }


ZONE_COUNTERS = {
    "meshfed_dp_server_configs_sent_total": "configs",
    "meshfed_dp_server_acks_total": "acks",
    "meshfed_kds_resources_sent_total": "kds_resources_up",  # upserts only
    "meshfed_kds_responses_sent_total": "kds_responses_up",
    "meshfed_kds_response_bytes_sent_total": "kds_bytes_up",
}
STORE_CALLS = "meshfed_store_operation_duration_seconds_count"  # per operation: store_<op>


async def zone_counters(http: aiohttp.ClientSession, zone: Node) -> dict[str, float]:
    """The zone's counters of ZONE_COUNTERS (summed over labels) and its store calls per
    operation (each a round trip to the store's thread), from its /metrics."""
    async with http.get(f"{zone.api}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = dict.fromkeys(ZONE_COUNTERS.values(), 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        value = line.rsplit(" ", 1)[-1]
        if name == STORE_CALLS and 'operation="' in line:
            op = line.split('operation="', 1)[1].split('"', 1)[0]
            out[f"store_{op}"] = out.get(f"store_{op}", 0.0) + float(value)
        if name in ZONE_COUNTERS and not line.startswith("#"):
            if name == "meshfed_kds_resources_sent_total" and 'op="upsert"' not in line:
                continue
            out[ZONE_COUNTERS[name]] += float(value)
    return out


def print_phase(res: dict[str, Any]) -> None:
    verdict = "meets" if res["registrations_per_s"] >= TARGET_RATE else "MISSES"
    alone = "API PUTs answered" if res["via"] == "api" else "first configs received"
    print(
        f"{res['present']:>6} present: {res['changes']} registrations ({res['via']}) by "
        f"{res['clients']} clients at {res['registrations_per_s']}/s into the catalog "
        f"({verdict} >= {TARGET_RATE:g}/s; {alone} at {res['acknowledged_rate_per_s']}/s); "
        f"zone CPU {res['zone_cpu_ms_per_change']} ms per registration; zone RSS "
        f"{res['zone_rss_mib']} MiB; cores used: {res['cores']}; load {res['load_average_1m']}; "
        f"per registration: {res['per_registration']}",
        flush=True,
    )


def profiled(node: Node, out: Path) -> None:
    """Runs the node's program under cProfile instead (pstats to `out` when it stops), profiling
    only between SIGUSR1 and SIGUSR2 (`phase` sends them around each measured phase). Timed
    by the main thread's CPU clock: on a shared machine a wall clock charges a function with
    the time the scheduler gave other processes, or the GIL other threads."""
    module = {"zone-cp": "zone_cp.main", "global-cp": "global_cp.main"}[Path(node.argv[0]).name]
    code = (
        # Not the working directory first (-c puts it there): PYTHONPATH picks the code.
        "import cProfile, signal, sys, time; sys.path.remove(''); "
        "from importlib import import_module; "
        f"sys.argv = {node.argv!r}; main = import_module({module!r}).main; "
        "p = cProfile.Profile(time.thread_time)\n"
        # Only the measured phases (`phase` signals their start and end), not the fill.
        "signal.signal(signal.SIGUSR1, lambda *_: p.enable())\n"
        "signal.signal(signal.SIGUSR2, lambda *_: p.disable())\n"
        f"try:\n    main()\nfinally:\n    p.disable()\n    p.dump_stats({str(out)!r})\n"
    )
    node.argv = [sys.executable, "-c", code]


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    dep = Deployment.create(root)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        try:
            dep.global_.start()
            await wait_ready(http, dep.global_)
            http.headers["Authorization"] = f"Bearer {dep.admin_token()}"
            zone = dep.zone(ZONE, 0)
            dp_server = f"127.0.0.1:{free_port()}"
            zone.env["MESHFED_DP_SERVER_ADDRESS"] = dp_server
            if args.profile:
                profiled(zone, args.profile.resolve())
            # With --restart, zone-2 is the other zone whose view of zone-1 must converge.
            views: dict[str, tuple[Node, int | None]] = {"global": (dep.global_, None)}
            for node in [zone, dep.zone(OTHER_ZONE, 1)] if args.restart else [zone]:
                dns_port = free_port()
                node.env["MESHFED_DNS_ADDRESS"] = f"127.0.0.1:{dns_port}"
                views[node.name] = (node, dns_port)
                await issue_zone_token(http, dep, node.name)
                node.start()
                await wait_ready(http, node)
                await wait_connected(http, node)
            # The default Mesh comes from the global; the zone takes Dataplanes once it has it.
            deadline = time.monotonic() + 60
            while True:
                async with http.get(f"{zone.api}/meshes/default") as resp:
                    if resp.status == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the zone never received the default Mesh")
                await asyncio.sleep(POLL_S)
            if not args.no_ingress:
                # The zone's own ingress, whose availableServices the zone keeps current (and
                # sends to the global) as the Dataplanes come.
                doc = {
                    "type": "ZoneIngress",
                    "name": "zone-1-ingress",
                    "networking": {"address": "127.0.0.1", "port": 10001},
                }
                async with http.put(f"{zone.api}/zoneingresses/{doc['name']}", json=doc) as r:
                    if r.status not in (200, 201):
                        raise RuntimeError(f"PUT ZoneIngress: {r.status} {await r.text()}")
            print(f"deployment: global + 1 zone up (logs in {root})", flush=True)
            tokens = []
            if args.via == "streams":
                tokens = await dataplane_tokens(http, zone, args.services)
            phases = []
            have = 0
            for present in sorted(args.present):
                if present > have:
                    fill = time.perf_counter()
                    await put_dataplanes(
                        http, zone, have, present - have, args.services, FILL_CONCURRENCY
                    )
                    await wait_instances(http, zone, present)
                    print(
                        f"filled to {present} Dataplanes in {time.perf_counter() - fill:.1f} s",
                        flush=True,
                    )
                    have = present
                # The measured Dataplanes get numbers past every later phase's fill.
                streams = None
                if args.via == "streams":
                    streams = Streams(dp_server, tokens, args.services, args.clients)
                try:
                    res = await phase(http, zone, dep.global_.pid, have, args, streams)
                    print_phase(res)
                    if streams is not None and args.fanout:
                        res["fanout"] = await fanout(http, zone, streams, have, args)
                        print_fanout(res["fanout"])
                        await wait_instances_exactly(http, zone, have + args.changes)
                    if streams is not None and args.restart:
                        res["restart"] = await rolling_restart(http, views, streams, have, args)
                        print_restart(res["restart"])
                finally:
                    if streams is not None:
                        await streams.close()
                phases.append(res)
                # Remove them again so the next fill starts from a known count.
                await delete_dataplanes(http, zone, have, args.changes, args.clients)
                await wait_instances_exactly(http, zone, have)
            return {"phases": phases}
        finally:
            dep.stop()


async def delete_dataplanes(
    http: aiohttp.ClientSession, zone: Node, first: int, count: int, clients: int
) -> None:
    queue = iter(range(first, first + count))

    async def client() -> None:
        for i in queue:
            async with http.delete(f"{zone.api}/meshes/default/dataplanes/dp-{i}") as r:
                await r.read()

    await asyncio.gather(*(client() for _ in range(clients)))


async def wait_instances_exactly(
    http: aiohttp.ClientSession, zone: Node, want: int, timeout: float = 600
) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await instances(http, zone)) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the zone's catalog counts {seen} instances, not {want}")
        await asyncio.sleep(POLL_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--present",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200, 1000],
        help="comma-separated Dataplane counts present before each measured phase",
    )
    parser.add_argument("--changes", type=int, default=400, help="registrations measured")
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--via",
        choices=("api", "streams"),
        default="api",
        help="register through the zone's API (Dataplane PUT) or its dataplane server",
    )
    parser.add_argument(
        "--fanout",
        action="store_true",
        help="with --via streams: after each phase, time one endpoint change's fan-out",
    )
    parser.add_argument(
        "--restart",
        type=int,
        default=0,
        help="with --via streams: after each phase, restart this many of its sidecars (at "
        "most --changes) and time until every view of zone-1 agrees again (starts zone-2)",
    )
    parser.add_argument(
        "--no-ingress", action="store_true", help="no own ZoneIngress (nothing to advertise)"
    )
    parser.add_argument(
        "--client-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the benchmark's own event loop (its clients); uvloop when installed",
    )
    parser.add_argument("--profile", type=Path, help="run the zone under cProfile, pstats here")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    args = parser.parse_args()
    if args.restart and (args.via != "streams" or args.restart > args.changes):
        parser.error("--restart needs --via streams and at most --changes sidecars")
    root = Path(tempfile.mkdtemp(prefix="meshfed-churn-bench-"))
    try:
        # The clients run on uvloop, as the control planes do (meshfed.process): a
        # sidecar's stream costs its own machine, not the zone's, so the less of the shared
        # cores the simulated sidecars take, the closer the zone's share is to a deployment's.
        factory = None if args.client_loop == "asyncio" else loop_factory()
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(run(args, root))
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}\nlogs and data kept in {root}", file=sys.stderr)
        return 1
    results["load_average_end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
