"""zone-ingress against nginx `stream` + `ssl_preread`, both routing by the SNI of a TLS
ClientHello without terminating TLS, alternating in one run.

    .venv/bin/python benchmarks/ingress.py [--duration 5] [--rounds 3] [--conn-clients 4]

Measured, per proxy and round:

- bulk x1 / bulk x8: MiB/s through 1 and 8 parallel connections. Each client process sends a
  real ClientHello (Python's ssl, SNI `bulk.default...`), then streams bytes with sendfile(2)
  from a tmpfs file; the sink splices what arrives into /dev/null. Neither end copies payload
  through user space, so the proxy is what limits the number (see `direct`).
- conns/s: new connections per second. `--conn-clients` processes each loop: connect, send
  the ClientHello (SNI `short.default...`), read the sink's one-byte answer, read EOF, close.
  The sink (uvloop) answers once the whole ClientHello arrived and closes first.
- direct: the same clients straight to the sinks, in every round: the ceiling the load
  generator and sinks reach on this machine with no proxy in between.

Past the ClientHello both proxies are byte pipes that never look at the payload, so the bytes
after it need not be real TLS records: a real TLS sender would spend the CPU on encryption that
then decides the result (the real mTLS path through the ingress is what
tests/integration/test_zone_ingress.py covers).

For every measurement the proxy's CPU time (its process tree, from /proc) is reported as a
share of one core, and per GiB or per connection: a proxy near 1.0 core is the bottleneck.
Both proxies run one process (nginx: one worker). Rounds rotate which set-up goes first.

Not a test: prints a table and a JSON line. Needs nginx with its stream module (Debian:
nginx-light, libnginx-mod-stream); without them only zone-ingress is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _support import free_port, tree_cpu_seconds, wait_port  # noqa: E402

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService  # noqa: E402
from meshfed.dpconfig.sni import encode_sni  # noqa: E402

BULK_SNI = encode_sni("bulk", "default")
SHORT_SNI = encode_sni("short", "default")
CHUNK = 1 << 20  # bytes per sendfile / splice call
SOURCE_SIZE = 16 << 20  # the tmpfs file the bulk clients send from, over and over
NGINX_MODULES = (
    "/usr/lib/nginx/modules/ngx_stream_module.so",
    "/usr/share/nginx/modules/ngx_stream_module.so",
)
MP = mp.get_context("fork")

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    Counter = Synchronized[int]  # a shared c_uint64
else:
    Counter = Any
Counters = Any  # shared c_uint64 slots (multiprocessing.Array, lock=False), one per client


def client_hello(sni: str) -> bytes:
    """The first flight of a TLS client (OpenSSL via Python's ssl), as a sidecar sends it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# --- sinks (one process) --------------------------------------------------------------------


def run_sinks(bulk_port: int, short_port: int, hello_len: int, received: Counter) -> None:
    """bulk: a thread per connection splicing into /dev/null; short: a uvloop server that
    answers b'k' after `hello_len` bytes and closes."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    bulk = socket.create_server(("127.0.0.1", bulk_port), backlog=4096)
    threading.Thread(target=_bulk_accept, args=(bulk, received), daemon=True).start()

    import asyncio

    import uvloop

    class Short(asyncio.Protocol):
        def __init__(self) -> None:
            self.seen = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def data_received(self, data: bytes) -> None:
            self.seen += len(data)
            if self.seen >= hello_len and not self.transport.is_closing():
                self.transport.write(b"k")
                self.transport.close()

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(
            Short, "127.0.0.1", short_port, backlog=4096
        )
        await server.serve_forever()

    uvloop.run(serve())


def _bulk_accept(listener: socket.socket, received: Counter) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_bulk_drain, args=(conn, received), daemon=True).start()


def _bulk_drain(conn: socket.socket, received: Counter) -> None:
    read_end, write_end = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        while True:
            n = os.splice(conn.fileno(), write_end, CHUNK)
            if n == 0:
                return
            left = n
            while left:
                left -= os.splice(read_end, null, left)
            with received.get_lock():
                received.value += n
    except OSError:
        return
    finally:
        for fd in (read_end, write_end, null):
            os.close(fd)
        conn.close()


# --- clients (processes) --------------------------------------------------------------------


def bulk_client(port: int, hello: bytes, source: str, stop: Any, sent: Counters, i: int) -> None:
    fd = os.open(source, os.O_RDONLY)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(hello)
        offset = 0
        while not stop.is_set():
            n = os.sendfile(sock.fileno(), fd, offset, CHUNK)
            offset = (offset + n) % SOURCE_SIZE
            sent[i] += n


def conn_client(
    port: int, hello: bytes, stop: Any, done: Counters, errors: Counters, i: int
) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(hello)
                answer = b""
                while more := sock.recv(16):
                    answer += more
            if answer == b"k":
                done[i] += 1
            else:
                errors[i] += 1
        except OSError:
            errors[i] += 1


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Result:
    proxy: str  # zone-ingress, nginx, or direct
    round: int
    test: str
    value: float  # MiB/s (bulk) or connections/s
    proxy_cores: float  # the proxy's CPU time / wall time
    cpu_per_unit: float  # proxy CPU ms per GiB (bulk) or µs per connection
    errors: int = 0


@dataclass
class Target:
    name: str
    bulk_port: int
    short_port: int
    pid: int | None  # the proxy, None for direct


def measure_window(
    target: Target, duration: float, progress: Callable[[], int]
) -> tuple[float, float, float]:
    """(units per second, proxy cores, wall seconds) over `duration` after a short warm-up."""
    time.sleep(0.5)  # warm-up: connections established, caches hot
    cpu0 = tree_cpu_seconds(target.pid) if target.pid else 0.0
    units0, t0 = progress(), time.monotonic()
    time.sleep(duration)
    units1, t1 = progress(), time.monotonic()
    cpu1 = tree_cpu_seconds(target.pid) if target.pid else 0.0
    wall = t1 - t0
    return (units1 - units0) / wall, (cpu1 - cpu0) / wall, wall


def run_bulk(
    target: Target, streams: int, hello: bytes, source: str, received: Counter, duration: float
) -> tuple[float, float]:
    stop = MP.Event()
    sent = MP.Array(ctypes.c_uint64, streams, lock=False)
    procs = [
        MP.Process(target=bulk_client, args=(target.bulk_port, hello, source, stop, sent, i))
        for i in range(streams)
    ]
    with processes(procs):
        rate, cores, _ = measure_window(target, duration, lambda: int(received.value))
        stop.set()
    return rate / (1 << 20), cores


def run_conns(
    target: Target, clients: int, hello: bytes, duration: float
) -> tuple[float, float, int]:
    stop = MP.Event()
    done: Counters = MP.Array(ctypes.c_uint64, clients, lock=False)
    errors: Counters = MP.Array(ctypes.c_uint64, clients, lock=False)
    procs = [
        MP.Process(target=conn_client, args=(target.short_port, hello, stop, done, errors, i))
        for i in range(clients)
    ]
    with processes(procs):
        rate, cores, _ = measure_window(target, duration, lambda: sum(done))
        stop.set()
    return rate, cores, int(sum(errors))


@contextlib.contextmanager
def processes(procs: list[Any]) -> Iterator[None]:
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join()


def measure(
    target: Target,
    rnd: int,
    args: argparse.Namespace,
    hellos: dict[str, bytes],
    source: str,
    received: Counter,
) -> list[Result]:
    out = []
    for streams in (1, 8):
        mib_s, cores = run_bulk(target, streams, hellos["bulk"], source, received, args.duration)
        ms_per_gib = cores / (mib_s / 1024) * 1e3 if mib_s else 0.0
        out.append(Result(target.name, rnd, f"bulk x{streams}", mib_s, cores, ms_per_gib))
    rate, cores, errors = run_conns(target, args.conn_clients, hellos["short"], args.duration)
    us_per_conn = cores / rate * 1e6 if rate else 0.0
    out.append(Result(target.name, rnd, "conns/s", rate, cores, us_per_conn, errors))
    return out


# --- proxies --------------------------------------------------------------------------------


NGINX_CONF = """
load_module {module};
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 16384; }}
stream {{
    map $ssl_preread_server_name $upstream {{
        {bulk_sni} 127.0.0.1:{bulk};
        {short_sni} 127.0.0.1:{short};
        default 127.0.0.1:1;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        ssl_preread on;
        proxy_pass $upstream;
        proxy_buffer_size {buffer};
    }}
}}
"""


def start_nginx(
    tmp: Path, bulk: int, short: int, buffer: str, started: list[subprocess.Popen[bytes]]
) -> Target | None:
    nginx = shutil.which("nginx")
    module = next((m for m in NGINX_MODULES if Path(m).exists()), None)
    if nginx is None or module is None:
        return None
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            module=module,
            tmp=tmp,
            bulk_sni=BULK_SNI,
            short_sni=SHORT_SNI,
            bulk=bulk,
            short=short,
            port=port,
            buffer=buffer,
        )
    )
    # -e: the error log before the config is read; the prefix keeps nginx out of /var/log.
    argv = [nginx, "-p", str(tmp), "-e", str(tmp / "nginx.err"), "-c", str(conf)]
    proc = subprocess.Popen([*argv, "-g", "daemon off;"])
    started.append(proc)
    wait_port(port)
    return Target("nginx", port, port, proc.pid)


def start_ingress(
    tmp: Path, bulk: int, short: int, started: list[subprocess.Popen[bytes]]
) -> Target:
    config = IngressConfig(
        "zone-2",
        "bench",
        (
            IngressService("default", "bulk", BULK_SNI, (Endpoint("127.0.0.1", bulk, "zone-2"),)),
            IngressService(
                "default", "short", SHORT_SNI, (Endpoint("127.0.0.1", short, "zone-2"),)
            ),
        ),
    ).stamped()
    (tmp / "ingress.json").write_bytes(config.to_bytes())
    port = free_port()
    argv = [
        # e.g. MESHFED_BENCH_WRAP="python -m cProfile -o /tmp/ingress.prof" to profile
        *os.environ.get("MESHFED_BENCH_WRAP", "").split(),
        str(Path(sys.executable).parent / "zone-ingress"),
        "run",
        "--config-file",
        str(tmp / "ingress.json"),
        "--port",
        str(port),
        "--admin-address",
        "127.0.0.1:0",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(argv)
    started.append(proc)
    wait_port(port)
    return Target("zone-ingress", port, port, proc.pid)


# --- report ---------------------------------------------------------------------------------


def summarize(results: list[Result]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for test in ("bulk x1", "bulk x8", "conns/s"):
        for proxy in ("direct", "zone-ingress", "nginx"):
            values = [r.value for r in results if r.proxy == proxy and r.test == test]
            if values:
                summary[f"{proxy} {test} median"] = round(statistics.median(values), 1)
        ratios = [
            a.value / b.value
            for a in results
            for b in results
            if a.test == b.test == test
            and a.round == b.round
            and (a.proxy, b.proxy) == ("zone-ingress", "nginx")
            and b.value
        ]
        if ratios:
            summary[f"ratio {test} median"] = round(statistics.median(ratios), 2)
    return summary


def report(results: list[Result]) -> None:
    print(
        f"{'proxy':13} {'round':>5} {'test':8} {'value':>10} {'proxy cores':>11} "
        f"{'CPU ms/GiB | µs/conn':>21} {'errors':>6}"
    )
    for r in results:
        print(
            f"{r.proxy:13} {r.round:5d} {r.test:8} {r.value:10.1f} {r.proxy_cores:11.2f} "
            f"{r.cpu_per_unit:21.1f} {r.errors:6d}"
        )
    summary = summarize(results)
    for key, value in summary.items():
        print(f"{key}: {value}")
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conn-clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--nginx-buffer", default="64k", help="nginx proxy_buffer_size (its default: 16k)"
    )
    parser.add_argument("--skip-direct", action="store_true")
    args = parser.parse_args()
    hellos = {"bulk": client_hello(BULK_SNI), "short": client_hello(SHORT_SNI)}
    assert len(hellos["bulk"]) == len(hellos["short"])
    received = MP.Value(ctypes.c_uint64, 0)
    started: list[subprocess.Popen[bytes]] = []
    sinks: Any = None
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir,
        tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="meshfed-bench-") as source,
    ):
        tmp = Path(tmp_dir)
        source.write(os.urandom(SOURCE_SIZE))
        source.flush()
        try:
            bulk_port, short_port = free_port(), free_port()
            sinks = MP.Process(
                target=run_sinks,
                args=(bulk_port, short_port, len(hellos["short"]), received),
            )
            sinks.start()
            wait_port(bulk_port)
            wait_port(short_port)
            targets = [start_ingress(tmp, bulk_port, short_port, started)]
            nginx = start_nginx(tmp, bulk_port, short_port, args.nginx_buffer, started)
            if nginx is not None:
                targets.append(nginx)
            else:
                print("nginx with its stream module not found: measuring zone-ingress only")
            if not args.skip_direct:
                targets.append(Target("direct", bulk_port, short_port, None))
            for rnd in range(args.rounds):
                # Each round starts with the next one: no set-up always runs first or last.
                for target in targets[rnd % len(targets) :] + targets[: rnd % len(targets)]:
                    results += measure(target, rnd, args, hellos, source.name, received)
                    for proc in started:
                        if proc.poll() is not None:
                            raise RuntimeError(
                                f"proxy pid {proc.pid} exited with {proc.returncode}"
                            )
        finally:
            for proc in started:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
            for proc in started:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            if sinks is not None and sinks.pid is not None:
                os.kill(sinks.pid, signal.SIGTERM)
                sinks.join(10)
    report(results)


if __name__ == "__main__":
    main()
