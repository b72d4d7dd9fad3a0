"""Zone DNS vs dnsmasq under dnsperf, measured alternately in one run.

    .venv/bin/python benchmarks/dns.py [--duration 10] [--rounds 3] [--workers 1]
    .venv/bin/python benchmarks/dns.py --target zone-cp [--propagation 50]

Both servers answer the same 20 `.mesh` names from loopback. Each round runs dnsperf for
`--duration` seconds against one server, then the other (the order alternates per round, so a
noisy neighbour hurts both alike). Reported per server: queries/s, lost queries, p50/p99 latency
(from dnsperf's per-query output) and server CPU time per query (from /proc, which is steadier
than q/s on a shared machine). Not a test: it prints numbers and exits 0 unless a tool fails.

`--target runner` (default) measures the standalone server (`python -m zone_cp.dns` over a JSON
table). `--target zone-cp` measures a real standalone zone-cp: the 20 services are registered
as Dataplanes through its API, its DNS answers with the VIPs it allocated, and dnsmasq gets the
same names and addresses. It also measures propagation: the time from a Dataplane PUT (or
DELETE) answered by the API until the zone's DNS answers the new name (or NXDOMAIN), polled
every 0.5 ms, `--propagation` times each way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from _support import process_tree, stop_process, total_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NAMES = [(f"svc-{i}.mesh", f"127.1.0.{i + 1}") for i in range(20)]


@dataclass
class Result:
    server: str
    round: int
    qps: float
    sent: int
    completed: int
    lost: int
    p50_ms: float
    p99_ms: float
    cpu_us_per_query: float


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on host."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def lookup(host: str, port: int, name: str, timeout: float = 0.3) -> tuple[int, list[str]]:
    """(rcode, A addresses) for `name` at host:port; rcode -1 when nothing came back."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    packet = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (host, port))
            reply = sock.recv(512)
        except OSError:
            return -1, []
    if reply[:2] != b"\x42\x42":
        return -1, []
    # Our servers echo the question and answer with uncompressed-pointer A records of 16 bytes.
    count = struct.unpack(">H", reply[6:8])[0]
    end = 12 + len(labels) + 4
    ips = []
    for i in range(count):
        rdata = reply[end + 16 * i + 12 : end + 16 * i + 16]
        ips.append(".".join(str(b) for b in rdata))
    return reply[3] & 0x0F, ips


def answers(host: str, port: int, name: str) -> bool:
    """Whether the server at host:port answers an A query for `name` with NOERROR."""
    rcode, ips = lookup(host, port, name)
    return rcode == 0 and bool(ips)


def wait_ready(proc: subprocess.Popen[bytes], host: str, port: int, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if answers(host, port, NAMES[0][0]):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer within 20 s")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def run_dnsperf(
    server: str, pid: int, host: str, port: int, args: argparse.Namespace, qfile: Path, rnd: int
) -> Result:
    argv = ["dnsperf", "-s", host, "-p", str(port), "-d", str(qfile), "-l", str(args.duration)]
    argv += ["-c", str(args.clients), "-q", str(args.outstanding), "-v"]
    pids = process_tree(pid)  # the runner's --workers are child processes
    cpu_before = total_cpu_seconds(pids)
    with tempfile.TemporaryFile() as out:
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True)
        cpu = total_cpu_seconds(pids) - cpu_before
        out.seek(0)
        text = out.read().decode(errors="replace")
    latencies: list[float] = []
    summary: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("> "):
            latencies.append(float(line.rsplit(None, 1)[1]))
        elif ":" in line:
            key, _, value = line.strip().partition(":")
            summary[key] = value.strip()
    completed = int(summary["Queries completed"].split()[0])
    return Result(
        server=server,
        round=rnd,
        qps=float(summary["Queries per second"]),
        sent=int(summary["Queries sent"]),
        completed=completed,
        lost=int(summary["Queries lost"].split()[0]),
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        cpu_us_per_query=cpu / max(completed, 1) * 1e6,
    )


def start_zone_dns(
    host: str, port: int, table: Path, workers: int, udp_io: str
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "zone_cp.dns", "--address", f"{host}:{port}"]
    argv += ["--table", str(table), "--workers", str(workers), "--udp-io", udp_io]
    argv += ["--log-level", "WARNING"]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)


def http(method: str, url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def dataplane(name: str, service: str, port: int) -> dict[str, object]:
    return {
        "type": "Dataplane",
        "name": name,
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "tags": {"kuma.io/service": service}}],
        },
    }


def start_zone_cp(host: str, api: int, dns: int, data_dir: Path) -> subprocess.Popen[bytes]:
    """A standalone zone-cp with a memory store: DNS, catalog and API in one process."""
    argv = [str(BIN / "zone-cp"), "run", "--zone", "bench", "--store", "memory"]
    argv += ["--api-address", f"{host}:{api}", "--dns-address", f"{host}:{dns}"]
    argv += ["--data-dir", str(data_dir), "--log-level", "warning"]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)


def register_services(
    proc: subprocess.Popen[bytes], host: str, api: int, dns: int
) -> list[tuple[str, str]]:
    """Registers svc-0..svc-19 as Dataplanes; returns (name, VIP) as the zone answers them."""
    base = f"http://{host}:{api}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"zone-cp exited with {proc.returncode}")
        try:
            http("GET", f"{base}/ready")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("zone-cp API not ready within 30 s") from None
            time.sleep(0.05)
    for i, (name, _) in enumerate(NAMES):
        service = name.removesuffix(".mesh")
        http(
            "PUT",
            f"{base}/meshes/default/dataplanes/{service}",
            dataplane(service, service, 8000 + i),
        )
    records = []
    for name, _ in NAMES:
        while not answers(host, dns, name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"zone-cp does not answer {name}")
            time.sleep(0.01)
        records.append((name, lookup(host, dns, name)[1][0]))
    return records


def propagation(host: str, api: int, dns: int, count: int) -> dict[str, dict[str, float]]:
    """Milliseconds from an API write until DNS reflects it: a new service, then its removal."""
    base = f"http://{host}:{api}/meshes/default/dataplanes"
    added: list[float] = []
    removed: list[float] = []
    for i in range(count):
        name = f"probe-{i}"
        start = time.perf_counter()
        http("PUT", f"{base}/{name}", dataplane(name, name, 9000))
        while lookup(host, dns, f"{name}.mesh", 1.0)[0] != 0:
            time.sleep(0.0005)
        added.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        http("DELETE", f"{base}/{name}")
        while lookup(host, dns, f"{name}.mesh", 1.0)[0] != 3:
            time.sleep(0.0005)
        removed.append((time.perf_counter() - start) * 1000)

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "median_ms": round(statistics.median(values), 2),
            "p90_ms": round(percentile(list(values), 90), 2),
            "max_ms": round(max(values), 2),
        }

    return {"add": stats(added), "remove": stats(removed)}


def start_dnsmasq(host: str, port: int, hosts_file: Path) -> subprocess.Popen[bytes]:
    # --local-ttl matches our TTL of 30 s; no config file, no resolv.conf, no /etc/hosts.
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--port={port}"]
    argv += [f"--listen-address={host}", "--bind-interfaces", "--no-resolv", "--no-hosts"]
    argv += [f"--addn-hosts={hosts_file}", "--local-ttl=30", "--user=root", "--pid-file="]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(results: list[Result]) -> dict[str, object]:
    by_server: dict[str, list[Result]] = {}
    for result in results:
        by_server.setdefault(result.server, []).append(result)
    ratios = []
    for rnd in sorted({r.round for r in results}):
        pair = {r.server: r for r in results if r.round == rnd}
        ratios.append(pair["zone-dns"].qps / pair["dnsmasq"].qps)

    def median(field: str) -> dict[str, float]:
        return {s: statistics.median(getattr(r, field) for r in rs) for s, rs in by_server.items()}

    return {
        "median_qps": median("qps"),
        "lost": {s: sum(r.lost for r in rs) for s, rs in by_server.items()},
        "median_p99_ms": median("p99_ms"),
        "median_cpu_us_per_query": median("cpu_us_per_query"),
        "ratio_per_round": [round(x, 3) for x in ratios],
        "median_ratio": statistics.median(ratios),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per dnsperf run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--clients", type=int, default=8, help="dnsperf -c (client sockets)")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--workers", type=int, default=1, help="zone DNS processes (SO_REUSEPORT)")
    parser.add_argument(
        "--udp-io", default="auto", choices=["auto", "batch", "asyncio"], help="zone DNS UDP path"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address for both servers")
    parser.add_argument(
        "--target",
        default="runner",
        choices=["runner", "zone-cp"],
        help="our side: the standalone DNS runner, or a real zone-cp with Dataplanes",
    )
    parser.add_argument(
        "--propagation",
        type=int,
        default=50,
        help="zone-cp target: API write -> DNS answer measurements, each way",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for tool in ("dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 1

    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        work = Path(tmp)
        qfile = work / "queries.txt"
        qfile.write_text("".join(f"{name} A\n" for name, _ in NAMES))
        hosts_file = work / "hosts"
        ours_port, theirs_port = free_port(args.host), free_port(args.host)
        results: list[Result] = []
        extra: dict[str, object] = {}
        if args.target == "zone-cp":
            api_port = free_port(args.host)
            ours = start_zone_cp(args.host, api_port, ours_port, work / "zone-cp")
            try:
                records = register_services(ours, args.host, api_port, ours_port)
            except BaseException:
                stop_process(ours)
                raise
        else:
            table = work / "table.json"
            table.write_text(json.dumps(dict(NAMES)))
            records = list(NAMES)
            ours = start_zone_dns(args.host, ours_port, table, args.workers, args.udp_io)
        hosts_file.write_text("".join(f"{ip} {name}\n" for name, ip in records))
        theirs = start_dnsmasq(args.host, theirs_port, hosts_file)
        try:
            wait_ready(ours, args.host, ours_port, "zone dns")
            wait_ready(theirs, args.host, theirs_port, "dnsmasq")
            for name, ip in records:  # the same answers from both, or the comparison is moot
                if lookup(args.host, theirs_port, name)[1] != [ip]:
                    raise RuntimeError(f"dnsmasq does not answer {name} with {ip}")
            targets = [("zone-dns", ours, ours_port), ("dnsmasq", theirs, theirs_port)]
            for rnd in range(args.rounds):
                for name, proc, port in targets if rnd % 2 == 0 else targets[::-1]:
                    result = run_dnsperf(name, proc.pid, args.host, port, args, qfile, rnd)
                    results.append(result)
                    print(
                        f"round {rnd} {name:9} {result.qps:10.0f} q/s  lost {result.lost:5d}  "
                        f"p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms  "
                        f"cpu {result.cpu_us_per_query:5.2f} us/q",
                        flush=True,
                    )
            if args.target == "zone-cp" and args.propagation > 0:
                extra["propagation"] = propagation(args.host, api_port, ours_port, args.propagation)
                print(f"propagation {extra['propagation']}", flush=True)
        finally:
            stop_process(ours)
            stop_process(theirs)

    summary = summarize(results) | extra
    command = " ".join(sys.argv)
    print(json.dumps({"command": command, **summary}, indent=2))
    if args.json:
        payload = {"command": command, "results": [asdict(r) for r in results], **summary}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
