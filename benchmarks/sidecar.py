"""mesh-dp's data path: HTTP through web's sidecar and backend's sidecar (mTLS between them),
against two nginx stream proxies doing the same TLS origination and termination, alternating
in one run; and mesh-dp's memory with 100 outbound services.

    .venv/bin/python benchmarks/sidecar.py [--duration 10] [--rounds 3] [--connections 16]

Path measured (all on loopback):

    load generator -> web sidecar outbound (plain) -> mTLS -> backend sidecar inbound
                   -> echo app (`python -m mesh_dp.echo`, HTTP/1.1 keep-alive)

The load generator keeps `--connections` keep-alive connections, each sending `POST /echo`
with a 1 KiB body and waiting for the 1 KiB answer (closed loop). Reported: requests/s, p50
and p99 latency, and the two proxies' CPU time per request (from /proc). The peer is the same
shape with nginx's stream module (`proxy_ssl` with a client certificate on one side,
`ssl_verify_client` on the other), if `nginx` and its stream module are installed; otherwise
only mesh-dp is measured and the report says so. A direct run (load generator -> app) shows
what the app and load generator alone can do.

Not a test: it prints a table and a JSON line, and exits 0 unless a process fails to start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meshfed.dpconfig.model import (  # noqa: E402
    Endpoint,
    Inbound,
    Outbound,
    OutboundPolicies,
    SidecarConfig,
    Tls,
)
from meshfed.pki.ca import MeshCA, create_mesh_ca  # noqa: E402
from meshfed.pki.leaf import Leaf, issue_leaf  # noqa: E402
from meshfed.policy.permissions import Action, Permissions  # noqa: E402

BODY = b"x" * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def tls(leaf: Leaf, ca: MeshCA) -> Tls:
    return Tls(leaf.cert_pem.decode(), leaf.key_pem.decode(), (ca.cert_pem.decode(),), "")


def allow_all(mesh: str) -> Permissions:
    return Permissions(mesh=mesh, default=Action.ALLOW)


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def mesh_dp(procs: Procs, name: str, config: SidecarConfig) -> subprocess.Popen[bytes]:
    path = procs.tmp / f"{name}.json"
    path.write_bytes(config.to_bytes())
    admin = free_port()
    proc = procs.start(
        name,
        [
            # e.g. MESHFED_BENCH_WRAP="python -m cProfile -o /tmp/dp.prof" to profile
            *os.environ.get("MESHFED_BENCH_WRAP", "").split(),
            str(Path(sys.executable).parent / "mesh-dp"),
            "run",
            "--config-file",
            str(path),
            "--admin-address",
            f"127.0.0.1:{admin}",
            "--log-level",
            "warning",
        ],
    )
    wait_port("127.0.0.1", admin)
    return proc


# --- load generator -------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection: sends a request, waits for the whole answer, repeats."""

    def __init__(self, request: bytes, latencies: list[float], stop_at: float) -> None:
        self.request = request
        self.latencies = latencies
        self.stop_at = stop_at
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        now = time.perf_counter()
        self.latencies.append(now - self.sent_at)
        if now < self.stop_at:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.errors += 1
            self.done.set_result(None)


async def _load(host: str, port: int, connections: int, duration: float) -> list[float]:
    loop = asyncio.get_running_loop()
    request = (
        f"POST /echo HTTP/1.1\r\nHost: backend\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration
    clients = []
    for _ in range(connections):
        _, proto = await loop.create_connection(
            lambda: _Client(request, latencies, stop_at), host, port
        )
        clients.append(proto)
    await asyncio.gather(*(c.done for c in clients))
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    if any(c.errors for c in clients):
        raise RuntimeError("a connection was closed during the run")
    return latencies


def load(host: str, port: int, connections: int, duration: float) -> list[float]:
    try:
        import uvloop

        return uvloop.run(_load(host, port, connections, duration))
    except ImportError:
        return asyncio.run(_load(host, port, connections, duration))


@dataclass
class Result:
    path: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    proxy_cpu_us_per_request: float


def measure(
    path: str, rnd: int, port: int, pids: list[int], connections: int, duration: float
) -> Result:
    load("127.0.0.1", port, connections, 1.0)  # warm up: handshakes, caches
    before = sum(cpu_seconds(p) for p in pids)
    started = time.perf_counter()
    latencies = load("127.0.0.1", port, connections, duration)
    elapsed = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) for p in pids) - before
    latencies.sort()
    n = len(latencies)
    return Result(
        path=path,
        round=rnd,
        rps=n / elapsed,
        p50_ms=latencies[n // 2] * 1e3,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1e3,
        proxy_cpu_us_per_request=cpu / n * 1e6 if pids else 0.0,
    )


# --- the two set-ups ------------------------------------------------------------------------


@dataclass
class Setup:
    port: int  # where the load generator connects
    pids: list[int]  # the proxies


def start_meshfed(procs: Procs, ca: MeshCA, app_port: int) -> Setup:
    inbound_port, outbound_port = free_port(), free_port()
    backend = SidecarConfig(
        mesh="default",
        zone="zone-1",
        dataplane="backend-1",
        identity="spiffe://default/backend",
        mtls_enabled=True,
        inbounds=(
            Inbound(
                "",
                "127.0.0.1",
                inbound_port,
                "127.0.0.1",
                app_port,
                "backend",
                {},
                allow_all("default"),
            ),
        ),
        outbounds=(),
        tls=tls(issue_leaf(ca, "backend"), ca),
    ).stamped()
    web = SidecarConfig(
        mesh="default",
        zone="zone-1",
        dataplane="web-1",
        identity="spiffe://default/web",
        mtls_enabled=True,
        inbounds=(
            Inbound("", "127.0.0.1", free_port(), "127.0.0.1", 1, "web", {}, allow_all("default")),
        ),
        outbounds=(
            Outbound(
                "backend",
                "127.0.0.1",
                outbound_port,
                (Endpoint("127.0.0.1", inbound_port, "zone-1"),),
                OutboundPolicies(),
            ),
        ),
        tls=tls(issue_leaf(ca, "web"), ca),
    ).stamped()
    pids = [mesh_dp(procs, "backend-sidecar", backend).pid, mesh_dp(procs, "web-sidecar", web).pid]
    wait_port("127.0.0.1", outbound_port)
    return Setup(outbound_port, pids)


NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}.err warn;
events {{ worker_connections 4096; }}
stream {{
    server {{
        {listen}
        proxy_pass 127.0.0.1:{upstream};
        {extra}
    }}
}}
"""


def nginx_module() -> str | None:
    for candidate in (
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/share/nginx/modules/ngx_stream_module.so",
    ):
        if Path(candidate).exists():
            return candidate
    return None


def start_nginx(procs: Procs, ca: MeshCA, app_port: int) -> Setup | None:
    nginx, module = shutil.which("nginx"), nginx_module()
    if nginx is None or module is None:
        return None
    tmp = procs.tmp
    for name, leaf in (("web", issue_leaf(ca, "web")), ("backend", issue_leaf(ca, "backend"))):
        (tmp / f"{name}.crt").write_bytes(leaf.cert_pem)
        (tmp / f"{name}.key").write_bytes(leaf.key_pem)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    inbound_port, outbound_port = free_port(), free_port()
    confs = {
        "backend": NGINX_CONF.format(
            module=module,
            tmp=tmp,
            name="backend",
            listen=f"listen 127.0.0.1:{inbound_port} ssl;",
            upstream=app_port,
            extra=f"ssl_certificate {tmp}/backend.crt; ssl_certificate_key {tmp}/backend.key; "
            f"ssl_client_certificate {tmp}/ca.crt; ssl_verify_client on;",
        ),
        "web": NGINX_CONF.format(
            module=module,
            tmp=tmp,
            name="web",
            listen=f"listen 127.0.0.1:{outbound_port};",
            upstream=inbound_port,
            extra=f"proxy_ssl on; proxy_ssl_certificate {tmp}/web.crt; "
            f"proxy_ssl_certificate_key {tmp}/web.key; proxy_ssl_trusted_certificate {tmp}/ca.crt; "
            "proxy_ssl_verify on; proxy_ssl_name backend; proxy_ssl_session_reuse on;",
        ),
    }
    pids = []
    for name, conf in confs.items():
        path = tmp / f"nginx-{name}.conf"
        path.write_text(conf)
        pids.append(procs.start(f"nginx-{name}", [nginx, "-c", str(path), "-e", "stderr"]).pid)
    wait_port("127.0.0.1", outbound_port)
    return Setup(outbound_port, pids)


def big_config(ca: MeshCA, services: int) -> SidecarConfig:
    """A sidecar with `services` outbound VIP listeners (two endpoints each)."""
    outbounds = tuple(
        Outbound(
            f"svc-{i}",
            f"127.77.{i // 250}.{i % 250 + 1}",
            8080,
            (Endpoint("127.0.0.1", 1, "zone-1"), Endpoint("127.0.0.2", 1, "zone-1")),
        )
        for i in range(services)
    )
    return SidecarConfig(
        mesh="default",
        zone="zone-1",
        dataplane="big",
        identity="spiffe://default/big",
        mtls_enabled=True,
        inbounds=(
            Inbound("", "127.0.0.1", free_port(), "127.0.0.1", 1, "big", {}, allow_all("default")),
        ),
        outbounds=outbounds,
        tls=tls(issue_leaf(ca, "big"), ca),
    ).stamped()


def settled_rss(pid: int, last: Outbound) -> dict[str, float]:
    wait_port(last.address, last.port)
    time.sleep(1.0)  # a probe round and a report round, then read /proc
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    out = {}
    for line in status:
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def rss_static(procs: Procs, ca: MeshCA, services: int) -> dict[str, float]:
    config = big_config(ca, services)
    return settled_rss(mesh_dp(procs, "big-static", config).pid, config.outbounds[-1])


def rss_with_control_plane(procs: Procs, ca: MeshCA, services: int) -> dict[str, float]:
    """The same sidecar configured over the DataplaneConfig stream by a minimal server that
    sends the config once, so grpc is loaded as in production."""
    import grpc

    from meshfed._gen import dataplane_pb2 as pb
    from meshfed._gen import dataplane_pb2_grpc as pb_grpc
    from meshfed.dpconfig.protocol import config_message

    config = big_config(ca, services)

    class OneConfig(pb_grpc.DataplaneConfigServicer):
        def Stream(self, request_iterator, context):  # type: ignore[no-untyped-def]
            next(request_iterator)  # the Hello
            yield config_message(config)
            for _ in request_iterator:  # ACKs and reports, until the sidecar goes
                pass

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_DataplaneConfigServicer_to_server(OneConfig(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    dataplane = json.dumps(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "big",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 1, "tags": {"kuma.io/service": "big"}}],
            },
        }
    )
    admin = free_port()
    proc = procs.start(
        "big-cp",
        [
            str(Path(sys.executable).parent / "mesh-dp"),
            "run",
            "--cp",
            f"grpc://127.0.0.1:{port}",
            "--dataplane",
            dataplane,
            "--admin-address",
            f"127.0.0.1:{admin}",
            "--report-interval",
            "500ms",
        ],
    )
    try:
        return settled_rss(proc.pid, config.outbounds[-1])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        server.stop(grace=None)
        del pb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ca = create_mesh_ca("default")
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir,
        running(Path(tmp_dir)) as procs,
    ):
        app_port = free_port()
        procs.start(
            "app",
            [
                sys.executable,
                "-m",
                "mesh_dp.echo",
                "--address",
                f"127.0.0.1:{app_port}",
                "--name",
                "b",
            ],
        )
        wait_port("127.0.0.1", app_port)
        setups = {"mesh-dp": start_meshfed(procs, ca, app_port)}
        peer = start_nginx(procs, ca, app_port)
        if peer is not None:
            setups["nginx"] = peer
        else:
            print("nginx with its stream module not found: measuring mesh-dp only")
        results.append(measure("direct", 0, app_port, [], args.connections, args.duration))
        for rnd in range(args.rounds):
            order = list(setups) if rnd % 2 == 0 else list(reversed(setups))
            for name in order:
                s = setups[name]
                results.append(measure(name, rnd, s.port, s.pids, args.connections, args.duration))
        rss = {
            "static": rss_static(procs, ca, 100),
            "control plane": rss_with_control_plane(procs, ca, 100),
        }
    print(
        f"{'path':8} {'round':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'proxy CPU µs/req':>17}"
    )
    for r in results:
        print(
            f"{r.path:8} {r.round:5d} {r.rps:9.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} "
            f"{r.proxy_cpu_us_per_request:17.1f}"
        )
    summary: dict[str, object] = {"mesh_dp_memory_mib_100_outbounds": rss}
    for name in ("mesh-dp", "nginx"):
        rps = [r.rps for r in results if r.path == name]
        if rps:
            summary[f"{name}_median_rps"] = round(statistics.median(rps))
    if "nginx_median_rps" in summary:
        ratios = [
            a.rps / b.rps
            for a in results
            if a.path == "mesh-dp"
            for b in results
            if b.path == "nginx" and b.round == a.round
        ]
        summary["ratio_median"] = round(statistics.median(ratios), 2)
    for mode, mem in rss.items():
        print(
            f"mesh-dp memory with 100 outbound services ({mode}): RSS {mem['VmRSS']:.1f} MiB "
            f"(private {mem['RssAnon']:.1f}, shared libraries {mem['RssFile']:.1f})"
        )
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


@contextmanager
def running(tmp: Path) -> Iterator[Procs]:
    procs = Procs(tmp)
    try:
        yield procs
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
