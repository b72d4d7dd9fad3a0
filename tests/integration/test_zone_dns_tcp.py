"""DNS over TCP of a real zone-cp stays available while clients hold many idle connections
(it stopped answering at ~1,024), and idle connections are closed after the idle timeout."""

from __future__ import annotations

import contextlib
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.federation_support import Http, dataplane
from tests.integration.test_dns_server import dig
from tests.integration.test_zone_dns_standalone import start_zone
from tests.support import Procs, free_port, wait_until

pytestmark = [pytest.mark.integration]

HELD = 1100  # more than the server's 1024 connections
# Loopback addresses the held connections come from: at most 256 are kept per address.
SOURCES = [f"127.0.0.{i}" for i in range(2, 8)]


def dns_zone(procs: Procs, tmp_path: Path, *extra: str) -> tuple[Http, int]:
    port = free_port()
    _, http = start_zone(procs, tmp_path, "zone", "--dns-address", f"127.0.0.1:{port}", *extra)
    http.put("/meshes/default/dataplanes/backend-1", dataplane("backend-1", service="backend"))
    wait_until(lambda: dig(port, "backend.mesh").status == "NOERROR", timeout=15, what="DNS")
    return http, port


@contextlib.contextmanager
def held_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections to the DNS port that never send a query, from several
    addresses."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            source = (SOURCES[i % len(SOURCES)], 0)
            sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=source)
            sock.setblocking(False)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # still open, nothing to read
    except ConnectionError:
        return True


def tcp_connections(http: Http) -> float:
    with urllib.request.urlopen(f"{http.base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^meshfed_dns_tcp_connections (\S+)$", text, re.MULTILINE)
    assert match, "meshfed_dns_tcp_connections not in /metrics"
    return float(match.group(1))


def test_tcp_answers_while_many_idle_connections_are_held(procs: Procs, tmp_path: Path) -> None:
    http, port = dns_zone(procs, tmp_path)
    with held_connections(port, HELD) as socks:
        wait_until(lambda: tcp_connections(http) >= 1000, timeout=15, what="connections held")
        started = time.monotonic()
        answer = dig(port, "backend.mesh", "A", "+tcp")
        assert answer.status == "NOERROR", answer.output
        assert time.monotonic() - started < 5
        assert dig(port, "backend.mesh").status == "NOERROR"  # UDP unaffected
        assert tcp_connections(http) <= 1024
        # Room was made by closing the longest-idle connections, not the newest ones.
        assert any(closed_by_server(s) for s in socks[:200])
        assert not any(closed_by_server(s) for s in socks[-50:])


def test_idle_tcp_connections_are_closed_after_the_timeout(procs: Procs, tmp_path: Path) -> None:
    http, port = dns_zone(procs, tmp_path, "--dns-tcp-idle-timeout", "1s")
    with held_connections(port, 20) as socks:
        wait_until(
            lambda: all(closed_by_server(s) for s in socks),
            timeout=15,
            what="idle connections closed by the server",
        )
        wait_until(lambda: tcp_connections(http) == 0, timeout=10, what="no TCP connection left")
        assert dig(port, "backend.mesh", "A", "+tcp").status == "NOERROR"
