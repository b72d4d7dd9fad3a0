"""Fuzzed HTTP/1.1 against the sidecar's outbound (plain, from the app) and inbound (mTLS,
from a caller): random request lines, headers, body framing (chunk sizes that lie, bad
extensions) and truncations. Each answer is an HTTP response or a closed connection, the
sidecars stay up, and a keep-alive connection opened before the fuzzing keeps working.
Bounded: a fixed number of examples per listener (no example database).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.pki.tls import client_context
from tests.integration.test_mesh_dp_http import Reader, get, http_mesh
from tests.support import Procs

pytestmark = pytest.mark.integration

TOKEN = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"OPTIONS", b"G(T", b""])
VERSION = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1", b"HTTP/1.1 x", b""])
TARGET = st.one_of(
    st.sampled_from([b"/who", b"/echo", b"/ws", b"*", b"http://x/who"]), st.binary(max_size=16)
)
NAME = st.one_of(
    st.sampled_from(
        [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Upgrade"]
    ),
    st.binary(max_size=10),
)
VALUE = st.one_of(
    st.sampled_from([b"chunked", b"5", b"-1", b"100-continue", b"close", b"upgrade", b"websocket"]),
    st.binary(max_size=16),
)
CHUNK = st.tuples(
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=40),
    st.sampled_from([b"", b";x=1", b";\x00", b"  "]),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = b"%s %s %s\r\n" % (draw(TOKEN), draw(TARGET), draw(VERSION))
    headers = b"".join(
        b"%s: %s\r\n" % h for h in draw(st.lists(st.tuples(NAME, VALUE), max_size=5))
    )
    body = b""
    if draw(st.booleans()):
        for size, data, ext in draw(st.lists(CHUNK, max_size=4)):
            body += b"%x%s\r\n%s\r\n" % (size, ext, data)
        body += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX: y\r\n\r\n", b""]))
    else:
        body = draw(st.binary(max_size=60))
    raw = line + headers + b"\r\n" + body
    cut = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(raw))))
    return raw if cut is None else raw[:cut]


def answer_or_close(sock: socket.socket, data: bytes, *, half_close: bool) -> bytes:
    sock.sendall(data)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        pass  # waiting for the rest of a request we cut: a legal state
    return got


def test_fuzzed_requests_get_a_response_or_a_close(procs: Procs, tmp_path: Path) -> None:
    m = http_mesh(procs, tmp_path, 1)
    keeper = m.connect()
    keeper_reader = Reader(keeper)
    callee = m.scenario.instances["backend-1"]
    tls = client_context(m.scenario.leaf("web"), m.scenario.ca.cert)

    def check(got: bytes) -> None:
        assert got == b"" or got.startswith(b"HTTP/1.1 "), got[:200]

    @settings(max_examples=60, deadline=None, database=None)
    @given(requests())
    def outbound(data: bytes) -> None:
        with socket.create_connection((m.address, m.port), timeout=5) as sock:
            check(answer_or_close(sock, data, half_close=True))

    @settings(max_examples=20, deadline=None, database=None)
    @given(requests())
    def inbound(data: bytes) -> None:
        raw = socket.create_connection((callee.address, callee.port), timeout=5)
        with tls.wrap_socket(raw) as sock:
            sock.settimeout(1.0)
            check(answer_or_close(sock, data, half_close=False))

    outbound()
    inbound()
    assert m.web.proc.alive() and m.backends[0].proc.alive()
    keeper.sendall(get("/who"))
    assert keeper_reader.response()[0] == 200
    keeper.close()
