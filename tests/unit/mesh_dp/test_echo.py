"""The demo app's HTTP answers: `/delay/<ms>` answers late, and later requests wait their turn."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from mesh_dp.echo import HttpEcho, _delay_ms
from tests.support import async_wait_until


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def paths(raw: bytes) -> list[str]:
    """The `path` of each JSON answer, in the order written."""
    return [json.loads(line)["path"] for line in raw.split(b"\n") if line.startswith(b"{")]


def test_delay_paths() -> None:
    assert _delay_ms("/delay/1500") == 1500
    assert _delay_ms("/delay/0?x=1") == 0
    assert _delay_ms("/delay/99999") == 60_000
    assert _delay_ms("/delayed/5") is None and _delay_ms("/who") is None


async def test_a_delayed_answer_comes_late_and_in_order() -> None:
    echo = HttpEcho("backend-1", "zone-1")
    t = Transport()
    echo.connection_made(t)
    started = time.monotonic()
    echo.data_received(b"GET /delay/200 HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
    assert t.out == b""  # neither answer yet: /next waits behind /delay

    async def both() -> bool:
        return b"/next" in t.out

    await async_wait_until(both, timeout=5, what="both answers")
    assert time.monotonic() - started >= 0.2
    assert paths(bytes(t.out).replace(b"\r\n\r\n{", b"\n{")) == ["/delay/200", "/next"]


async def test_a_client_that_leaves_cancels_the_delayed_answer() -> None:
    echo = HttpEcho("backend-1", "zone-1")
    t = Transport()
    echo.connection_made(t)
    echo.data_received(b"GET /delay/50 HTTP/1.1\r\n\r\n")
    echo.connection_lost(None)
    await asyncio.sleep(0.1)
    assert t.out == b""
