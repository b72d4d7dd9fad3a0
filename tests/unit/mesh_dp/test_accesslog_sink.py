"""MeshAccessLog destinations (mesh_dp/accesslog_sink.py): lines reach a file and a TCP
collector off the caller's thread; a full queue or a collector that is down drops lines and
counts them instead of waiting."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from mesh_dp.accesslog_format import Event, compile_format
from mesh_dp.accesslog_sink import AccessLogs, Destination
from mesh_dp.http.accesslog import Record
from meshfed.dpconfig.observability import AccessLog, LogFormat
from meshfed.proxy.promtext import render
from tests.support import free_port, wait_until

PLAIN = compile_format(LogFormat(plain="%KUMA_DESTINATION_SERVICE% %RESPONSE_CODE%"))


def event(service: str, status: int = 200) -> Event:
    return Event("outbound", "default", "web", service, 0.0, 0.0, status=status)


def test_file_lines_are_appended_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    dest = Destination("file", str(path))
    for i in range(50):
        dest.offer(PLAIN, event(f"s{i}"))
    wait_until(lambda: dest.written == 50, 5, what="50 lines written")
    assert path.read_text().splitlines() == [f"s{i} 200" for i in range(50)]
    dest.close()


def test_tcp_collector_gets_the_lines_and_a_dead_one_costs_drops() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                got.append(data)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    dest = Destination("tcp", f"127.0.0.1:{port}")
    dest.offer(PLAIN, event("backend"))
    wait_until(lambda: b"".join(got) == b"backend 200\n", 5, what="the line at the collector")
    dest.close()
    thread.join(5)
    server.close()
    down = Destination("tcp", f"127.0.0.1:{free_port()}")  # nobody listens
    down.offer(PLAIN, event("x"))
    wait_until(lambda: down.dropped == 1, 5, what="the line counted as dropped")
    down.close()


def test_a_full_queue_drops_without_blocking(tmp_path: Path) -> None:
    dest = Destination("file", str(tmp_path / "x.log"), capacity=1)
    block = threading.Event()

    def slow(e: Event) -> str:
        block.wait(5)
        return "x"

    for _ in range(20):
        dest.offer(slow, event("x"))  # returns at once: one or two queued, the rest dropped
    assert dest.dropped >= 18
    block.set()
    dest.close()


def test_sinks_per_listener_and_their_metrics(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    stdout: list[Record] = []
    logs = AccessLogs(stdout.append)
    fmt = LogFormat(plain="%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %REQ(:PATH)%")
    backends = (AccessLog("file", str(path), fmt),)
    assert logs.http_sink((), "default", "", "web") == stdout.append  # `--access-log` only
    inbound = logs.http_sink(backends, "default", "", "web")
    assert inbound is not None
    inbound(Record("inbound", "web", b"GET", b"/x", peer="spiffe://default/frontend"))
    wait_until(lambda: path.read_text() == "frontend->web -\n", 5, what="the inbound line")
    assert len(stdout) == 1
    line = f'meshfed_dp_access_log_lines_total{{kind="file",target="{path}"}} 1.0'
    # the writer thread counts the line just after writing it
    wait_until(lambda: line in render(logs.collect()).decode(), 5, what="the line counted")
    text = render(logs.collect()).decode()
    assert 'meshfed_dp_access_log_dropped_total{kind="file"' in text
