"""A zone's service catalog pass over 2,000 Dataplanes: what zone-cp's services loop does.

    .venv/bin/python benchmarks/catalog_build.py [--dataplanes 2000] [--rounds 20]

Each pass of `zone_cp.services` builds the catalog (`build_catalog`: the local healthy inbounds
and the other zones' ingresses) and the zone's own `availableServices`, from the Resources
its store cache holds. Those Resources stay the same objects from one pass to the next (the
cache hands them out read-only), so a pass after a change reads mostly resources it read
before. Timed: the first pass over freshly made Resources ("cold": every body read for the
first time) and the following passes over the same objects ("warm", the steady state), and
one pass in which 1% of the Dataplanes are new objects (a registration wave). Times are the
process's CPU time (the machine may be shared; a pass does no I/O).

Dataplanes have one or two inbounds (services `svc-0` .. `svc-199`, http on a third) and three
outbounds; ten ingresses of other zones advertise the same services.

Not a test: prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from meshfed.dpconfig.catalog import available_services, build_catalog
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Meta, Resource

ZONE = "zone-1"


def dataplane(i: int) -> Resource:
    service = f"svc-{i % 200}"
    tags = {"kuma.io/service": service, "version": f"v{i % 3}"}
    if i % 3 == 0:
        tags["kuma.io/protocol"] = "http"
    inbounds: list[dict[str, Any]] = [{"port": 20000 + i % 1000, "servicePort": 8080, "tags": tags}]
    if i % 2:
        inbounds.append(
            {
                "port": 30000 + i % 1000,
                "tags": {"kuma.io/service": f"{service}-admin"},
                "health": {"ready": i % 10 != 1},
            }
        )
    outbounds = [
        {"port": 10000 + k, "tags": {"kuma.io/service": f"svc-{(i + k) % 200}"}} for k in range(3)
    ]
    spec = {
        "networking": {
            "address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "inbound": inbounds,
            "outbound": outbounds,
        }
    }
    return Resource("Dataplane", Meta(name=f"dp-{i}", mesh="default"), spec)


def ingress(z: int) -> Resource:
    services = [
        {
            "tags": {"kuma.io/service": f"svc-{s}", "meshfed.io/service-port": "8080"},
            "instances": 1 + s % 4,
            "mesh": "default",
        }
        for s in range(200)
    ]
    spec = {
        "zone": f"zone-{z + 2}",
        "networking": {"address": f"192.0.2.{z}", "port": 10001},
        "availableServices": services,
    }
    meta = Meta(name=f"zi-{z}", labels={LABEL_ORIGIN: ORIGIN_GLOBAL})
    return Resource("ZoneIngress", meta, spec)


def one_pass(dataplanes: list[Resource], ingresses: list[Resource]) -> float:
    started = time.process_time()
    catalog = build_catalog(ZONE, dataplanes, ingresses)
    available_services(dataplanes, ZONE)
    elapsed = time.process_time() - started
    assert len(catalog) == 280  # 200 services, 80 admin ones (20 have no ready instance)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataplanes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    cold: list[float] = []
    warm: list[float] = []
    wave: list[float] = []
    for _ in range(max(1, args.rounds // 5)):
        dataplanes = [dataplane(i) for i in range(args.dataplanes)]
        ingresses = [ingress(z) for z in range(10)]
        cold.append(one_pass(dataplanes, ingresses))
        warm += [one_pass(dataplanes, ingresses) for _ in range(args.rounds)]
        fresh = max(1, args.dataplanes // 100)
        dataplanes[:fresh] = [dataplane(i) for i in range(fresh)]
        wave.append(one_pass(dataplanes, ingresses))
    print(f"{args.dataplanes} dataplanes, 10 remote ingresses x 200 services")
    for label, runs in (("cold", cold), ("warm", warm), ("1% new", wave)):
        print(
            f"  {label:7s} median {statistics.median(runs) * 1000:7.2f} ms"
            f"  min {min(runs) * 1000:7.2f} ms  ({len(runs)} passes)"
        )


if __name__ == "__main__":
    main()
