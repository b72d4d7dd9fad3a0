"""A small demo and test application that says who answered.

    python -m mesh_dp.echo --address 127.0.0.1:8080 --name backend-1 --zone zone-2 [--mode tcp]

- `http` (default): HTTP/1.1 with keep-alive. Every response is JSON naming the instance and
  zone with the request's method, path and body size; `POST /echo` answers with the
  request body itself instead, and `GET /delay/<ms>` answers after that many milliseconds (at
  most 60000): a slow backend, to watch a MeshTimeout act on a call.
- `tcp`: writes `<name> <zone>\\n` on connect, then echoes every byte back; an EOF from the
  client is answered with an EOF once everything is echoed.

It runs until SIGTERM or SIGINT. An address it cannot listen on ends it with one line naming
the address and the reason, and exit status 1 (`meshctl up --demo` shows that line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Sequence
from typing import cast

from meshfed.config import parse_address

MAX_HEADER = 64 * 1024


class TcpEcho(asyncio.Protocol):
    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.greeting)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write_eof()
        return True


_DELAY = re.compile(r"/delay/(\d{1,5})(?:[/?]|$)")
MAX_DELAY_MS = 60_000


def _delay_ms(path: str) -> int | None:
    """The milliseconds `GET /delay/<ms>` asks to wait, or None for any other path."""
    m = _DELAY.match(path)
    return None if m is None else min(int(m.group(1)), MAX_DELAY_MS)


class HttpEcho(asyncio.Protocol):
    """Just enough HTTP/1.1 for tests and benchmarks: Content-Length bodies, keep-alive."""

    def __init__(self, name: str, zone: str) -> None:
        self.name = name
        self.zone = zone
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting: asyncio.TimerHandle | None = None  # a /delay answer still to come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self.waiting is None and self._one_request():
            pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiting is not None:
            self.waiting.cancel()
            self.waiting = None

    def _one_request(self) -> bool:
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER:
                self._fail(431, "request header too large")
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, "not an HTTP/1.x request")
            return False
        method, path, version = parts
        headers = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "bad Content-Length")
            return False
        if len(self.buffer) < end + 4 + length:
            return False
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if method == "POST" and path == "/echo":
            payload, kind = body, "application/octet-stream"
        else:
            answer = {
                "instance": self.name,
                "zone": self.zone,
                "method": method,
                "path": path,
                "bodyBytes": len(body),
            }
            if path == "/headers":  # what reached the application (MeshTrace's tests)
                answer["headers"] = headers
            payload, kind = json.dumps(answer).encode() + b"\n", "application/json"
        delay = _delay_ms(path) if method == "GET" else None
        if delay is not None:
            self.waiting = asyncio.get_running_loop().call_later(
                delay / 1000, self._answer_later, payload, kind, keep
            )
            return False  # later requests wait: answers go out in order
        self._respond(200, payload, kind, keep)
        return keep

    def _answer_later(self, payload: bytes, kind: str, keep: bool) -> None:
        self.waiting = None
        if self.transport is None or self.transport.is_closing():
            return
        self._respond(200, payload, kind, keep)
        if keep:
            self.data_received(b"")  # the requests that came meanwhile

    def _respond(self, status: int, body: bytes, kind: str, keep: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"X-Instance: {self.name}\r\nX-Zone: {self.zone}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        if not keep:
            self.transport.close()

    def _fail(self, status: int, reason: str) -> None:
        self._respond(status, reason.encode() + b"\n", "text/plain", keep=False)
        self.buffer.clear()


async def serve(host: str, port: int, name: str, zone: str, mode: str) -> None:
    loop = asyncio.get_running_loop()
    greeting = f"{name} {zone}\n".encode()

    def factory() -> asyncio.Protocol:
        return TcpEcho(greeting) if mode == "tcp" else HttpEcho(name, zone)

    server = await loop.create_server(factory, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"echo {name} ({zone}, {mode}) listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mesh_dp.echo", description=__doc__)
    parser.add_argument("--address", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--name", required=True, help="instance name put in every answer")
    parser.add_argument("--zone", default="", help="zone name put in every answer")
    parser.add_argument("--mode", choices=["http", "tcp"], default="http")
    args = parser.parse_args(argv)
    try:
        address = parse_address(args.address)
    except ValueError as exc:
        parser.error(f"--address: {exc}")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(address.host, address.port, args.name, args.zone, args.mode))
    except OSError as exc:  # bind: in use, not a local address, permission
        reason = exc.strerror or str(exc)
        print(f"echo {args.name}: cannot listen on {args.address}: {reason}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
