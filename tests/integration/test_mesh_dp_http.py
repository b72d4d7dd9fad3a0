"""mesh-dp's HTTP/1.1 path end to end: real sidecars with real mTLS, HTTP applications
(tests/integration/http_backend.py) on loopback, services tagged `kuma.io/protocol: http`.

The test process plays web's application and talks to web's outbound listener on the
backend VIP with raw sockets, so it controls keep-alive, pipelining and framing.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from tests.integration.test_mesh_dp_support import (
    Instance,
    Launcher,
    Scenario,
    SidecarProc,
    metrics_text,
    outbound,
)
from tests.support import Proc, Procs, port_open, wait_until

pytestmark = pytest.mark.integration

HTTP = {"kuma.io/protocol": "http"}


def start_backend(procs: Procs, instance: Instance) -> Proc:
    proc = procs.start(
        f"app-{instance.name}",
        [
            sys.executable,
            "-m",
            "tests.integration.http_backend",
            "--address",
            f"{instance.app_address}:{instance.app_port}",
            "--name",
            instance.name,
        ],
    )
    host, port = instance.app_address, instance.app_port
    wait_until(lambda: port_open(host, port) or not proc.alive(), what=f"app {instance.name}")
    assert proc.alive(), proc.log()
    return proc


@dataclass
class Mesh:
    scenario: Scenario
    run: Launcher
    web: SidecarProc
    backends: list[SidecarProc]
    apps: list[Proc]
    address: str
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection((self.address, self.port), timeout=10)


def http_mesh(procs: Procs, tmp: Path, backends: int = 2, *extra: str) -> Mesh:
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web", HTTP)
    instances = [
        s.add_instance(f"backend-{i + 1}", "zone-1", "backend", HTTP) for i in range(backends)
    ]
    run = Launcher(procs, tmp)
    apps = [start_backend(procs, i) for i in instances]
    sidecars = [run.sidecar(i.name, s.callee_config(i), *extra) for i in instances]
    config = s.sidecar_config(web)
    out = outbound(config, "backend")
    assert out.protocol == "http"
    web_sidecar = run.sidecar("web-1", config, *extra)
    return Mesh(s, run, web_sidecar, sidecars, apps, out.address, out.port)


class Reader:
    """Reads HTTP/1.1 responses off a raw socket (Content-Length or chunked)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = int(self.line().split()[1])
        headers: dict[str, str] = {}
        while line := self.line():
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        if head_only or status < 200 or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.line().split(b";")[0], 16):
                body += self.exact(size)
                self.line()
            while self.line():
                pass
            return status, headers, body
        return status, headers, self.exact(int(headers.get("content-length", "0")))


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: backend", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_keep_alive_balancing_pipelining_and_pooling(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path)
    with m.connect() as sock:
        r = Reader(sock)
        names = []
        for _ in range(10):
            sock.sendall(get("/who"))
            status, headers, body = r.response()
            assert status == 200, (headers, body)
            names.append(json.loads(body)["name"])
        # Per-request balancing on one client connection: round robin over both backends.
        assert sorted(set(names)) == ["backend-1", "backend-2"]
        assert names.count("backend-1") == 5
        # Pipelined: three requests in one write, three answers in order.
        sock.sendall(get("/who?n=1") + get("/chunks?n=2") + get("/who?n=3"))
        assert json.loads(r.response()[2])["path"] == "/who?n=1"
        assert r.response()[2] == b"chunk-0\nchunk-1\n"
        assert json.loads(r.response()[2])["path"] == "/who?n=3"
    # Keep-alive upstream: 13 requests reached each backend sidecar over one connection.
    for b in m.backends:
        assert b.inbound()["connectionsTotal"] == 1
    stats = m.web.outbound("backend")["http"]
    assert stats["statuses"] == {"2xx": 13}
    text = metrics_text(m.web.admin)
    assert 'meshfed_dp_http_requests_total{address="' in text
    assert 'status_class="2xx"} 13' in text
    assert "meshfed_dp_http_request_duration_seconds_bucket{" in text


def test_hop_by_hop_headers_are_not_forwarded(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    with m.connect() as sock:
        sock.sendall(
            get(
                "/who",
                "Connection: keep-alive, X-Secret",
                "X-Secret: 1",
                "Keep-Alive: 5",
                "X-Kept: 2",
            )
        )
        status, _, body = Reader(sock).response()
    seen = json.loads(body)["headers"]
    assert status == 200
    assert seen["x-kept"] == "2"
    assert "x-secret" not in seen and "keep-alive" not in seen


def test_chunked_bodies_both_ways_and_100_continue(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    payload = bytes(range(256)) * 300  # 76 KiB
    with m.connect() as sock:
        r = Reader(sock)
        head = "POST /echo?chunked=1 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode())
        for i in range(0, len(payload), 7000):
            part = payload[i : i + 7000]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        status, headers, body = r.response()
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert body == payload
        # Expect: 100-continue: the 100 comes back before the body is sent.
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert r.response()[0] == 100
        sock.sendall(b"hello")
        assert r.response()[2] == b"hello"
        # HEAD: the Content-Length says the size, no body follows; the connection goes on.
        sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: b\r\n\r\n")
        status, headers, _ = r.response(head_only=True)
        assert status == 200 and headers["content-length"] == "1234"
        sock.sendall(get("/who"))
        assert r.response()[0] == 200


def test_upgrade_becomes_a_tunnel(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    with m.connect() as sock:
        sock.sendall(get("/ws", "Upgrade: websocket", "Connection: Upgrade"))
        r = Reader(sock)
        status, headers, _ = r.response()
        assert status == 101 and headers["upgrade"] == "websocket"
        for message in (b"\x81\x05hello", b"raw bytes, not HTTP\r\n\r\n", b"x" * 100_000):
            sock.sendall(message)
            assert r.exact(len(message)) == message


def test_malformed_requests_get_400_and_others_go_on(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    with m.connect() as good:
        good_reader = Reader(good)
        good.sendall(get("/who"))
        assert good_reader.response()[0] == 200
        for bad in (
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        ):
            for port in (m.port,):
                with socket.create_connection((m.address, port), timeout=10) as sock:
                    sock.sendall(bad)
                    status, headers, body = Reader(sock).response()
                    assert status in (400, 431), body
                    assert headers["x-meshfed-error"] in ("bad-request", "header-too-large")
                    assert headers["connection"] == "close"
        # The inbound sidecar parses too: a malformed request straight to it (over mTLS).
        good.sendall(get("/who"))
        assert good_reader.response()[0] == 200
    assert m.web.proc.alive()
    assert m.web.outbound("backend")["http"]["errors"]["bad-request"] >= 3


def test_upstream_down_and_no_endpoint(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    with m.connect() as sock:
        sock.sendall(get("/status/503"))
        status, headers, _ = Reader(sock).response()
        assert status == 503 and "x-meshfed-error" not in headers  # the app's own 503
    # The application stops: the backend sidecar answers 502 connect-failed.
    m.apps[0].stop()
    with m.connect() as sock:
        sock.sendall(get("/who"))
        status, headers, body = Reader(sock).response()
        assert status == 502 and headers["x-meshfed-error"] == "connect-failed", body
    # The backend sidecar stops: the web sidecar answers 502 connect-failed too.
    m.backends[0].proc.stop()
    with m.connect() as sock:
        r = Reader(sock)
        sock.sendall(get("/who"))
        status, headers, body = r.response()
        assert status == 502 and headers["x-meshfed-error"] == "connect-failed", body
        assert b"backend" in body
        # The connection stays usable (the request had no body).
        sock.sendall(get("/who"))
        assert r.response()[0] == 502
    wait_until(lambda: m.web.outbound("backend")["http"]["ejections"] >= 1)


def test_no_endpoint_is_503(procs: Procs, tmp_path: Path) -> None:
    s = Scenario()
    web = s.add_instance("web-1", "zone-1", "web", HTTP)
    backend = s.add_instance("backend-1", "zone-1", "backend", HTTP)
    config = s.sidecar_config(web)
    assert backend.service == "backend"
    # The backend's instances all went away: the outbound is still there, with no endpoint.
    empty = [
        o if o.service != "backend" else msgspec.structs.replace(o, endpoints=())
        for o in config.outbounds
    ]
    config = msgspec.structs.replace(config, outbounds=tuple(empty)).stamped()
    run = Launcher(procs, tmp_path)
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    with socket.create_connection((out.address, out.port), timeout=10) as sock:
        sock.sendall(get("/who"))
        status, headers, _ = Reader(sock).response()
    assert status == 503 and headers["x-meshfed-error"] == "no-healthy-endpoint"


def test_access_log_lines(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1, "--access-log")
    with m.connect() as sock:
        sock.sendall(get("/who?q=1"))
        assert Reader(sock).response()[0] == 200
    wait_until(lambda: '"GET /who?q=1 HTTP/1.1" 200' in m.web.proc.log(), what="log line")
    line = next(x for x in m.web.proc.log().splitlines() if '"GET /who?q=1' in x)
    assert " outbound backend " in line and "upstream=" in line


def test_a_denied_caller_gets_403_from_the_callee_sidecar(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    callee = m.scenario.instances["backend-1"]
    m.scenario.set_policies("MeshTrafficPermission", [])
    m.backends[0].reload(m.scenario.callee_config(callee))
    with m.connect() as sock:
        sock.sendall(get("/who"))
        status, headers, body = Reader(sock).response()
    assert status == 403 and headers["x-meshfed-error"] == "permission-denied", body
    inbound = m.backends[0].inbound()
    assert inbound["denied"] == {"spiffe://default/web": 1}
    assert inbound["http"]["errors"] == {"permission-denied": 1}


def test_idle_timeout_closes_a_quiet_keep_alive_client(procs: Procs, tmp_path: Path) -> None:
    from tests.unit.policy.factories import MESH_REF, policy, to

    s = Scenario()
    s.add_policy(policy("MeshTimeout", "idle", MESH_REF, to=[to(MESH_REF, {"idleTimeout": "1s"})]))
    web = s.add_instance("web-1", "zone-1", "web", HTTP)
    backend = s.add_instance("backend-1", "zone-1", "backend", HTTP)
    run = Launcher(procs, tmp_path)
    start_backend(procs, backend)
    run.sidecar(backend.name, s.callee_config(backend))
    config = s.sidecar_config(web)
    run.sidecar("web-1", config)
    out = outbound(config, "backend")
    with socket.create_connection((out.address, out.port), timeout=10) as sock:
        r = Reader(sock)
        for _ in range(3):  # busy: stays open
            sock.sendall(get("/who"))
            assert r.response()[0] == 200
        started = time.monotonic()
        assert sock.recv(1) == b""  # then closed by the sidecar once quiet for idleTimeout
        assert 0.5 < time.monotonic() - started < 5


def test_a_permission_change_applies_to_the_next_request_of_a_kept_alive_connection(
    procs: Procs, tmp_path: Path
) -> None:
    """MeshTrafficPermission is asked per HTTP request (as Envoy's HTTP RBAC filter does): the
    caller's sidecar keeps its upstream connection alive, and a deleted permission must not
    keep allowing calls on it until it idles out."""
    m = http_mesh(procs, tmp_path, 1)
    callee = m.scenario.instances["backend-1"]
    with m.connect() as sock:
        sock.sendall(get("/who"))
        assert Reader(sock).response()[0] == 200
    opened = m.backends[0].inbound()["connectionsTotal"]
    m.scenario.set_policies("MeshTrafficPermission", [])
    m.backends[0].reload(m.scenario.callee_config(callee))
    with m.connect() as sock:
        sock.sendall(get("/who"))
        status, headers, body = Reader(sock).response()
    assert status == 403 and headers["x-meshfed-error"] == "permission-denied", body
    # the same upstream connection carried it: no new connection reached the callee
    assert m.backends[0].inbound()["connectionsTotal"] == opened
    assert m.backends[0].inbound()["denied"] == {"spiffe://default/web": 1}
