"""What MeshTrace costs mesh-dp (issue 18, decisions 139-141): the chain of
benchmarks/sidecar_http.py (wrk -> web sidecar -> mTLS -> backend sidecar -> nginx app), both
sidecars HTTP, with

- `none`: no MeshTrace;
- `none-again`: the same as `none`, started after the others (the spread between equal
  chains on a shared machine);
- `trace-down`: a MeshTrace on both sidecars (every request sampled, Kuma's default) whose
  Zipkin backend is down (a closed port): since decision 186 every request passes as it came
  and counts one dropped span (before, each was traced and propagated, its span dropped;
  `trace-down-unsampled`: the same with `overall: 0`, no drop counted);
- `all-three` (`--variants`): MeshAccessLog (a file on each listener), MeshMetric (a
  Prometheus listener) and MeshTrace (Zipkin, to a collector run here) on both sidecars;
- `otel-all-up` / `otel-all-down`: the three policies, each with an OpenTelemetry backend
  (OTLP/HTTP; metrics pushed every second) to the collector run here / to a closed port;
- `log-otel-down`, `metric-otel-down`, `trace-otel-down`: one policy each, its
  OpenTelemetry backend down (what a backend that is down costs, per policy); the same
  with `-up`: its backend the collector run here (what each exporter costs);

run alternately in each round (the order rotates), `--duration` seconds each after 1 s of
warm-up. Prints requests/s, p50/p99, the proxies' CPU per request, each variant's median
ratio to `none`, and every sidecar's RSS (`VmRSS`) after the runs and, median of rounds,
right after each of its runs (the load just over), with `--otel` also for a
MeshTrace whose backend is OpenTelemetry (OTLP/HTTP: the protobuf messages loaded).

    .venv/bin/python benchmarks/tracing.py [--duration 5] [--rounds 3] [--connections 16]
        [--body 1024] [--variants none,none-again,trace-down,all-three] [--otel]
        [--base DIR --base-variants none,trace-down]
    [PYTHONPATH=DIR] .venv/bin/python benchmarks/tracing.py --encode

`--encode` only times what the exporter's thread spends on one span in OTLP and in Zipkin's
JSON (`encode` of 256-span batches of the benchmark's request head, the fastest of 5 runs),
with the code PYTHONPATH names (another commit's `git archive`) or this one's.

`--base DIR` (a checkout of another commit, e.g. `git archive <commit> | tar -x -C DIR`)
also runs `--base-variants` on that code, as `<variant>@base`, interleaved with the others in
the same rounds: the sidecars are started with PYTHONPATH=DIR (the venv's `mesh-dp` script
imports the editable install, so PYTHONPATH is what switches the code they run).

Needs wrk and nginx (`scripts/install-system-deps.sh --bench`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
from _support import free_port
from sidecar import start_meshfed
from sidecar_http import alternate, code_from, http_chain, print_runs

from meshfed.dpconfig.observability import AccessLog, Metrics, MetricsEndpoint, MetricsPush
from meshfed.dpconfig.tracing import Tracing


class _Sink(BaseHTTPRequestHandler):
    """A collector that takes every batch and answers 202."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def collector() -> int:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return port


def variants(tmp: Path, otel: bool) -> dict[str, dict[str, Any]]:
    down = Tracing("zipkin", f"http://127.0.0.1:{free_port()}/api/v2/spans", "bench")
    up = collector()
    zipkin = Tracing("zipkin", f"http://127.0.0.1:{up}/api/v2/spans", "bench")
    otlp = Tracing("otel", f"http://127.0.0.1:{up}", "bench")

    def all_three(name: str, tracing: Tracing) -> dict[str, Any]:
        log = (AccessLog("file", str(tmp / f"{name}.log")),)
        metrics = Metrics("127.0.0.1", (MetricsEndpoint(free_port()),))
        return {
            "sidecar": {"tracing": tracing, "metrics": metrics},
            "access_logs": log,
            "outbound": lambda _: {"access_logs": log},
        }

    out: dict[str, dict[str, Any]] = {
        "none": {},
        "trace-down": {"sidecar": {"tracing": down}},
        "trace-down-unsampled": {
            "sidecar": {"tracing": msgspec.structs.replace(down, overall=0.0)}
        },
        "all-three": all_three("all-three", zipkin),
        "none-again": {},  # a control: an equal chain, started after the others
    }
    if otel:
        out["all-three-otel"] = all_three("all-three-otel", otlp)
    # every policy with an OpenTelemetry backend (OTLP/HTTP), up or down
    closed = f"http://127.0.0.1:{free_port()}"
    for name, where in (("otel-all-up", f"http://127.0.0.1:{up}"), ("otel-all-down", closed)):
        log = (AccessLog("otel", where),)
        push = Metrics("127.0.0.1", pushes=(MetricsPush(where, 1.0),))
        out[name] = {
            "sidecar": {"tracing": Tracing("otel", where, "bench"), "metrics": push},
            "access_logs": log,
            "outbound": lambda _, log=log: {"access_logs": log},
        }
    for state, where in (("down", closed), ("up", f"http://127.0.0.1:{up}")):
        logs = (AccessLog("otel", where),)
        out[f"log-otel-{state}"] = {
            "access_logs": logs,
            "outbound": lambda _, logs=logs: {"access_logs": logs},
        }
        out[f"metric-otel-{state}"] = {
            "sidecar": {"metrics": Metrics("127.0.0.1", pushes=(MetricsPush(where, 1.0),))}
        }
        out[f"trace-otel-{state}"] = {"sidecar": {"tracing": Tracing("otel", where, "bench")}}
    return out


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """`field` of /proc/<pid>/status in MiB: VmRSS now, VmHWM the peak since the start."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def encode_costs() -> dict[str, float]:
    """µs per span of the OTLP and Zipkin `encode` (whichever code is imported)."""
    import time

    from mesh_dp.http.parse import RequestHead, RequestParser
    from mesh_dp.tracing import otlp, zipkin
    from mesh_dp.tracing.span import Listener, Span

    raw = (
        b"POST /1024 HTTP/1.1\r\nHost: 127.0.0.1:40000\r\nContent-Type: application/octet-stream"
        b"\r\nContent-Length: 1024\r\ntraceparent: 00-"
        + b"a" * 32
        + b"-"
        + b"b" * 16
        + b"-01\r\n\r\n"
    )
    heads = [RequestParser().feed(raw)[0] for _ in range(256)]  # one per request, as queued
    lst = Listener(False, "web", "backend", "backend", "default.web-1", "default", "zone-1")
    spans = [
        Span(lst, "a" * 32, f"{n:016x}", "b" * 16, 1.7e9, 0.003, 200, head, "127.0.0.1:5", "")
        for n, head in enumerate(heads, 1)
        if isinstance(head, RequestHead)
    ]
    out = {}
    for name, module, kind in (("otlp", otlp, "otel"), ("zipkin", zipkin, "zipkin")):
        conf = Tracing(kind, "http://127.0.0.1:4318", "web")  # type: ignore[arg-type]
        best = float("inf")
        for _ in range(5):
            started = time.thread_time()
            for _ in range(10):
                module.encode(spans, conf)
            best = min(best, (time.thread_time() - started) / (10 * len(spans)))
        out[name] = round(best * 1e6, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--body", type=int, default=1024, help="request and response bytes")
    parser.add_argument("--variants", default="none,trace-down,all-three")
    parser.add_argument("--otel", action="store_true", help="also all three with OTLP/HTTP")
    parser.add_argument("--base", help="a checkout whose code runs the --base-variants too")
    parser.add_argument("--base-variants", default="none,trace-down")
    parser.add_argument("--encode", action="store_true", help="only the span encoders' cost")
    args = parser.parse_args()
    if args.encode:
        costs = encode_costs()
        for name, us in costs.items():
            print(f"{name}: {us} µs per span (the exporter's thread)")
        print(json.dumps({"encode_us_per_span": costs}))
        return
    rss: dict[str, list[float]] = {}
    with http_chain(args.body) as chain:
        procs, ca, app_port = chain.procs, chain.ca, chain.app_port
        wanted = args.variants.split(",") + (["all-three-otel"] if args.otel else [])
        known = variants(procs.tmp, args.otel)
        setups = {
            name: start_meshfed(procs, ca, app_port, "http", **extra)
            for name, extra in known.items()
            if name in wanted
        }
        if args.base:
            with code_from(args.base):
                for name in args.base_variants.split(","):
                    setups[f"{name}@base"] = start_meshfed(
                        procs, ca, app_port, "http", **known[name]
                    )
        names = list(setups)
        loaded: dict[str, list[list[float]]] = {name: [] for name in names}
        results = alternate(
            chain,
            setups,
            args.rounds,
            args,
            lambda name, s: loaded[name].append([rss_mib(p) for p in s.pids]),
        )
        rss = {name: [round(rss_mib(p), 1) for p in s.pids] for name, s in setups.items()}
        hwm = {name: [round(rss_mib(p, "VmHWM"), 1) for p in s.pids] for name, s in setups.items()}
    print_runs(results, 15)
    base = {r.round: r.rps for r in results if r.path == "none"}
    # each sidecar's RSS right after each of its runs (the load just over), median of rounds
    under_load = {
        name: [round(statistics.median(run[i] for run in runs), 1) for i in range(2)]
        for name, runs in loaded.items()
        if runs
    }
    summary: dict[str, Any] = {
        "rss_mib_backend_web": rss,
        "peak_mib_backend_web": hwm,
        "loaded_rss_mib_backend_web": under_load,
    }
    for name in names:
        if name == "none":
            continue
        ratio = [r.rps / base[r.round] for r in results if r.path == name and base.get(r.round)]
        summary[f"{name}_rps_ratio"] = [round(x, 3) for x in ratio]
        if ratio:
            print(f"{name}: req/s {statistics.median(ratio):.3f}x none (median of rounds)")
    cpu_none = statistics.median(
        [r.proxy_cpu_us_per_request for r in results if r.path == "none"] or [0.0]
    )
    for name in names:
        cpu = statistics.median([r.proxy_cpu_us_per_request for r in results if r.path == name])
        vs = f" ({cpu / cpu_none - 1:+.1%} vs none)" if cpu_none else ""
        print(f"{name}: CPU {cpu:.1f} µs per request, both sidecars (median of rounds){vs}")
    for name, (backend, web) in rss.items():
        peak = "/".join(str(x) for x in hwm[name])
        after = "/".join(str(x) for x in under_load.get(name, []))
        print(
            f"{name}: RSS backend sidecar {backend} MiB, web sidecar {web} MiB (peak {peak}; "
            f"right after each run, median: {after})"
        )
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


if __name__ == "__main__":
    main()
