"""The exporters' HTTP/1.1 client (mesh_dp/otlp/transport.py `Http`, on the sidecar's own
parser) against a server on loopback that answers each request with scripted bytes: the
ways an answer can be framed, kept connections and collectors that close them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from mesh_dp.otlp.transport import ExportError, UrlSender
from tests.support import free_port


class Scripted:
    """Accepts connections; for each request read, sends the next scripted answer: `close`
    closes the connection instead, an answer ending in `<close>` closes it after."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                while self.answers:
                    head = b""
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    self.requests.append(head + b"\r\n" + reader.read(length))
                    answer = self.answers.pop(0)
                    if answer == b"close":
                        break
                    conn.sendall(answer.removesuffix(b"<close>"))
                    if answer.endswith(b"<close>"):
                        break

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    s = Scripted(list(request.param))
    yield s
    s.stop()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n<close>"


@pytest.mark.parametrize(
    ("server", "connections"),
    [
        ([OK, OK], 1),
        (
            [
                b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                OK,
            ],
            1,
        ),
        ([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", OK], 1),
        ([CLOSE, OK], 2),  # the collector says it closes
        ([b"HTTP/1.0 200 OK\r\n\r\nuntil the end<close>", OK], 2),  # a body ended by the close
        ([OK, b"close", OK], 2),  # a kept connection it closed: the request is sent once more
    ],
    indirect=["server"],
)
def test_answers_framed_any_way_and_the_connections_they_leave(
    server: Scripted, connections: int
) -> None:
    client = UrlSender()
    for _ in range(2):
        client.send("POST", f"http://127.0.0.1:{server.port}/v1/traces", b"xyz", {"A": "b"})
    assert server.connections == connections
    first = server.requests[0]
    assert first.startswith(b"POST /v1/traces HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"\r\nContent-Length: 3\r\n" in first and b"\r\nA: b\r\n" in first
    assert first.endswith(b"\r\n\r\nxyz")
    client.close()


@pytest.mark.parametrize(
    "server",
    [
        [b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort<close>"],
        [b"not http at all\r\n\r\n"],
        [b"close"],
    ],
    indirect=True,
)
def test_a_failed_answer_is_an_export_error(server: Scripted) -> None:
    client = UrlSender(timeout=2.0)
    with pytest.raises(ExportError):
        client.send("POST", f"http://127.0.0.1:{server.port}/s", b"{}", {})
    client.close()
