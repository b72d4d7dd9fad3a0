"""The proxies' admin endpoint: routes, statuses, metrics, and bad requests."""

from __future__ import annotations

import asyncio
import json

from meshfed.config import Address
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.promtext import Family, counter


class One:
    def collect(self) -> list[Family]:
        c = counter("meshfed_test_things", "Things", ["kind"])
        c.add(["a"], 3)
        return [c]


def server() -> AdminServer:
    return AdminServer(
        Address("127.0.0.1", 0),
        {"/stats": lambda: {"n": 1}, "/ready": lambda: (503, {"ready": False})},
        metrics_registry(One()),
    )


def test_answers() -> None:
    s = server()
    assert s.answer("GET", "/stats") == (200, "application/json", b'{\n  "n": 1\n}\n')
    status, _, body = s.answer("GET", "/ready?verbose=1")
    assert (status, json.loads(body)) == (503, {"ready": False})
    status, kind, body = s.answer("GET", "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert b'meshfed_test_things_total{kind="a"} 3.0' in body
    assert b"process_resident_memory_bytes" in body
    assert s.answer("POST", "/stats")[0] == 405
    status, _, body = s.answer("GET", "/nope")
    assert status == 404 and b"/metrics, /ready, /stats" in body


async def test_over_a_socket() -> None:
    s = server()
    await s.start()
    try:
        for request, first_line in (
            (b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK"),
            (b"BREW /pot\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(first_line)
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /" + b"x" * 10000)  # no end of header in sight
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await s.stop()
