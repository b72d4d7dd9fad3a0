"""What MeshAccessLog costs the request path: the listener's access-log sink per request
(mesh_dp/accesslog_sink.py), with no backend, a file, a TCP collector that is down, and a
queue that is full (every line dropped).

    .venv/bin/python benchmarks/access_log.py [--requests 200000] [--repeat 5]

Per case: microseconds per request, the fastest of `--repeat` runs (the machine is shared);
the writer threads run meanwhile, as in the sidecar. The loop offers lines far faster than
a sidecar serves requests, so the file's queue fills and most lines are dropped (the JSON
line says how many): the request-path cost is what it measures. The last case is what the
writer spends formatting one line.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable

from mesh_dp.accesslog_format import Event, compile_format
from mesh_dp.accesslog_sink import AccessLogs
from mesh_dp.http.accesslog import Record
from mesh_dp.http.parse import RequestHead, RequestParser
from meshfed.dpconfig.observability import AccessLog, LogFormat

FORMAT = LogFormat(
    plain="[%START_TIME%] %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% "
    '"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% %BYTES_SENT% %DURATION%'
)


def head() -> RequestHead:
    (h, *_) = RequestParser().feed(b"GET /api/items?page=2 HTTP/1.1\r\nHost: backend.mesh\r\n\r\n")
    assert isinstance(h, RequestHead)
    return h


def run(sink: Callable[[Record], None] | None, n: int) -> float:
    h = head()
    start = time.perf_counter()
    for _ in range(n):
        r = Record("outbound", "backend", h.method, h.target, h.version, status=200, sent=512)
        r.head, r.duration = h, 0.003
        if sink is not None:
            sink(r)
    return (time.perf_counter() - start) / n * 1e6


def _timed(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    logs = AccessLogs()
    cases: dict[str, Callable[[Record], None] | None] = {
        "no MeshAccessLog": logs.http_sink((), "default", "web", "backend"),
        "file": logs.http_sink(
            (AccessLog("file", os.path.join(tmp, "a.log"), FORMAT),), "default", "web", "backend"
        ),
        "tcp collector down": logs.http_sink(
            (AccessLog("tcp", "127.0.0.1:9", FORMAT),), "default", "web", "backend"
        ),
        "otlp collector down": logs.http_sink(
            (AccessLog("otel", "http://127.0.0.1:9", LogFormat()),), "default", "web", "backend"
        ),
    }
    results: dict[str, float] = {}
    for name, sink in cases.items():
        results[name] = min(run(sink, args.requests) for _ in range(args.repeat))
    full = logs.destinations[("tcp", "127.0.0.1:9")]
    fmt = compile_format(FORMAT)
    event = Event(
        "outbound",
        "default",
        "web",
        "backend",
        time.time(),
        0.003,
        200,
        512,
        0,
        "127.0.0.1:8080",
        head(),
        "1.1",
    )
    results["format one line (writer)"] = min(
        _timed(lambda: fmt(event), args.requests) for _ in range(args.repeat)
    )
    # what the OTLP exporter's thread spends on one record: render it, encode it in a batch
    from mesh_dp.otlp.records import compile_record
    from mesh_dp.otlp.wire import logs_request

    render = compile_record(LogFormat())
    batch = 1000
    results["otlp render+encode (exporter)"] = min(
        _timed(lambda: logs_request((), [render(event) for _ in range(batch)], 0), 20) / batch
        for _ in range(args.repeat)
    )
    print(f"{'case':<26} us/request")
    for name, us in results.items():
        print(f"{name:<26} {us:8.2f}")
    time.sleep(1)  # let the file's writer finish what is queued
    lines = {
        k[0]: {"written": d.written, "dropped": d.dropped} for k, d in logs.destinations.items()
    }
    print(json.dumps({"us_per_request": results, "lines": lines, "tcp_dropped": full.dropped}))


if __name__ == "__main__":
    main()
