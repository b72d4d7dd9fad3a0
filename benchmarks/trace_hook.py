"""What MeshTrace's per-request hook costs (mesh_dp/tracing/tracer.py), alone: `start` and
`finish` called as the HTTP pipeline calls them, on heads parsed as a sidecar parses them, in
a tight loop, CPU time of this thread (the machine is shared: wall time is not). Cases:

- `baseline`: the Record and the head's bytes for upstream (`request_bytes`), no MeshTrace;
- `outbound, new trace`: web's outbound, a request without context (Zipkin, B3 written);
- `inbound, B3 shared`: backend's inbound continuing it (Zipkin's shared span context, the
  headers passed on as they came);
- `inbound, W3C child`: an OpenTelemetry inbound continuing a `traceparent` (a child span,
  the header rewritten);
- `outbound, unsampled`: `overall: 0` (propagation only, no span).

    .venv/bin/python benchmarks/trace_hook.py [--requests 50000] [--repeat 5]

Prints microseconds per request over the baseline, the fastest of `--repeat` runs, and a
JSON line. `--instructions` counts instead what `start` alone executes per call, for a
backend that is failing (since decision 186 the request is left as it came; before, the
context was read and written, no span made), or with `--up` for one that is up (the span's
record made, not offered), under valgrind's callgrind (deterministic where CPU time is not:
the same heads and records are made in two runs, `start` is called on them in one only,
PYTHONHASHSEED fixed):

    .venv/bin/python benchmarks/trace_hook.py --instructions [--up] [--requests 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from mesh_dp.http.accesslog import Record
from mesh_dp.http.headers import request_bytes
from mesh_dp.http.parse import RequestHead, RequestParser
from mesh_dp.tracing.span import Listener
from mesh_dp.tracing.tracer import Pending, Tracer
from meshfed.dpconfig.tracing import Tracing

HEAD = (
    b"POST /1024 HTTP/1.1\r\nHost: backend.mesh\r\nContent-Length: 1024\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n"
)
TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def heads(raw: bytes, n: int) -> list[RequestHead]:
    out = []
    for _ in range(n):
        (h, *_) = RequestParser().feed(raw)
        assert isinstance(h, RequestHead)
        out.append(h)
    return out


def tracer(kind: str, server: bool, **conf: float) -> Tracer:
    t = Tracing(kind, "http://127.0.0.1:9/s", "web", **conf)  # type: ignore[arg-type]
    shared = server and kind == "zipkin"  # Kuma's default shared span context
    listener = Listener(
        server, "web", "backend", "backend", "default.web-1", "default", "z", shared=shared
    )
    return Tracer(t, listener, drop)


def drop(item: Pending) -> None:
    """The exporter's offer when its backend is down: the span is counted and dropped."""


def run(t: Tracer | None, raw: bytes, n: int) -> float:
    todo = heads(raw, n)
    start = time.thread_time()
    for h in todo:
        r = Record("outbound", "backend", h.method, h.target, h.version)
        r.head = h
        if t is not None:
            t.start(r, h)
        request_bytes(h)
        r.duration = 0.001
        if r.trace is not None and t is not None:
            t.finish(r)
    return (time.thread_time() - start) / n * 1e6


class Gate:
    """An exporter's state (tracer.Gate): failing, `start` makes no span."""

    def __init__(self, failing: bool) -> None:
        self.failing, self.dropped = failing, 0


def start_only(t: Tracer, raw: bytes, n: int, call: bool, up: bool) -> None:
    """`n` heads and records made; `t.start` called on each only if `call`."""
    todo = heads(raw, n)
    records = [Record("outbound", "backend", h.method, h.target, h.version) for h in todo]
    t.gate = Gate(not up)
    gc.disable()
    if call:
        for r, h in zip(records, todo, strict=True):
            t.start(r, h)


def instructions(case: str, n: int, up: bool) -> float:
    """Instructions per `start` call of `case`: callgrind's total with the calls less the
    total without them, over `n`."""
    totals = []
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        for call in (False, True):
            out = f"{tmp}/callgrind.{int(call)}"
            cmd = [sys.executable, __file__, "--one", case, "--requests", str(n)]
            cmd += (["--call"] if call else []) + (["--up"] if up else [])
            valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            subprocess.run(valgrind + cmd, check=True, capture_output=True, env=env)
            with open(out) as f:
                totals += [int(x.split()[1]) for x in f if x.startswith(("summary:", "totals:"))][
                    :1
                ]
    return (totals[1] - totals[0]) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="callgrind, per start")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a case, under callgrind
    parser.add_argument("--call", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--up", action="store_true", help="--instructions: the backend up")
    args = parser.parse_args()
    b3 = HEAD.replace(
        b"\r\n\r\n",
        f"\r\nx-b3-traceid: {TRACE[16:]}\r\nx-b3-spanid: {SPAN}\r\n"
        f"x-b3-sampled: 1\r\n\r\n".encode(),
    )
    w3c = HEAD.replace(b"\r\n\r\n", f"\r\ntraceparent: 00-{TRACE}-{SPAN}-01\r\n\r\n".encode())
    cases: dict[str, tuple[Callable[[], Tracer | None], bytes]] = {
        "baseline": (lambda: None, HEAD),
        "outbound, new trace": (lambda: tracer("zipkin", False), HEAD),
        "inbound, B3 shared": (lambda: tracer("zipkin", True), b3),
        "inbound, W3C child": (lambda: tracer("otel", True), w3c),
        "outbound, unsampled": (lambda: tracer("zipkin", False, overall=0.0), HEAD),
    }
    if args.one:
        make, raw = cases[args.one]
        t = make()
        assert t is not None
        start_only(t, raw, args.requests, args.call, args.up)
        return
    if args.instructions:
        counts = {
            name: instructions(name, args.requests, args.up) for name in cases if name != "baseline"
        }
        for name, count in counts.items():
            print(f"{name:22} {count:10.0f} instructions per start")
        print(json.dumps({k: round(v) for k, v in counts.items()}))
        return
    results = {
        name: min(run(make(), raw, args.requests) for _ in range(args.repeat))
        for name, (make, raw) in cases.items()
    }
    base = results["baseline"]
    print(f"{'case':22} {'µs/request':>10} {'over baseline':>14}")
    for name, us in results.items():
        print(f"{name:22} {us:10.2f} {us - base:14.2f}")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
