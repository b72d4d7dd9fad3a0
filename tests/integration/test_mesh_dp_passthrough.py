"""mesh-dp's passthrough proxy as a real process (MeshPassthrough, issue 17): an application
that uses it as its HTTP proxy reaches outside destinations the config's `passthrough` admits,
by address, port and the protocol of its first bytes, and nothing else. The config comes from
a static file (the zone-cp builds the same field: tests/unit/mesh_control/test_egress_build.py
and tests/unit/dpconfig/test_passthrough.py), reloaded with SIGHUP."""

from __future__ import annotations

import json
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshfed.pki.ca import create_mesh_ca
from tests.integration.egress_support import (
    TlsServer,
    external_server_context,
    module_processes,
)
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Proc, Procs, free_port, port_open, wait_until

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


class World:
    def __init__(self, root: Path, procs: Procs) -> None:
        self.ca = create_mesh_ca("ext")
        self.plain = TlsServer("plain", None)
        self.tls = TlsServer("tls", external_server_context(self.ca, root))
        self.config = root / "sidecar.json"
        self.write(
            "Matched",
            [
                {"type": "IP", "value": "127.0.0.1", "port": self.plain.port, "protocol": "http"},
                {"type": "Domain", "value": "localhost", "port": self.tls.port, "protocol": "tls"},
            ],
        )
        self.port, self.admin = free_port(), free_port()
        self.proc: Proc = procs.start(
            "mesh-dp",
            [
                procs.script("mesh-dp"),
                "run",
                "--config-file",
                str(self.config),
                "--passthrough-address",
                f"127.0.0.1:{self.port}",
                "--admin-address",
                f"127.0.0.1:{self.admin}",
            ],
        )
        wait_until(lambda: port_open("127.0.0.1", self.port), timeout=TIMEOUT, what="proxy")

    def write(self, mode: str, matches: list[dict[str, Any]]) -> None:
        self.config.write_text(
            json.dumps(
                {
                    "mesh": "default",
                    "zone": "zone-1",
                    "dataplane": "web-1",
                    "identity": "spiffe://default/web",
                    "mtlsEnabled": False,
                    "passthrough": {"mode": mode, "matches": matches},
                }
            )
        )

    def connect(self, host: str, port: int) -> tuple[int, socket.socket]:
        """A CONNECT through the proxy: the status and the tunnel."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                break
            head += chunk
        return int(head.split(b" ", 2)[1]), sock

    def outcomes(self) -> dict[str, int]:
        return dict(admin_json(self.admin)["passthrough"]["outcomes"])


def read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with module_processes(tmp_path_factory, "passthrough") as (root, procs):
        yield World(root, procs)


def test_a_matched_http_destination_is_reached(world: World) -> None:
    status, sock = world.connect("127.0.0.1", world.plain.port)
    with sock:
        assert status == 200
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_all(sock).endswith(b"hello from plain")


def test_other_bytes_on_an_http_match_are_cut(world: World) -> None:
    status, sock = world.connect("127.0.0.1", world.plain.port)
    with sock:
        assert status == 200
        sock.sendall(b"\x00\x01 not http at all")
        assert read_all(sock) == b""
    assert world.outcomes().get("refused_protocol", 0) >= 1


def test_a_matched_domain_with_tls(world: World) -> None:
    status, raw = world.connect("localhost", world.tls.port)
    assert status == 200
    ctx = ssl.create_default_context(cadata=world.ca.cert_pem.decode())
    with ctx.wrap_socket(raw, server_hostname="ext.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: ext.test\r\n\r\n")
        assert read_all(tls).endswith(b"hello from tls")


def test_unmatched_destinations_are_refused(world: World) -> None:
    # (localhost:<plain port> would pass: localhost resolves to the matched IP)
    for host, port in (("127.0.0.1", world.tls.port), ("127.0.0.2", world.plain.port)):
        status, sock = world.connect(host, port)
        sock.close()
        assert status == 403, (host, port)


def test_mode_none_after_a_reload_refuses_everything(world: World) -> None:
    world.write("None", [])
    world.proc.signal(signal.SIGHUP)

    def refused() -> bool:
        status, sock = world.connect("127.0.0.1", world.plain.port)
        sock.close()
        return status == 403

    wait_until(refused, timeout=TIMEOUT, what="mode None")
