"""What counting a KDS response costs (meshfed.kds.metrics), next to encoding it.

    .venv/bin/python benchmarks/kds_metrics.py [--rounds 20000]

Per response of 1 and of 100 MeshTimeouts: `StreamMetrics.response_sent` (with the
protobuf `ByteSize()` run_sender passes it) plus `reply_received` (an ACK: one propagation
observation per resource), against `response_to_pb`, which every response pays anyway.
Not a test: prints numbers.
"""

from __future__ import annotations

import argparse
import time

from meshfed.kds.convert import response_to_pb
from meshfed.kds.messages import SyncResponse, to_wire
from meshfed.kds.metrics import KdsMetrics
from meshfed.resources.model import Meta, Resource, now_rfc3339


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    metrics = KdsMetrics()
    for size in (1, 100):
        meta = [
            Meta(name=f"p{i}", mesh="default", modification_time=now_rfc3339()) for i in range(size)
        ]
        resp = SyncResponse(
            "MeshTimeout", [to_wire(Resource("MeshTimeout", m, {"n": 1})) for m in meta]
        )
        message = response_to_pb(resp)
        stream = metrics.stream("zone-1", "global-to-zone")
        rounds = max(1, args.rounds // size)
        start = time.perf_counter()
        for _ in range(rounds):
            stream.response_sent(resp, message.ByteSize())
            stream.reply_received(resp.type, nack=False)
        counted = (time.perf_counter() - start) / rounds
        start = time.perf_counter()
        for _ in range(rounds):
            response_to_pb(resp)
        encoded = (time.perf_counter() - start) / rounds
        print(
            f"{size:3d} resource(s): metrics {counted * 1e6:7.1f} us/response, "
            f"response_to_pb {encoded * 1e6:7.1f} us/response"
        )


if __name__ == "__main__":
    main()
