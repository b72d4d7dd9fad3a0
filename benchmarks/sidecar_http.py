"""mesh-dp's HTTP path (services tagged `kuma.io/protocol: http`) against two nginx `http`
proxies doing the same, alternating in one run; and mesh-dp's memory with 100 HTTP outbounds.

    .venv/bin/python benchmarks/sidecar_http.py [--duration 5] [--rounds 3]
        [--connections 16,64] [--bodies 1024,65536]

Path measured (all on loopback, HTTP/1.1 keep-alive everywhere):

    wrk -> web sidecar (HTTP outbound, plain) -> pooled mTLS -> backend sidecar (HTTP
        inbound) -> pooled keep-alive -> app
    wrk -> nginx http (proxy_pass, upstream keepalive, proxy_ssl with a client certificate)
        -> mTLS -> nginx http (ssl_verify_client on; proxy_pass, upstream keepalive) -> app

Unlike benchmarks/sidecar.py (both sidecars relaying bytes, nginx's `stream` module), every
hop here parses each request and response and may send it on another pooled connection.
For each case (connections x body size), wrk sends `POST /<size>` with a body of that size
and the app answers with a body of the same size: nginx serving a static file (one worker,
`error_page 405 =200` turns the POST into the file), shared by both chains. Every round
runs each case on mesh-dp, nginx and `direct` (wrk straight to the app), rotating which goes
first; 1 s of warm-up, then `--duration` seconds. Reported per run: requests/s, p50/p99
(wrk's, closed loop) and the two proxies' CPU per request; per case the median ratio of
mesh-dp's requests/s to nginx's and of their p99s.

nginx is sized so it never writes a body to disk (client_body_buffer_size and proxy_buffers
above the largest body), and, as in benchmarks/sidecar.py, its client side does not verify
the server certificate (mesh leaves carry only a SPIFFE URI); mesh-dp verifies chain and ID.

Needs wrk and nginx (`scripts/install-system-deps.sh --bench`). Not a test: prints a table
and a JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from _support import free_port, wait_port
from sidecar import (
    NGINX_HEAD,
    NGINX_HTTP_OPEN,
    Procs,
    Result,
    Setup,
    measure,
    nginx_binary,
    rss_line,
    rss_static,
    running,
    start_meshfed,
    start_nginx_conf,
)

from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.leaf import issue_leaf

MAX_BODY = 1024 * 1024  # the largest --bodies value; the nginx buffers are sized from it

NGINX_APP = (
    NGINX_HTTP_OPEN
    + """
    client_body_buffer_size {max_body};
    client_max_body_size {max_body};
    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        # Read the whole body before answering, as an application does (`mirror` reads it
        # first; nginx's `return` and static handlers would answer after the head alone).
        # The static module refuses POST (405): answer with the file instead.
        location / {{
            mirror /_drain;
            error_page 405 =200 /_f$uri;
        }}
        location /_f/ {{ internal; alias {tmp}/www/; }}
        location = /_drain {{ internal; return 204; }}
    }}
}}
"""
)
# What both nginx proxies share: keep-alive both ways, HTTP/1.1 upstream, and buffers that
# hold any body of the run in memory (nginx's defaults would spill 64 KiB to temp files).
NGINX_PROXY = """
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body-{name};
    proxy_temp_path {tmp}/proxy-{name};
    client_max_body_size {max_body};
    client_body_buffer_size {max_body};
    proxy_buffer_size 16k;
    proxy_buffers {buffers} 16k;
    proxy_busy_buffers_size 32k;
    upstream next {{
        server 127.0.0.1:{upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        {listen}
        location / {{
            proxy_pass {scheme}://next;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            {extra}
        }}
    }}
}}
"""


def lua(size: int) -> str:
    return (
        f'wrk.method = "POST"\nwrk.path = "/{size}"\n'
        f'wrk.body = string.rep("x", {size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def start_app(procs: Procs, nginx: str, sizes: list[int]) -> int:
    """nginx answering `POST /<size>` with `size` bytes."""
    www = procs.tmp / "www"
    www.mkdir(mode=0o755)
    # nginx's workers run as an unprivileged user when started by root: let them reach it.
    procs.tmp.chmod(0o711)
    for size in sizes:
        (www / str(size)).write_bytes(b"y" * size)
        (www / str(size)).chmod(0o644)
    port = free_port()
    conf = NGINX_HEAD.format(load="", tmp=procs.tmp, name="app") + NGINX_APP.format(
        tmp=procs.tmp, port=port, max_body=MAX_BODY
    )
    start_nginx_conf(procs, nginx, "app", conf)
    wait_port(port)
    return port


@dataclass
class Chain:
    """What the HTTP chain benchmarks share: their processes, the mesh CA, the nginx app that
    answers every request with a body of the asked size, and wrk's script posting one."""

    procs: Procs
    ca: MeshCA
    app_port: int
    script: Path


@contextlib.contextmanager
def http_chain(body: int) -> Iterator[Chain]:
    """The app and wrk's script for `body`-byte requests (sidecar_inbound_policies.py,
    otlp_backend.py, tracing.py); every process is stopped on exit."""
    found = nginx_binary()
    if shutil.which("wrk") is None or found is None:
        sys.exit("wrk and nginx needed: scripts/install-system-deps.sh --bench")
    ca = create_mesh_ca("default")
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir,
        running(Path(tmp_dir)) as procs,
    ):
        script = procs.tmp / "post.lua"
        script.write_text(lua(body))
        yield Chain(procs, ca, start_app(procs, found[0], [body]), script)


def alternate(
    chain: Chain,
    setups: dict[str, Setup],
    rounds: int,
    opts: argparse.Namespace,
    after: Callable[[str, Setup], None] | None = None,
) -> list[Result]:
    """Each setup measured once per round, the order rotating (`opts`: connections, duration);
    `after(name, setup)` right after each run (e.g. to read the proxies' RSS under load)."""
    names, results = list(setups), list[Result]()
    for rnd in range(rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            s = setups[name]
            results.append(measure(name, rnd, s.port, s.pids, opts, chain.script))
            if after is not None:
                after(name, s)
            chain.procs.check()
    return results


def print_runs(results: list[Result], width: int) -> None:
    """One line per measured run: requests/s, latencies, the proxies' CPU per request."""
    header = f"{'variant':{width}} {'round':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"{header} {'CPU µs/req':>10}")
    for r in results:
        print(
            f"{r.path:{width}} {r.round:5d} {r.rps:9.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} "
            f"{r.proxy_cpu_us_per_request:10.1f}"
        )


@contextlib.contextmanager
def code_from(tree: str) -> Iterator[None]:
    """Sidecars started inside run the mesh_dp and meshfed of `tree` (a `git archive` of
    another commit): the venv's console scripts use the editable install, so PYTHONPATH is
    what switches the code they import."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(Path(tree).resolve())
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def start_nginx_http_chain(procs: Procs, nginx: str, ca: MeshCA, app_port: int) -> Setup:
    tmp = procs.tmp
    for name in ("web", "backend"):
        leaf = issue_leaf(ca, name)
        (tmp / f"{name}.crt").write_bytes(leaf.cert_pem)
        (tmp / f"{name}.key").write_bytes(leaf.key_pem)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    inbound_port, outbound_port = free_port(), free_port()
    common = {"tmp": tmp, "max_body": MAX_BODY, "buffers": MAX_BODY // (16 * 1024) + 2}
    confs = {
        "backend": NGINX_PROXY.format(
            name="backend",
            upstream=app_port,
            scheme="http",
            listen=f"listen 127.0.0.1:{inbound_port} ssl; "
            f"ssl_certificate {tmp}/backend.crt; ssl_certificate_key {tmp}/backend.key; "
            f"ssl_client_certificate {tmp}/ca.crt; ssl_verify_client on;",
            extra="",
            **common,
        ),
        "web": NGINX_PROXY.format(
            name="web",
            upstream=inbound_port,
            scheme="https",
            listen=f"listen 127.0.0.1:{outbound_port};",
            extra=f"proxy_ssl_certificate {tmp}/web.crt; "
            f"proxy_ssl_certificate_key {tmp}/web.key; proxy_ssl_session_reuse on;",
            **common,
        ),
    }
    pids = []
    for name, conf in confs.items():
        head = NGINX_HEAD.format(load="", tmp=tmp, name=name)
        pids.append(start_nginx_conf(procs, nginx, name, head + conf))
    wait_port(outbound_port)
    return Setup(outbound_port, pids)


@dataclass
class Case:
    connections: int
    body: int


@dataclass
class HttpResult:
    connections: int
    body: int
    run: Result


def ratios(results: list[HttpResult], case: Case, field: str) -> list[float]:
    """mesh-dp's `field` over nginx's, per round, for one case."""
    by_key = {
        (r.run.path, r.run.round): getattr(r.run, field)
        for r in results
        if (r.connections, r.body) == (case.connections, case.body)
    }
    return [
        by_key[("mesh-dp", rnd)] / by_key[("nginx", rnd)]
        for (path, rnd) in by_key
        if path == "mesh-dp" and ("nginx", rnd) in by_key and by_key[("nginx", rnd)]
    ]


def report(results: list[HttpResult], cases: list[Case], rss: dict[str, float]) -> None:
    print(
        f"{'conns':>5} {'body':>6} {'path':8} {'round':>5} {'req/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'proxies CPU µs/req':>18} {'errors':>6}"
    )
    for h in results:
        r = h.run
        print(
            f"{h.connections:5d} {h.body:6d} {r.path:8} {r.round:5d} {r.rps:9.0f} "
            f"{r.p50_ms:7.2f} {r.p99_ms:7.2f} {r.proxy_cpu_us_per_request:18.1f} {r.errors:6d}"
        )
    summary: dict[str, object] = {"mesh_dp_rss_mib_100_http_outbounds": rss}
    for case in cases:
        key = f"c{case.connections}_b{case.body}"
        rps, p99 = ratios(results, case, "rps"), ratios(results, case, "p99_ms")
        if rps:
            summary[f"{key}_rps_ratio"] = [round(x, 2) for x in rps]
            summary[f"{key}_p99_ratio"] = [round(x, 2) for x in p99]
            print(
                f"{case.connections} connections, {case.body} B bodies: mesh-dp/nginx req/s "
                f"median {statistics.median(rps):.2f}x (rounds {', '.join(f'{x:.2f}' for x in rps)}"
                f"), p99 median {statistics.median(p99):.2f}x "
                f"(rounds {', '.join(f'{x:.2f}' for x in p99)})"
            )
    if rss:
        print(rss_line("100 HTTP outbound services", rss))
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="16,64", help="comma-separated")
    parser.add_argument("--bodies", default="1024,65536", help="body sizes in bytes")
    parser.add_argument("--paths", default="mesh-dp,nginx,direct", help="comma-separated")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    cases = [
        Case(int(c), int(b)) for c in args.connections.split(",") for b in args.bodies.split(",")
    ]
    if max(c.body for c in cases) > MAX_BODY:
        sys.exit(f"bodies above {MAX_BODY} bytes need larger nginx buffers")
    found = nginx_binary()
    if args.rounds and (shutil.which("wrk") is None or found is None):
        sys.exit("wrk and nginx needed: scripts/install-system-deps.sh --bench")
    ca = create_mesh_ca("default")
    results: list[HttpResult] = []
    rss: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-") as tmp_dir,
        running(Path(tmp_dir)) as procs,
    ):
        if args.rounds and found is not None:
            nginx = found[0]
            scripts = {}
            for size in {c.body for c in cases}:
                scripts[size] = procs.tmp / f"post-{size}.lua"
                scripts[size].write_text(lua(size))
            app_port = start_app(procs, nginx, sorted(scripts))
            starters = {
                "mesh-dp": lambda: start_meshfed(procs, ca, app_port, "http"),
                "nginx": lambda: start_nginx_http_chain(procs, nginx, ca, app_port),
                "direct": lambda: Setup(app_port, []),
            }
            setups = {name: starters[name]() for name in args.paths.split(",")}
            names = list(setups)
            for rnd in range(args.rounds):
                for case in cases:
                    # Each round starts with the next path: none always runs first or last.
                    for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                        s = setups[name]
                        opts = argparse.Namespace(
                            connections=case.connections, duration=args.duration
                        )
                        run = measure(name, rnd, s.port, s.pids, opts, scripts[case.body])
                        results.append(HttpResult(case.connections, case.body, run))
                        procs.check()
        if not args.skip_memory:
            rss = rss_static(procs, ca, 100, "http")
    report(results, cases, rss)


if __name__ == "__main__":
    main()
