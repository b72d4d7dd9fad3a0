"""zone-ingress as a real process: SNI routing without TLS termination, refusals of bad
input (each counted, none of them stopping the ingress), per-service metrics, and a
graceful drain on SIGTERM.

Callees are real mesh-dp sidecars in front of echo applications; callers are plain TLS
clients with a mesh certificate, setting the SNI a sidecar would (encode_sni).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from meshfed.dpconfig.sni import encode_sni
from meshfed.pki.tls import client_context
from tests.integration.test_mesh_dp_support import (
    IngressProc,
    Launcher,
    Scenario,
    closed_without_data,
    metrics_text,
    recv_line,
)
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

BACKEND_SNI = encode_sni("backend", "default")


class Zone2:
    """Two backend instances behind their sidecars, and zone-2's ingress in front."""

    def __init__(self, procs: Procs, tmp: Path, *extra: str) -> None:
        self.s = Scenario()
        self.backends = [self.s.add_instance(f"backend-{i}", "zone-2", "backend") for i in (1, 2)]
        self.spot = self.s.add_ingress("zone-2")
        self.run = Launcher(procs, tmp)
        for b in self.backends:
            self.run.echo(b, mode="tcp")
            self.run.sidecar(b.name, self.s.callee_config(b))
        self.ingress: IngressProc = self.run.ingress(
            self.spot, self.s.ingress_config("zone-2"), *extra
        )
        self.ctx = client_context(self.s.leaf("web"), self.s.ca.cert)

    def connect(self, sni: str = BACKEND_SNI) -> ssl.SSLSocket:
        raw = socket.create_connection((self.spot.address, self.spot.port), timeout=5)
        return self.ctx.wrap_socket(raw, server_hostname=sni)

    def call(self) -> bytes:
        with self.connect() as tls:
            return recv_line(tls)

    def raw(self) -> socket.socket:
        return socket.create_connection((self.spot.address, self.spot.port), timeout=5)

    def rejected(self, reason: str) -> int:
        return int(self.ingress.stats()["rejected"].get(reason, 0))


def test_routes_by_sni_round_robin_without_terminating_tls(procs: Procs, tmp_path: Path) -> None:
    z = Zone2(procs, tmp_path)
    answers = [z.call() for _ in range(6)]
    assert sorted(set(answers)) == [b"backend-1 zone-2\n", b"backend-2 zone-2\n"]
    assert answers[:2] * 3 == answers  # round robin
    with z.connect() as tls:
        # The certificate the caller sees is the callee sidecar's own: TLS passed through.
        assert tls.getpeercert(binary_form=True) is not None
        assert recv_line(tls).startswith(b"backend-")
        tls.sendall(b"ping\n")
        assert recv_line(tls) == b"ping\n"
    routed = z.ingress.stats()["services"]
    assert [(r["service"], r["connectionsTotal"]) for r in routed] == [("backend", 7)]
    metrics = metrics_text(z.ingress.admin)
    assert 'meshfed_ingress_connections_total{mesh="default",service="backend"} 7.0' in metrics
    sent = next(
        line for line in metrics.splitlines() if line.startswith("meshfed_ingress_sent_bytes_total")
    )
    assert float(sent.rsplit(" ", 1)[1]) > 7 * 200  # ClientHellos at least


def test_bad_input_is_closed_counted_and_the_ingress_keeps_serving(
    procs: Procs, tmp_path: Path
) -> None:
    z = Zone2(procs, tmp_path, "--hello-timeout", "700ms")

    # Unknown SNI: a mesh name of a service the zone does not have, and a non-mesh name.
    for sni in (encode_sni("payments", "default"), "example.com"):
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)), z.connect(sni) as tls:
            tls.recv(1)
    assert z.rejected("unknown_sni") == 2
    assert z.call().startswith(b"backend-")

    # Garbage: an HTTP request, a TLS record that is no ClientHello, random bytes.
    http = b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n"
    server_hello = b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"
    before = sum(z.ingress.stats()["rejected"].values())
    for junk in (http, server_hello, b"\x16\x03\x01" + os.urandom(200)):
        with z.raw() as sock:
            sock.sendall(junk)
            assert closed_without_data(sock)
    assert z.rejected("not_tls") == 1
    assert z.rejected("not_client_hello") >= 1
    assert sum(z.ingress.stats()["rejected"].values()) == before + 3
    assert z.call().startswith(b"backend-")

    # Slowloris: a ClientHello that never completes, one byte at a time.
    hello = _client_hello_bytes(z)
    with z.raw() as sock:
        started = time.monotonic()
        closed = False
        for byte in hello[:-1]:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if time.monotonic() - started > 3:
                break
            time.sleep(0.02)
        assert closed or closed_without_data(sock)
        assert time.monotonic() - started < 3
    assert z.rejected("timeout") == 1
    # Opened and closed without a byte (a port scan, a TCP health check).
    with z.raw():
        pass
    wait_until(lambda: z.rejected("closed") == 1)
    assert z.call().startswith(b"backend-")
    metrics = metrics_text(z.ingress.admin)
    assert 'meshfed_ingress_rejected_total{reason="timeout"} 1.0' in metrics
    assert 'meshfed_ingress_rejected_total{reason="unknown_sni"} 2.0' in metrics
    assert z.ingress.proc.alive()


def _client_hello_bytes(z: Zone2) -> bytes:
    """The real first flight of a mesh caller, captured from an in-memory TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = z.ctx.wrap_bio(incoming, outgoing, server_hostname=BACKEND_SNI)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_graceful_drain_on_sigterm(procs: Procs, tmp_path: Path) -> None:
    z = Zone2(procs, tmp_path, "--drain-timeout", "20s")
    with z.connect() as open_conn:
        assert recv_line(open_conn).startswith(b"backend-")
        z.ingress.proc.signal(signal.SIGTERM)
        # New connections are refused at once...
        wait_until(lambda: _refused(z), what="listener closed")
        # ...while the open one keeps flowing.
        for i in range(5):
            open_conn.sendall(b"still here %d\n" % i)
            assert recv_line(open_conn) == b"still here %d\n" % i
        assert z.ingress.proc.alive()
    # Once the last connection is done, the process exits cleanly.
    assert z.ingress.proc.popen.wait(10) == 0
    assert "drained; 0 connection(s) cut" in z.ingress.proc.log()


def test_drain_deadline_cuts_what_is_left(procs: Procs, tmp_path: Path) -> None:
    z = Zone2(procs, tmp_path, "--drain-timeout", "1s")
    with z.connect() as open_conn:
        assert recv_line(open_conn).startswith(b"backend-")
        started = time.monotonic()
        z.ingress.proc.signal(signal.SIGTERM)
        assert z.ingress.proc.popen.wait(10) == 0
        assert 0.9 <= time.monotonic() - started < 5
        assert closed_without_data(open_conn)
    assert "drained; 1 connection(s) cut" in z.ingress.proc.log()


def _refused(z: Zone2) -> bool:
    try:
        with socket.create_connection((z.spot.address, z.spot.port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_unreachable_instances_are_skipped(procs: Procs, tmp_path: Path) -> None:
    """An instance that stopped is passed over for the next one; with none left the caller's
    connection is closed and counted."""
    z = Zone2(procs, tmp_path)
    backend_1 = next(p for p in procs.started if p.name == "backend-1")
    backend_1.stop()
    assert {z.call() for _ in range(4)} == {b"backend-2 zone-2\n"}
    next(p for p in procs.started if p.name == "backend-2").stop()
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        z.call()
    assert z.rejected("no_endpoint") == 1
    assert z.ingress.stats()["services"][0]["connectFailures"] >= 3


def test_command_line_errors(procs: Procs, tmp_path: Path) -> None:
    import subprocess

    ingress = procs.script("zone-ingress")
    result = subprocess.run([ingress, "run"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "give --cp grpc://HOST:PORT" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"zone": "zone-2", "services": [{"mesh": "default"}]}')
    result = subprocess.run(
        [
            ingress,
            "run",
            "--config-file",
            str(bad),
            "--port",
            "0",
            "--admin-address",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "bad.json: services[0].service: is required" in result.stderr
