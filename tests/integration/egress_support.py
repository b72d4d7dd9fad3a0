"""What the zone-egress tests share: a local external server with its own CA (issue 17)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshfed.pki.ca import MeshCA
from meshfed.pki.leaf import issue_leaf
from tests.support import Procs

TIMEOUT = 10.0
EXTERNAL_NAME = "ext.test"  # the external server certificate's DNS name


def external_server_context(ca: MeshCA, tmp: Path) -> ssl.SSLContext:
    """A server context with a certificate from `ca` naming EXTERNAL_NAME (and the URI
    `spiffe://<ca mesh>/api`, which the SAN-matcher tests match by prefix)."""
    leaf = issue_leaf(ca, "api", dns_names=[EXTERNAL_NAME])
    cert, key = tmp / "external.crt", tmp / "external.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class TlsServer:
    """A one-thread-per-connection server on loopback (or on the unix socket `unix`): TLS
    with `ctx`, or plain; answers every request with `HTTP/1.1 200` and a body naming `name`."""

    def __init__(self, name: str, ctx: ssl.SSLContext | None, unix: Path | None = None) -> None:
        self.name = name
        self.ctx = ctx
        if unix is None:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = int(self.sock.getsockname()[1])
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(str(unix))
            self.sock.listen()
            self.port = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True) if self.ctx else conn
            with tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                body = f"hello from {self.name}".encode()
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body)
                )
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def module_processes(factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, Procs]]:
    """A directory and the processes of one test module: every one stopped by PID at the
    end, their logs printed when the module's setup or a test fails."""
    root = factory.mktemp(name)
    procs = Procs(root)
    try:
        yield root, procs
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()
