"""What a MeshAccessLog OpenTelemetry backend costs the HTTP path (issue 18, decision 142):
requests/s through two sidecars with no access log, with both logging every request to an
OTLP/HTTP collector that is down, and to one that takes everything.

    .venv/bin/python benchmarks/otlp_backend.py [--duration 5] [--rounds 5]
        [--connections 16] [--body 1024]

The path is benchmarks/sidecar_http.py's (wrk -> web sidecar -> mTLS -> backend sidecar ->
nginx app, all HTTP/1.1 keep-alive); the three setups run side by side and every round
measures each, rotating which goes first (the machine is shared: rounds are noisy, the
median ratio is the figure). `collector up` is a separate process answering 200 to every
POST without decoding it, so what it measures is the sidecars' rendering, encoding and
sending. Needs wrk and nginx (`scripts/install-system-deps.sh --bench`). Prints a table and
a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from typing import Any

from _support import free_port, wait_port
from sidecar import Procs, Result, Setup, start_meshfed
from sidecar_http import alternate, http_chain

from meshfed.dpconfig.observability import AccessLog, LogFormat
from meshfed.pki.ca import MeshCA

# A collector that takes every request and does nothing with it.
COLLECTOR = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def logged(procs: Procs, ca: MeshCA, app_port: int, endpoint: str) -> Setup:
    """Both sidecars log every request (web's outbound, backend's inbound) to `endpoint`."""
    logs = (AccessLog("otel", endpoint, LogFormat()),)
    return start_meshfed(
        procs, ca, app_port, "http", outbound=lambda _: {"access_logs": logs}, access_logs=logs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--body", type=int, default=1024)
    args = parser.parse_args()
    with http_chain(args.body) as chain:
        procs, ca, app_port = chain.procs, chain.ca, chain.app_port
        up = free_port()
        procs.start("collector", [sys.executable, "-c", COLLECTOR, str(up)])
        wait_port(up)
        setups = {
            "no access log": start_meshfed(procs, ca, app_port, "http"),
            "collector down": logged(procs, ca, app_port, f"http://127.0.0.1:{free_port()}"),
            "collector up": logged(procs, ca, app_port, f"http://127.0.0.1:{up}"),
        }
        names = list(setups)
        opts = argparse.Namespace(connections=args.connections, duration=args.duration)
        results = alternate(chain, setups, args.rounds, opts)
    report(results, names)


def report(results: list[Result], names: list[str]) -> None:
    base = {r.round: r.rps for r in results if r.path == names[0]}
    print(f"{'setup':<16} {'req/s per round':<44} {'median ratio':>12} {'CPU µs/req':>11}")
    summary: dict[str, Any] = {}
    for name in names:
        runs = [r for r in results if r.path == name]
        ratio = statistics.median(r.rps / base[r.round] for r in runs)
        cpu = statistics.median(r.proxy_cpu_us_per_request for r in runs)
        rps = ", ".join(f"{r.rps:,.0f}" for r in runs)
        print(f"{name:<16} {rps:<44} {ratio:>12.3f} {cpu:>11.0f}")
        summary[name] = {
            "median_ratio": ratio,
            "cpu_us": cpu,
            "errors": sum(r.errors for r in runs),
        }
    print(json.dumps({"summary": summary, "runs": [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
