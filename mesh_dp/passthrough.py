"""The sidecar's passthrough proxy: how an application reaches a destination outside the mesh
directly, when MeshPassthrough (or the Mesh's `networking.outbound.passthrough`) lets it.

mesh-dp has no transparent interception (decision 158): an application opts in by using
`--passthrough-address` as its HTTP proxy (`HTTPS_PROXY`/`HTTP_PROXY`, or any client that
speaks CONNECT). Per connection:

1. read one `CONNECT host:port HTTP/1.1` request head (8 KiB at most, within
   `--handshake-timeout`); anything else answers 405;
2. decide with the config's `passthrough` (meshfed/dpconfig/passthrough.py): `None` (or no
   config yet) answers 403; `All` admits; `Matched` resolves the host and keeps the entries
   that match host, address and port; none: 403;
3. connect to the (first admitted) address, answer `200 Connection Established`; when only
   entries of a byte-checked protocol (tls, http, http2, grpc) matched, the application's first
   bytes must be that protocol's, else the tunnel is closed before they are sent;
4. relay both ways until either side closes.

Counted per outcome for `/stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any, Final

from meshfed.aio import wait_for
from meshfed.dpconfig.passthrough import (
    PEEK_BYTES,
    Passthrough,
    PassthroughMatch,
    admitted_by_bytes,
    admitted_without_bytes,
    candidates,
)

log = logging.getLogger("mesh_dp.passthrough")

MAX_HEAD: Final = 8 * 1024
CHUNK: Final = 64 * 1024
CONNECT_TIMEOUT: Final = 10.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PassthroughProxy:
    def __init__(self, host: str, port: int, *, head_timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.head_timeout = head_timeout
        self.policy: Passthrough | None = None
        self.counts: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def update(self, policy: Passthrough | None) -> None:
        """New connections follow `policy`; open tunnels stay (as Kuma keeps open streams)."""
        self.policy = policy

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def stats(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "mode": self.policy.mode if self.policy else None,
            "outcomes": dict(self.counts),
        }

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            self._count("closed")
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
        except asyncio.LimitOverrunError:
            await _answer(writer, 431, "Request Header Fields Too Large")
            self._count("bad_request")
            return
        target = _connect_target(head)
        if target is None:
            await _answer(writer, 405, "Method Not Allowed", "only CONNECT host:port")
            self._count("bad_request")
            return
        host, port = target
        policy = self.policy
        if policy is None or policy.mode == "None":
            await self._refuse(writer, host, port, "passthrough is off")
            return
        addresses = await _resolve(host, port)
        if not addresses:
            await _answer(writer, 502, "Bad Gateway", f"cannot resolve {host}")
            self._count("unresolved")
            return
        chosen, matches = _admitted(policy, host, port, addresses)
        if chosen is None:
            await self._refuse(writer, host, port, "no appendMatch entry matches")
            return
        try:
            up_reader, up_writer = await wait_for(
                asyncio.open_connection(str(chosen), port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            await _answer(writer, 502, "Bad Gateway", f"{host}:{port}: {exc or 'timed out'}")
            self._count("connect_failed")
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            first = b""
            if matches is not None and not admitted_without_bytes(matches):
                first = await wait_for(reader.read(PEEK_BYTES), self.head_timeout)
                if not admitted_by_bytes(matches, first):
                    self._count("refused_protocol")
                    log.info("passthrough to %s:%d refused: not the matched protocol", host, port)
                    return
            self._count("admitted")
            up_writer.write(first)
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            up_writer.transport.abort()

    async def _refuse(self, writer: asyncio.StreamWriter, host: str, port: int, why: str) -> None:
        self._count("refused")
        log.info("passthrough to %s:%d refused: %s", host, port, why)
        await _answer(writer, 403, "Forbidden", f"MeshPassthrough: {why}")


def _admitted(
    policy: Passthrough, host: str, port: int, addresses: list[IpAddress]
) -> tuple[IpAddress | None, list[PassthroughMatch] | None]:
    """The address to dial and the entries that admitted it (None: `All`, no check)."""
    if policy.mode == "All":
        return addresses[0], None
    for address in addresses:
        found = candidates(policy, host, port, address)
        if found:
            return address, found
    return None, None


def _connect_target(head: bytes) -> tuple[str, int] | None:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
        return None
    host, sep, port = parts[1].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError):
        return []
    out: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str, body: str = "") -> None:
    data = body.encode() + b"\n" if body else b""
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(data)}\r\n"
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + data)
    with contextlib.suppress(OSError, ConnectionError):
        await writer.drain()


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()

    tasks = {
        asyncio.create_task(pump(reader, up_writer)),
        asyncio.create_task(pump(up_reader, writer)),
    }
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if pending and not any(t.exception() for t in done):
            await asyncio.wait(pending)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await t
