"""What MeshRateLimit and MeshFaultInjection on an HTTP inbound (decision 128) and
MeshHTTPRoute on the outbound (decision 125) cost mesh-dp: the same chain as
benchmarks/sidecar_http.py (wrk -> web sidecar -> mTLS -> backend sidecar -> nginx app), with

- `none`: no such policy (the callback path, fast.py, serves every request);
- `rate-limit`: a MeshRateLimit that never triggers (10^9 requests per second) on backend;
- `faults-other`: a MeshFaultInjection on backend whose faults are for another caller only;
- `route-and-limit` (issue 14's benchmark case): web's outbound carries a MeshHTTPRoute of 10
  path rules (nine that never match, then `/` with backend's endpoint as its one backendRef:
  every request walks all ten) and backend the never-triggering MeshRateLimit;
- `none-other` (with `--compare-with DIR`): `none` on the mesh_dp package in DIR;

run alternately in each round (the order rotates), `--duration` seconds each after 1 s of
warm-up. Prints requests/s, p50/p99 and the proxies' CPU per request, and each variant's
median ratio to `none`.

    .venv/bin/python benchmarks/sidecar_inbound_policies.py [--duration 5] [--rounds 3]
        [--connections 16] [--body 1024] [--variants none,rate-limit,faults-other]

Needs wrk and nginx (`scripts/install-system-deps.sh --bench`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from typing import Any

from sidecar import start_meshfed
from sidecar_http import alternate, code_from, http_chain, print_runs

from meshfed.dpconfig.model import Endpoint, HttpMatch, HttpRule, PathMatch, Split
from meshfed.dpconfig.traffic import (
    Abort,
    HttpFault,
    InboundFaults,
    InboundRateLimit,
    Rate,
)

NEVER = InboundRateLimit(http=Rate(10**9, 1.0), sources=("MeshRateLimit/bench",))


def ten_rules(endpoint: Endpoint) -> tuple[HttpRule, ...]:
    """Nine PathPrefix rules no request of the run matches, then `/` to backend itself."""
    missed = tuple(
        HttpRule(HttpMatch(path=PathMatch("PathPrefix", f"/never-{i}"))) for i in range(9)
    )
    split = Split("backend", 1, (endpoint,))
    return (*missed, HttpRule(HttpMatch(path=PathMatch("PathPrefix", "/")), splits=(split,)))


VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "rate-limit": {"rate_limit": NEVER},
    "route-and-limit": {"outbound": lambda e: {"http_rules": ten_rules(e)}, "rate_limit": NEVER},
    "faults-other": {
        "faults": InboundFaults(
            mesh="default",
            services={"other": (HttpFault(abort=Abort(503, 100.0)),)},
            sources=("MeshFaultInjection/bench",),
        )
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--body", type=int, default=1024, help="request and response bytes")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help="also run `none` with the mesh_dp package found in DIR (an A/B of the code: "
        "`git archive <commit> mesh_dp | tar -x -C DIR`)",
    )
    args = parser.parse_args()
    with http_chain(args.body) as chain:
        procs, ca, app_port = chain.procs, chain.ca, chain.app_port
        setups = {
            name: start_meshfed(procs, ca, app_port, "http", **extra)
            for name, extra in VARIANTS.items()
            if name in args.variants.split(",")
        }
        if args.compare_with:
            with code_from(args.compare_with):
                setups["none-other"] = start_meshfed(procs, ca, app_port, "http")
        names = list(setups)
        results = alternate(chain, setups, args.rounds, args)
    print_runs(results, 13)
    base = {r.round: r.rps for r in results if r.path == "none"}
    summary: dict[str, list[float]] = {}
    for name in names:
        if name == "none":
            continue
        ratio = [r.rps / base[r.round] for r in results if r.path == name and base.get(r.round)]
        summary[f"{name}_rps_ratio"] = [round(x, 2) for x in ratio]
        if ratio:
            print(f"{name}: req/s {statistics.median(ratio):.2f}x none (median of rounds)")
    print(json.dumps({"results": [asdict(r) for r in results], "summary": summary}))


if __name__ == "__main__":
    main()
