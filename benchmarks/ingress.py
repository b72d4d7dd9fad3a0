"""zone-ingress TLS passthrough against nginx `stream` + `ssl_preread` routing the same SNI,
alternating in one run: bulk throughput with 1 and 8 streams, and new connections/s.

    .venv/bin/python benchmarks/ingress.py [--duration 8] [--rounds 3]

Both proxies route `backend.default.sni.mesh` to the same TLS endpoint (a sink process that
terminates mTLS with a mesh certificate, as backend's sidecar would) without terminating TLS
themselves. The client is this process: mesh certificates, the SNI a sidecar sends.

- bulk: each stream sends 256 KiB writes for `--duration` seconds; reported in MiB/s of
  payload received by the sink.
- connections/s: 8 threads each open a connection, complete the handshake through the proxy,
  exchange one byte with the sink and close, for `--duration` seconds.

nginx needs `nginx` and its stream module (Debian: nginx, libnginx-mod-stream); without them
only zone-ingress is measured and the report says so. Not a test: it prints a table and a
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService  # noqa: E402
from meshfed.pki.ca import create_mesh_ca  # noqa: E402
from meshfed.pki.leaf import issue_leaf  # noqa: E402
from meshfed.proxy.sni import encode_sni  # noqa: E402

SNI = encode_sni("backend", "default")
CHUNK = 256 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- the sink: runs as a separate process (`--sink`) ----------------------------------------


def sink(port: int, cert: str, key: str, ca: str) -> None:
    """mTLS server: per connection, reads a length-prefixed payload and answers b'k'."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)

    def serve(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                view = memoryview(bytearray(1 << 20))
                header = b""
                while len(header) < 8:
                    more = tls.recv(8 - len(header))
                    if not more:
                        return
                    header += more
                left = struct.unpack("!Q", header)[0]
                while left:
                    n = tls.recv_into(view[: min(left, len(view))])
                    if not n:
                        return
                    left -= n
                tls.sendall(b"k")
        except (OSError, ssl.SSLError):
            pass

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# --- clients --------------------------------------------------------------------------------


def client_context(tmp: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_cert_chain(tmp / "web.crt", tmp / "web.key")
    ctx.load_verify_locations(tmp / "ca.crt")
    return ctx


def bulk(ctx: ssl.SSLContext, port: int, streams: int, duration: float) -> float:
    """MiB/s of payload through `streams` parallel connections."""
    payload = memoryview(os.urandom(CHUNK))
    stop_at = time.monotonic() + duration
    sent = [0] * streams

    def one(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname=SNI) as tls:
                tls.sendall(struct.pack("!Q", 1 << 62))  # "more than we will send"
                while time.monotonic() < stop_at:
                    tls.sendall(payload)
                    sent[i] += CHUNK

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sent) / (time.monotonic() - started) / (1 << 20)


def connections(ctx: ssl.SSLContext, port: int, workers: int, duration: float) -> float:
    stop_at = time.monotonic() + duration
    done = [0] * workers

    def one(i: int) -> None:
        while time.monotonic() < stop_at:
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                ctx.wrap_socket(raw, server_hostname=SNI) as tls,
            ):
                tls.sendall(struct.pack("!Q", 0))
                if tls.recv(1) == b"k":
                    done[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


# --- proxies ----------------------------------------------------------------------------------


NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 8192; }}
stream {{
    map $ssl_preread_server_name $upstream {{
        {sni} 127.0.0.1:{sink};
        default 127.0.0.1:1;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        ssl_preread on;
        proxy_pass $upstream;
    }}
}}
"""


def start_nginx(tmp: Path, sink_port: int, procs: list[subprocess.Popen[bytes]]) -> int | None:
    nginx = shutil.which("nginx")
    module = next(
        (
            m
            for m in (
                "/usr/lib/nginx/modules/ngx_stream_module.so",
                "/usr/share/nginx/modules/ngx_stream_module.so",
            )
            if Path(m).exists()
        ),
        None,
    )
    if nginx is None or module is None:
        return None
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=module, tmp=tmp, sni=SNI, sink=sink_port, port=port))
    procs.append(subprocess.Popen([nginx, "-c", str(conf), "-e", "stderr"]))
    wait_port(port)
    return port


@dataclass
class Result:
    proxy: str
    round: int
    test: str
    value: float  # MiB/s for bulk, connections/s for conns
    proxy_cpu_s: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", nargs=4, metavar=("PORT", "CERT", "KEY", "CA"))
    args = parser.parse_args()
    if args.sink:
        sink(int(args.sink[0]), *args.sink[1:])
        return
    ca = create_mesh_ca("default")
    procs: list[subprocess.Popen[bytes]] = []
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for name in ("web", "backend"):
            leaf = issue_leaf(ca, name)
            (tmp / f"{name}.crt").write_bytes(leaf.cert_pem)
            (tmp / f"{name}.key").write_bytes(leaf.key_pem)
        (tmp / "ca.crt").write_bytes(ca.cert_pem)
        try:
            sink_port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--sink", str(sink_port)]
                    + [str(tmp / f) for f in ("backend.crt", "backend.key", "ca.crt")]
                )
            )
            wait_port(sink_port)
            config = IngressConfig(
                "zone-2",
                "bench",
                (
                    IngressService(
                        "default", "backend", SNI, (Endpoint("127.0.0.1", sink_port, "zone-2"),)
                    ),
                ),
            ).stamped()
            (tmp / "ingress.json").write_bytes(config.to_bytes())
            ingress_port = free_port()
            ingress = subprocess.Popen(
                [
                    *os.environ.get("MESHFED_BENCH_WRAP", "").split(),
                    str(Path(sys.executable).parent / "zone-ingress"),
                    "run",
                    "--config-file",
                    str(tmp / "ingress.json"),
                    "--port",
                    str(ingress_port),
                    "--admin-address",
                    "127.0.0.1:0",
                    "--log-level",
                    "warning",
                ]
            )
            procs.append(ingress)
            wait_port(ingress_port)
            proxies = {"zone-ingress": (ingress_port, ingress.pid)}
            nginx_port = start_nginx(tmp, sink_port, procs)
            if nginx_port is not None:
                proxies["nginx"] = (nginx_port, procs[-1].pid)
            else:
                print("nginx with its stream module not found: measuring zone-ingress only")
            ctx = client_context(tmp)
            for rnd in range(args.rounds):
                order = list(proxies) if rnd % 2 == 0 else list(reversed(proxies))
                for name in order:
                    port, pid = proxies[name]
                    for test in ("bulk x1", "bulk x8", "conns/s"):
                        before = cpu_seconds(pid)
                        if test == "conns/s":
                            value = connections(ctx, port, 8, args.duration)
                        else:
                            value = bulk(ctx, port, int(test[-1]), args.duration)
                        results.append(Result(name, rnd, test, value, cpu_seconds(pid) - before))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"{'proxy':13} {'round':>5} {'test':8} {'value':>10} {'proxy CPU s':>11}")
    for r in results:
        print(f"{r.proxy:13} {r.round:5d} {r.test:8} {r.value:10.1f} {r.proxy_cpu_s:11.2f}")
    summary: dict[str, float] = {}
    for test in ("bulk x1", "bulk x8", "conns/s"):
        for proxy in ("zone-ingress", "nginx"):
            values = [r.value for r in results if r.proxy == proxy and r.test == test]
            if values:
                summary[f"{proxy} {test} median"] = round(statistics.median(values), 1)
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


if __name__ == "__main__":
    main()
