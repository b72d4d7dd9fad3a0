"""Instructions per request of the two sidecars of benchmarks/tracing.py's chain, counted by
valgrind's callgrind (deterministic where CPU time on a shared machine is not: issue 18's
"a backend that is down costs the data path nothing", decisions 167, 175, 186).

For each variant of tracing.py (`none`, `trace-down`, `trace-otel-down`, ...), a fresh chain
whose sidecars run under `valgrind --tool=callgrind --separate-threads=yes` (through
benchmarks/sidecar.py's MESHFED_BENCH_WRAP); `--warm` sequential 1 KiB POSTs on one
kept-alive connection, a dump of the counters, `--requests` more, a second dump. Printed:
instructions per request of each sidecar's main thread and of its other threads together
(the exporter's: under valgrind a request takes ~50x longer, so a thread that wakes on a
timer weighs ~50x more per request than it does at full speed).

    cd benchmarks && ../.venv/bin/python chain_instructions.py \\
        [--variants none,trace-down,trace-otel-down] [--runs 3] [--base DIR]

`--base DIR` (a `git archive` of another commit) also runs every variant on that code, as
`<variant>@base`, alternately with this code's. The counts move by ~1-2 % between equal runs
with the machine's load (the event loop takes more iterations per request): compare medians
of runs made in the same batch. Needs valgrind, nginx (the app). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _support
import sidecar
from sidecar_http import code_from, http_chain
from tracing import variants

BODY = b"x" * 1024


def _slow_wait_port(port: int, host: str = "127.0.0.1", timeout: float = 300.0) -> None:
    """A sidecar under valgrind takes a minute or more to listen."""
    _support.wait_port(port, host, timeout)


def _post(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/1024", body=BODY, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"the chain answered {resp.status}")


def _dump(pid: int) -> None:
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)


def _totals(out: Path, pid: int, part: int) -> dict[int, int]:
    """thread number -> instructions, of dump `part` of `pid`."""
    found = {}
    for path in out.glob(f"cg.{pid}.{part}-*"):
        thread = int(re.sub(r".*-", "", path.name))
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                found[thread] = int(line.split()[1])
                break
    return found


def one_run(variant: str, base: str | None, warm: int, requests: int) -> dict[str, float]:
    """Instructions per request: backend/web main thread, backend/web other threads."""
    with tempfile.TemporaryDirectory(prefix="meshfed-callgrind-") as tmp:
        out = Path(tmp)
        wrap = f"valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file={out}/cg.%p"
        os.environ["MESHFED_BENCH_WRAP"] = wrap
        try:
            with http_chain(1024) as chain:
                extra = variants(chain.procs.tmp, False)[variant]
                with code_from(base) if base else contextlib.nullcontext():
                    s = sidecar.start_meshfed(
                        chain.procs, chain.ca, chain.app_port, "http", **extra
                    )
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
                for _ in range(warm):
                    _post(conn)
                for pid in s.pids:
                    _dump(pid)  # part 1: start and warm-up
                for _ in range(requests):
                    _post(conn)
                for pid in s.pids:
                    _dump(pid)  # part 2: the measured requests
                conn.close()
                result = {}
                for pid, name in zip(s.pids, ("backend", "web"), strict=True):
                    counts = _totals(out, pid, 2)
                    result[f"{name} main"] = counts.pop(1, 0) / requests
                    result[f"{name} other"] = sum(counts.values()) / requests
                return result
        finally:
            del os.environ["MESHFED_BENCH_WRAP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--variants", default="none,trace-down,trace-otel-down")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", help="a checkout whose code runs every variant too")
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    sidecar.wait_port = _slow_wait_port  # start_meshfed's waits, under valgrind
    runs: dict[str, list[dict[str, float]]] = {}
    codes = [None, args.base] if args.base else [None]
    for n in range(args.runs):
        for variant in args.variants.split(","):
            for base in codes:
                name = f"{variant}@base" if base else variant
                started = time.monotonic()
                got = one_run(variant, base, args.warm, args.requests)
                runs.setdefault(name, []).append(got)
                main_k = (got["backend main"] + got["web main"]) / 1000
                print(
                    f"run {n + 1} {name}: {main_k:.1f}k instructions per request, both main "
                    f"threads ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    summary = {}
    for name, got in runs.items():
        both = [r["backend main"] + r["web main"] for r in got]
        med = {key: statistics.median(r[key] for r in got) for key in got[0]}
        summary[name] = {
            "both_main": [round(x) for x in both],
            **{k: round(v) for k, v in med.items()},
        }
        runs_k = ", ".join(f"{x / 1000:.1f}k" for x in both)
        print(
            f"{name}: both main threads {statistics.median(both) / 1000:.1f}k (runs {runs_k}); "
            f"backend {med['backend main'] / 1000:.1f}k, web {med['web main'] / 1000:.1f}k; "
            f"other threads {med['backend other'] / 1000:.1f}k / {med['web other'] / 1000:.1f}k"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
