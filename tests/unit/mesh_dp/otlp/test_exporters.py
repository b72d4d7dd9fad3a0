"""The OTLP exporters against collectors on loopback (tests/otlp_receivers.py): OTLP/HTTP and
OTLP/gRPC (the sidecar's h2 client against grpcio), the access-log destination's batches, and
that a collector that is down or failing costs the caller one append and counted drops."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mesh_dp.accesslog_format import Event
from mesh_dp.otlp.logs import OtelLogDestination
from mesh_dp.otlp.metrics_push import encode_parts
from mesh_dp.otlp.records import compile_record
from mesh_dp.otlp.transport import ExportError, Sender
from mesh_dp.tracing.export import Exporter
from meshfed.dpconfig.observability import LogFormat
from meshfed.dpconfig.tracing import Tracing
from meshfed.policy.otlp import parse_endpoint
from tests.otlp_receivers import GrpcReceiver, HttpReceiver, attrs
from tests.support import free_port, wait_until
from tests.unit.mesh_dp.tracing.test_export import CLIENT, span

RENDER = compile_record(LogFormat(json=(("dst", "%KUMA_DESTINATION_SERVICE%"),)))
PROM = b'# TYPE req_total counter\nreq_total{service="b"} 4\n'


def event(i: int) -> Event:
    return Event("outbound", "default", "web", f"s{i}", time.time(), 0.001)


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Iterator[HttpReceiver | GrpcReceiver]:
    r = HttpReceiver("/otlp") if request.param == "http" else GrpcReceiver()
    yield r
    r.stop()


def test_a_destination_exports_every_record_in_order(receiver: HttpReceiver | GrpcReceiver) -> None:
    dest = OtelLogDestination(receiver.endpoint)
    dest.resource = [("kuma.zone", "zone-1")]
    for i in range(300):
        dest.offer(RENDER, event(i))
    wait_until(lambda: dest.written == 300, 10, what="300 records exported")
    got = receiver.got.records()
    assert [attrs(rec)["dst"] for _, rec in got] == [f"s{i}" for i in range(300)]
    assert got[0][0] == {"kuma.zone": "zone-1"}
    assert dest.dropped == 0
    dest.close()


def test_metrics_and_large_bodies_go_through(receiver: HttpReceiver | GrpcReceiver) -> None:
    sender = Sender(parse_endpoint(receiver.endpoint))
    big = PROM + b"".join(b'x_total{i="%d"} 1\n' % i for i in range(20000))  # > h2 windows
    for _ in range(2):  # the connection is kept
        sender.send("metrics", encode_parts([("kuma.mesh", "m")], [("", big)], 1, 2))
    points = [(name, p.as_double) for _, name, p in receiver.got.metric_points()]
    assert ("req_total", 4.0) in points and len(points) == 2 * 20001
    sender.close()


def test_a_failing_collector_raises_export_error(receiver: HttpReceiver | GrpcReceiver) -> None:
    receiver.got.fail = True
    sender = Sender(parse_endpoint(receiver.endpoint))
    with pytest.raises(ExportError):
        sender.send("metrics", encode_parts([], [("", PROM)], 1, 2))


@pytest.mark.parametrize("form", ["http://127.0.0.1:{}", "127.0.0.1:{}"])
def test_a_collector_that_is_down_costs_one_append_and_counted_drops(form: str) -> None:
    dest = OtelLogDestination(form.format(free_port()), capacity=1000)
    started = time.perf_counter()
    for i in range(5000):
        dest.offer(RENDER, event(i))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"5000 offers took {elapsed:.3f}s"
    wait_until(lambda: dest.dropped + dest.written >= 4000 and not dest.queue, 10, what="drops")
    assert dest.written == 0 and dest.dropped >= 4000
    wait_until(lambda: dest.failing, 10, what="the collector seen down")
    dropped = dest.dropped
    dest.offer(RENDER, event(0))  # within the retry window: dropped at the offer
    assert dest.dropped == dropped + 1 and not dest.queue
    dest.close()


def test_the_sidecar_loads_no_otel_protobufs_until_it_exports() -> None:
    lazy = (
        *("opentelemetry", "http.client", "h2", "mesh_dp.tracing.otlp"),
        *("mesh_dp.otlp.transport", "mesh_dp.otlp.grpc", "mesh_dp.otlp.encode"),
    )
    probe = (
        "import sys, mesh_dp.app, mesh_dp.accesslog_sink, mesh_dp.otlp.logs, "
        "mesh_dp.otlp.metrics_push, mesh_dp.otlp.records, mesh_dp.tracing.export, "
        "mesh_dp.tracing.zipkin, mesh_dp.tracing.datadog\n"
        f"print(sorted(m for m in sys.modules if m.startswith({lazy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_http_backend_loads_no_h2() -> None:
    """OTLP/HTTP, Zipkin and Datadog need no h2 (~1 MiB): it is for gRPC."""
    probe = (
        "import sys\n"
        "from mesh_dp.otlp.transport import Sender, UrlSender\n"
        "from meshfed.policy.otlp import parse_endpoint\n"
        "Sender(parse_endpoint('http://127.0.0.1:9')).close(); UrlSender().close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('h2', 'mesh_dp.otlp.grpc'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_collector_never_up_gets_nothing_loaded() -> None:
    """A closed port: the access-log destination and the metrics pusher probe it first
    (mesh_dp/otlp/probe.py) and load neither the protobufs, the HTTP client nor h2."""
    code = (
        "import asyncio, sys, time\n"
        "from mesh_dp.otlp.logs import OtelLogDestination\n"
        "from mesh_dp.otlp.metrics_push import MetricsPushes\n"
        "from meshfed.dpconfig.observability import MetricsPush\n"
        "where = 'http://127.0.0.1:%s' % sys.argv[1]\n"
        "dest = OtelLogDestination(where)\n"
        "dest.offer(lambda e: e, object())\n"
        "async def parts(): return [('', b'up 1\\n')]\n"
        "async def push():\n"
        "    pushes = MetricsPushes(parts)\n"
        "    from mesh_dp.otlp.metrics_push import _Pusher\n"
        "    p = _Pusher(MetricsPush(where, 60.0), parts, pushes)\n"
        "    while not pushes.failed: await asyncio.sleep(0.01)\n"
        "    p.task.cancel()\n"
        "asyncio.run(asyncio.wait_for(push(), 10))\n"
        "deadline = time.monotonic() + 10\n"
        "while dest.dropped < 1 and time.monotonic() < deadline: time.sleep(0.01)\n"
        "lazy = ('opentelemetry', 'http.client', 'h2', 'mesh_dp.otlp.transport', "
        "'mesh_dp.otlp.encode')\n"
        "print(dest.dropped, sorted(m for m in sys.modules if m.startswith(lazy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(free_port())], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1 []", out.stderr


class HeldCollector:
    """OTLP/HTTP that reads each request at once and answers it only once `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests += 1
                outer.release.wait(10)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("signal", ["logs", "traces"])
def test_what_is_queued_while_an_answer_is_awaited_is_encoded_meanwhile(signal: str) -> None:
    """A slow collector: the requests queued while it prepares its answer are encoded (their
    heads released) instead of waiting in the queue, and sent in the next batch."""
    collector = HeldCollector()
    exporter: Exporter | OtelLogDestination
    offer: Callable[[int], None]
    done: Callable[[], int]
    if signal == "logs":
        logs = exporter = OtelLogDestination(collector.url)
        offer, done = (lambda n: logs.offer(RENDER, event(n))), (lambda: logs.written)
    else:
        traces = exporter = Exporter(Tracing("otel", collector.url, "web"))
        offer, done = (lambda n: traces.offer(span(CLIENT, n))), (lambda: traces.exported)
    try:
        for n in range(1, 11):
            offer(n)
        wait_until(lambda: collector.requests == 1, 10, what="the first batch sent")
        for n in range(11, 61):
            offer(n)
        wait_until(lambda: not exporter.queue, 10, what="the queue encoded meanwhile")
        assert done() == 0 and collector.requests == 1  # the first answer is still awaited
        wait_until(lambda: exporter.waiting == 50, 10, what="50 encoded, waiting (the gauge)")
        collector.release.set()
        wait_until(lambda: done() == 60, 10, what="both batches answered")
        assert collector.requests == 2 and exporter.dropped == 0
    finally:
        exporter.close()
        collector.stop()
