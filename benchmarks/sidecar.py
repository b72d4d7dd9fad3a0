"""mesh-dp's data path: HTTP through web's sidecar and backend's sidecar (mTLS between them),
against two nginx stream proxies doing the same TLS origination and termination, alternating
in one run; and mesh-dp's memory with 100 outbound services.

    .venv/bin/python benchmarks/sidecar.py [--duration 10] [--rounds 3] [--connections 16]

Path measured (all on loopback):

    wrk -> web sidecar outbound (plain) -> mTLS -> backend sidecar inbound -> app
    wrk -> nginx stream (proxy_ssl, client cert) -> mTLS -> nginx stream (ssl, verify client)
        -> app

wrk keeps `--connections` keep-alive connections (2 threads), each sending `POST /` with a
1 KiB body; the app is nginx's http module answering every request with a 1 KiB body (one
worker). Both chains use leaf certificates issued by the same mesh CA. Reported per run:
requests/s, p50/p99 latency (wrk's own, closed loop) and the two proxies' CPU time per
request (from /proc); `direct` is wrk against the app alone, the ceiling of the load
generator and app on this machine. Every round runs all three; rounds rotate which goes
first.

Memory: RSS of one mesh-dp with 100 outbound services (a VIP listener each, 2 endpoints),
configured from a file and over the DataplaneConfig stream (grpc loaded, as in production).

Needs `wrk` (Debian: wrk) and nginx with its stream module (nginx-light,
libnginx-mod-stream): `scripts/install-system-deps.sh --bench`. Without nginx the app is
`python -m mesh_dp.echo` and only mesh-dp is measured. Not a test: prints a table and a JSON
line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _support import free_port, stop_process, tree_cpu_seconds, wait_port  # noqa: E402

from meshfed.dpconfig.model import (  # noqa: E402
    Endpoint,
    Inbound,
    Outbound,
    SidecarConfig,
    Tls,
)
from meshfed.pki.ca import MeshCA, create_mesh_ca  # noqa: E402
from meshfed.pki.leaf import Leaf, issue_leaf  # noqa: E402
from meshfed.policy.permissions import Action, Permissions  # noqa: E402

BODY_SIZE = 1024
NGINX_MODULES = (
    "/usr/lib/nginx/modules/ngx_stream_module.so",
    "/usr/share/nginx/modules/ngx_stream_module.so",
)
WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = string.rep("x", {BODY_SIZE})
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def tls(leaf: Leaf, ca: MeshCA) -> Tls:
    return Tls(leaf.cert_pem.decode(), leaf.key_pem.decode(), (ca.cert_pem.decode(),), "")


def allow_all(mesh: str) -> Permissions:
    return Permissions(mesh=mesh, default=Action.ALLOW)


class Procs:
    """Processes this run started; stopped by PID, newest first."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(proc)
        return proc

    def stop_one(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        self.procs.remove(proc)

    def stop(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop_one(proc)

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")


@contextmanager
def running(tmp: Path) -> Iterator[Procs]:
    procs = Procs(tmp)
    try:
        yield procs
    finally:
        procs.stop()


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
    wait_port(admin)
    return proc


# --- load generator: wrk --------------------------------------------------------------------


@dataclass
class Result:
    path: str  # direct, mesh-dp or nginx
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    proxy_cpu_us_per_request: float
    errors: int  # wrk's socket errors plus non-2xx answers


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), requests and errors from `wrk --latency` output."""
    out: dict[str, float] = {"errors": 0.0}
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            out["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            out["p" + words[0][:-1]] = _ms(words[1])
        elif "requests in" in line:
            out["requests"] = float(words[0])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] += sum(int(n) for n in re.findall(r"\d+", line))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            out["errors"] += int(words[-1])
    missing = {"rps", "p50", "p99", "requests"} - out.keys()
    if missing:
        raise RuntimeError(f"wrk output lacks {sorted(missing)}:\n{output}")
    return out


def wrk(script: Path, port: int, connections: int, duration: float) -> dict[str, float]:
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def measure(
    path: str, rnd: int, port: int, pids: list[int], args: argparse.Namespace, script: Path
) -> Result:
    wrk(script, port, args.connections, 1.0)  # warm up: handshakes, caches
    before = sum(tree_cpu_seconds(p) for p in pids)
    stats = wrk(script, port, args.connections, args.duration)
    cpu = sum(tree_cpu_seconds(p) for p in pids) - before
    return Result(
        path=path,
        round=rnd,
        rps=stats["rps"],
        p50_ms=stats["p50"],
        p99_ms=stats["p99"],
        proxy_cpu_us_per_request=cpu / stats["requests"] * 1e6 if pids else 0.0,
        errors=int(stats["errors"]),
    )


# --- the app and the two chains -------------------------------------------------------------


@dataclass
class Setup:
    port: int  # where wrk connects
    pids: list[int]  # the proxies


NGINX_HEAD = """
{load}
worker_processes 1;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}.err warn;
events {{ worker_connections 4096; }}
"""
NGINX_HTTP_OPEN = """
http {{
    access_log off;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
"""
NGINX_APP = (
    NGINX_HTTP_OPEN
    + """
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{body}"; }}
    }}
}}
"""
)
NGINX_STREAM = """
stream {{
    server {{
        {listen}
        proxy_pass 127.0.0.1:{upstream};
        {extra}
    }}
}}
"""


def nginx_binary() -> tuple[str, str] | None:
    nginx = shutil.which("nginx")
    module = next((m for m in NGINX_MODULES if Path(m).exists()), None)
    return None if nginx is None or module is None else (nginx, module)


def start_nginx_conf(procs: Procs, nginx: str, name: str, conf: str) -> int:
    path = procs.tmp / f"nginx-{name}.conf"
    path.write_text(conf)
    # -p and -e keep nginx's prefix and early error log out of /var; daemon off: our child.
    argv = [nginx, "-p", str(procs.tmp), "-e", str(procs.tmp / f"nginx-{name}.err")]
    return procs.start(f"nginx-{name}", [*argv, "-c", str(path), "-g", "daemon off;"]).pid


def start_app(procs: Procs) -> int:
    """nginx answering 1 KiB per request, or the echo app when nginx is missing."""
    port = free_port()
    found = nginx_binary()
    if found is not None:
        nginx, _ = found
        conf = NGINX_HEAD.format(load="", tmp=procs.tmp, name="app") + NGINX_APP.format(
            tmp=procs.tmp, port=port, body="x" * BODY_SIZE
        )
        start_nginx_conf(procs, nginx, "app", conf)
    else:
        procs.start(
            "app",
            [sys.executable, "-m", "mesh_dp.echo", "--address", f"127.0.0.1:{port}", "--name", "b"],
        )
    wait_port(port)
    return port


def start_meshfed(
    procs: Procs,
    ca: MeshCA,
    app_port: int,
    protocol: str = "tcp",
    outbound: Callable[[Endpoint], dict[str, Any]] | None = None,
    sidecar: dict[str, Any] | None = None,
    **inbound: Any,
) -> Setup:
    """web's sidecar (outbound `backend` on the returned port) and backend's sidecar (inbound
    to the app); `protocol` is both services' kuma.io/protocol (tcp: byte relay, http: the
    HTTP/1.1 proxy); `outbound`: more fields of web's Outbound given backend's endpoint (e.g.
    MeshHTTPRoute rules whose splits name it); `sidecar`: more fields of both SidecarConfigs
    (MeshMetric, MeshTrace); `inbound`: more fields of backend's Inbound (its policies)."""
    inbound_port, outbound_port = free_port(), free_port()
    target = Endpoint("127.0.0.1", inbound_port, "zone-1")
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
                protocol=protocol,
                **inbound,
            ),
        ),
        outbounds=(),
        tls=tls(issue_leaf(ca, "backend"), ca),
        **(sidecar or {}),
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
                (target,),
                protocol=protocol,
                **(outbound(target) if outbound else {}),
            ),
        ),
        tls=tls(issue_leaf(ca, "web"), ca),
        **(sidecar or {}),
    ).stamped()
    pids = [mesh_dp(procs, "backend-sidecar", backend).pid, mesh_dp(procs, "web-sidecar", web).pid]
    wait_port(outbound_port)
    return Setup(outbound_port, pids)


def start_nginx_chain(procs: Procs, ca: MeshCA, app_port: int) -> Setup | None:
    found = nginx_binary()
    if found is None:
        return None
    nginx, module = found
    tmp = procs.tmp
    for name, leaf in (("web", issue_leaf(ca, "web")), ("backend", issue_leaf(ca, "backend"))):
        (tmp / f"{name}.crt").write_bytes(leaf.cert_pem)
        (tmp / f"{name}.key").write_bytes(leaf.key_pem)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    inbound_port, outbound_port = free_port(), free_port()
    streams = {
        "backend": NGINX_STREAM.format(
            listen=f"listen 127.0.0.1:{inbound_port} ssl;",
            upstream=app_port,
            extra=f"ssl_certificate {tmp}/backend.crt; ssl_certificate_key {tmp}/backend.key; "
            f"ssl_client_certificate {tmp}/ca.crt; ssl_verify_client on;",
        ),
        "web": NGINX_STREAM.format(
            listen=f"listen 127.0.0.1:{outbound_port};",
            upstream=inbound_port,
            # nginx can only match a DNS or IP name, and mesh leaves carry just a SPIFFE URI,
            # so it does not verify the server (mesh-dp does: chain and SPIFFE ID). With
            # keep-alive connections handshakes fall outside the measured window anyway.
            extra=f"proxy_ssl on; proxy_ssl_certificate {tmp}/web.crt; "
            f"proxy_ssl_certificate_key {tmp}/web.key; proxy_ssl_session_reuse on;",
        ),
    }
    pids = []
    for name, stream in streams.items():
        head = NGINX_HEAD.format(load=f"load_module {module};", tmp=tmp, name=name)
        pids.append(start_nginx_conf(procs, nginx, name, head + stream))
    wait_port(outbound_port)
    return Setup(outbound_port, pids)


# --- memory ---------------------------------------------------------------------------------


def big_config(ca: MeshCA, services: int, protocol: str = "tcp") -> SidecarConfig:
    """A sidecar with `services` outbound VIP listeners (two endpoints each)."""
    outbounds = tuple(
        Outbound(
            f"svc-{i}",
            f"127.77.{i // 250}.{i % 250 + 1}",
            8080,
            (Endpoint("127.0.0.1", 1, "zone-1"), Endpoint("127.0.0.2", 1, "zone-1")),
            protocol=protocol,
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


def settled_rss(proc: subprocess.Popen[bytes], config: SidecarConfig) -> dict[str, float]:
    """RSS once every listener is up and a report round has passed (the sidecar's steady
    state: nothing else allocates without traffic)."""
    for o in config.outbounds:
        wait_port(o.port, o.address)
    time.sleep(1.0)  # a benchmark, not a test: let one probe/report round run
    if proc.poll() is not None:
        raise RuntimeError(f"mesh-dp exited with {proc.returncode}")
    out = {}
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def rss_static(procs: Procs, ca: MeshCA, services: int, protocol: str = "tcp") -> dict[str, float]:
    config = big_config(ca, services, protocol)
    proc = mesh_dp(procs, "big-static", config)
    try:
        return settled_rss(proc, config)
    finally:
        procs.stop_one(proc)  # frees the VIPs for the next measurement


def rss_with_control_plane(procs: Procs, ca: MeshCA, services: int) -> dict[str, float]:
    """The same sidecar configured over the DataplaneConfig stream by a minimal server that
    sends the config once, so grpc is loaded as in production."""
    import grpc

    from meshfed._gen import dataplane_pb2_grpc as pb_grpc
    from meshfed.dpconfig.model import encode_config
    from meshfed.dpconfig.protocol import config_message

    config = big_config(ca, services)

    class OneConfig(pb_grpc.DataplaneConfigServicer):
        def Stream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
            next(request_iterator)  # the Hello
            yield config_message(encode_config(config))
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
    token = procs.tmp / "big.token"  # this stand-in control plane checks no token
    token.write_text("benchmark\n")
    proc = procs.start(
        "big-cp",
        [
            str(Path(sys.executable).parent / "mesh-dp"),
            "run",
            "--cp",
            f"grpc://127.0.0.1:{port}",
            "--dataplane-token-file",
            str(token),
            "--dataplane",
            dataplane,
            "--admin-address",
            f"127.0.0.1:{free_port()}",
            "--report-interval",
            "500ms",
            "--log-level",
            "warning",
        ],
    )
    try:
        return settled_rss(proc, config)
    finally:
        procs.stop_one(proc)
        server.stop(grace=None)


# --- report ---------------------------------------------------------------------------------


def rss_line(what: str, mem: dict[str, float]) -> str:
    return (
        f"mesh-dp memory with {what}: RSS {mem['VmRSS']:.1f} MiB "
        f"(private {mem['RssAnon']:.1f}, shared libraries {mem['RssFile']:.1f})"
    )


def report(results: list[Result], rss: dict[str, dict[str, float]]) -> None:
    print(
        f"{'path':8} {'round':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'proxies CPU µs/req':>18} {'errors':>6}"
    )
    for r in results:
        print(
            f"{r.path:8} {r.round:5d} {r.rps:9.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} "
            f"{r.proxy_cpu_us_per_request:18.1f} {r.errors:6d}"
        )
    summary: dict[str, object] = {"mesh_dp_memory_mib_100_outbounds": rss}
    for name in ("direct", "mesh-dp", "nginx"):
        rps = [r.rps for r in results if r.path == name]
        if rps:
            summary[f"{name}_median_rps"] = round(statistics.median(rps))
    ratios = [
        a.rps / b.rps
        for a in results
        for b in results
        if (a.path, b.path) == ("mesh-dp", "nginx") and a.round == b.round
    ]
    if ratios:
        summary["ratio_median"] = round(statistics.median(ratios), 2)
    for key, value in summary.items():
        if key != "mesh_dp_memory_mib_100_outbounds":
            print(f"{key}: {value}")
    for mode, mem in rss.items():
        print(rss_line(f"100 outbound services ({mode})", mem))
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if args.rounds and shutil.which("wrk") is None:  # the memory runs need no wrk
        sys.exit("wrk not found: scripts/install-system-deps.sh --bench (Debian package wrk)")
    ca = create_mesh_ca("default")
    results: list[Result] = []
    rss: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir,
        running(Path(tmp_dir)) as procs,
    ):
        script = procs.tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        app_port = start_app(procs)
        setups = {"mesh-dp": start_meshfed(procs, ca, app_port)}
        peer = start_nginx_chain(procs, ca, app_port)
        if peer is not None:
            setups["nginx"] = peer
        else:
            print("nginx with its stream module not found: measuring mesh-dp only")
        setups["direct"] = Setup(app_port, [])
        names = list(setups)
        for rnd in range(args.rounds):
            # Each round starts with the next one: no set-up always runs first or last.
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                s = setups[name]
                results.append(measure(name, rnd, s.port, s.pids, args, script))
                procs.check()
        if not args.skip_memory:
            rss["static"] = rss_static(procs, ca, 100)
            rss["static, http outbounds"] = rss_static(procs, ca, 100, "http")
            rss["control plane"] = rss_with_control_plane(procs, ca, 100)
    report(results, rss)


if __name__ == "__main__":
    main()
