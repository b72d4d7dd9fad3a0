"""meshfed/proxy/h2grpc.py (the asyncio driver of h2state) against odd and misbehaving peers:
each failure is an RpcError, never a hang, a dead receive task or a corrupted stream; a server
going away gracefully lets the call finish; a peer that floods PINGs and reads nothing is
dropped once our unsent bytes pass the bound.

The peers are real: a grpcio server, or a scripted HTTP/2 server on the `h2` library (for the
misbehaving peers grpcio cannot play). Each test has a deadline, so a hang shows as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame, PingFrame

from meshfed.proxy.h2grpc import WINDOW, BidiCall, GrpcMessages, RpcError, frame
from tests.support import async_wait_until
from tests.unit.proxy.test_h2grpc import grpc_server, raw_server

PATH = "/test.Echo/Stream"
GRPC_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class Peer:
    """The server side of one HTTP/2 connection, driven by a test's script."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ack_data: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config)
        self.stream_id = 0
        self.requested = asyncio.Event()
        self.window_opened = asyncio.Event()
        self.data = bytearray()  # every DATA byte the client sent
        self.ack_data = ack_data  # False: no WINDOW_UPDATE for what the client sends

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def run(self) -> None:
        """Handles the client's frames until it goes away."""
        self.conn.initiate_connection()
        self.flush()
        while data := await self.reader.read(65536):
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.stream_id = event.stream_id
                    self.requested.set()
                elif isinstance(event, h2.events.DataReceived):
                    self.data += event.data or b""
                    if self.ack_data and event.flow_controlled_length:
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                elif isinstance(event, h2.events.WindowUpdated):
                    self.window_opened.set()
            self.flush()


Script = Callable[[Peer], Awaitable[None]]


@contextlib.asynccontextmanager
async def h2_server(script: Script, ack_data: bool = True) -> AsyncIterator[str]:
    tasks: list[asyncio.Task[Any]] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, ack_data)
        tasks.append(asyncio.create_task(peer.run()))
        await peer.requested.wait()
        await script(peer)

    async with raw_server(on_connect) as target:
        try:
            yield target
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for req in requests:
        yield req


# --- odd response headers fail the call, not the receive task -----------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [*GRPC_HEADERS, (b"x-note", b"\xff\xfe")],
        [(b":status", "²".encode()), (b"content-type", b"application/grpc")],
    ],
    ids=["non-utf8-header", "unicode-digit-status"],
)
async def test_odd_response_headers_fail_the_call(headers: list[tuple[bytes, bytes]]) -> None:
    async def answer(peer: Peer) -> None:
        peer.conn.send_headers(peer.stream_id, headers)
        peer.flush()

    async with h2_server(answer) as target:
        call = BidiCall(target, PATH, max_message=1024, keepalive=60)
        await call.start()
        try:
            with pytest.raises(RpcError):
                await asyncio.wait_for(call.read(), 5)
        finally:
            await call.close()


# --- a closed call looks closed ------------------------------------------------------------


async def test_a_read_waiting_when_the_call_is_closed_returns() -> None:
    async with grpc_server(echo) as target:
        call = BidiCall(target, PATH, max_message=1024)
        await call.start()
        reading = asyncio.create_task(call.read())
        await asyncio.sleep(0)  # let read() start waiting; nothing is expected to arrive
        await call.close()
        with pytest.raises(RpcError):
            await asyncio.wait_for(reading, 5)


async def test_a_write_after_close_is_an_rpc_error() -> None:
    async with grpc_server(echo) as target:
        call = BidiCall(target, PATH, max_message=1024)
        await call.start()
        await call.close()
        with pytest.raises(RpcError):
            await call.write(b"late")


# --- received data is acknowledged only as the application reads it ----------------------


async def test_an_unread_call_holds_no_more_than_its_window() -> None:
    total = 8 * WINDOW
    sent = 0
    finished = asyncio.Event()

    async def flood(peer: Peer) -> None:
        nonlocal sent
        message = frame(b"z" * 1000)
        peer.conn.send_headers(peer.stream_id, GRPC_HEADERS)
        peer.flush()
        try:
            while sent < total:
                if peer.conn.local_flow_control_window(peer.stream_id) < len(message):
                    peer.window_opened.clear()
                    try:  # a client honouring flow control stalls us here for good
                        await asyncio.wait_for(peer.window_opened.wait(), 2)
                    except TimeoutError:
                        return
                    continue
                peer.conn.send_data(peer.stream_id, message)
                peer.flush()
                sent += len(message)
                await peer.writer.drain()
        finally:
            finished.set()

    async with h2_server(flood) as target:
        call = BidiCall(target, PATH, max_message=4096, keepalive=60)
        await call.start()
        try:
            await asyncio.wait_for(finished.wait(), 60)  # the application never calls read()
            assert sent <= 2 * WINDOW, f"the peer pushed {sent} bytes into an unread call"
        finally:
            await call.close()


# --- a write cancelled mid-message leaves the stream intact --------------------------------


async def test_a_write_cancelled_mid_message_does_not_corrupt_the_stream() -> None:
    peers: list[Peer] = []

    async def hold(peer: Peer) -> None:
        peer.conn.send_headers(peer.stream_id, GRPC_HEADERS)
        peer.flush()
        peers.append(peer)

    # No WINDOW_UPDATE at first: the client gets only the default 65535-byte window.
    async with h2_server(hold, ack_data=False) as target:
        call = BidiCall(target, PATH, max_message=1 << 20, keepalive=60)
        await call.start()
        try:
            writing = asyncio.create_task(call.write(b"a" * 100_000))

            async def window_used() -> bool:
                return bool(peers) and len(peers[0].data) >= 65535

            await async_wait_until(window_used, timeout=10, what="the first 64 KiB sent")
            assert not writing.done(), "the write should be waiting for window"
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
            peer = peers[0]
            torn = len(peer.data)
            peer.ack_data = True
            peer.conn.acknowledge_received_data(len(peer.data), peer.stream_id)
            peer.flush()
            try:
                await call.write(b"ok")
            except RpcError:
                return  # failing the call after a torn write is a correct answer too

            async def ok_sent() -> bool:
                return len(peer.data) >= torn + len(frame(b"ok"))

            await async_wait_until(ok_sent, timeout=10, what="the second message sent")
            messages = GrpcMessages(1 << 20).feed(bytes(peer.data))
            assert messages[-1:] == [b"ok"], "the server cannot find the second message"
        finally:
            await call.close()


# --- an unencodable target or a reset stream is an RpcError with a gRPC status ------------


async def test_an_unencodable_host_is_an_rpc_error() -> None:
    call = BidiCall("a" * 64 + ".example:5678", PATH, max_message=1024)
    try:
        with pytest.raises(RpcError, match=r"UNAVAILABLE|INVALID_ARGUMENT"):
            await call.start()
    finally:
        await call.close()


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (h2.errors.ErrorCodes.REFUSED_STREAM, "UNAVAILABLE"),
        (h2.errors.ErrorCodes.CANCEL, "CANCELLED"),
    ],
)
async def test_a_reset_stream_maps_to_grpc_status(code: int, status: str) -> None:
    async def reset(peer: Peer) -> None:
        peer.conn.reset_stream(peer.stream_id, code)
        peer.flush()

    async with h2_server(reset) as target:
        call = BidiCall(target, PATH, max_message=1024)
        await call.start()
        try:
            with pytest.raises(RpcError) as err:
                await call.read()
            assert err.value.code == status
        finally:
            await call.close()


# --- a graceful GOAWAY lets the open call finish (issue 16) ---------------------------------


def goaway(last_stream_id: int, error_code: int = 0) -> bytes:
    return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code).serialize()


async def test_a_graceful_goaway_lets_the_call_finish() -> None:
    async def drain_then_finish(peer: Peer) -> None:
        peer.conn.send_headers(peer.stream_id, GRPC_HEADERS)
        peer.conn.send_data(peer.stream_id, frame(b"before"))
        peer.flush()
        # One write: the GOAWAY and the frames after it arrive in the same read.
        peer.writer.write(goaway(peer.stream_id))
        peer.conn.send_data(peer.stream_id, frame(b"after"))
        peer.conn.send_headers(peer.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        peer.flush()

    async with h2_server(drain_then_finish) as target:
        call = BidiCall(target, PATH, max_message=1024, keepalive=60)
        await call.start()
        try:
            assert await asyncio.wait_for(call.read(), 5) == b"before"
            assert await asyncio.wait_for(call.read(), 5) == b"after"
            assert await asyncio.wait_for(call.read(), 5) is None
            assert call.draining
        finally:
            await call.close()


@pytest.mark.parametrize(
    ("last", "code"), [(0, 0), (1, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)], ids=["before", "error"]
)
async def test_a_goaway_that_drops_the_call_is_unavailable(last: int, code: int) -> None:
    async def go(peer: Peer) -> None:
        peer.conn.send_headers(peer.stream_id, GRPC_HEADERS)
        peer.flush()
        peer.writer.write(goaway(last, code))

    async with h2_server(go) as target:
        call = BidiCall(target, PATH, max_message=1024, keepalive=60)
        await call.start()
        try:
            with pytest.raises(RpcError, match=r"UNAVAILABLE: .*GOAWAY"):
                await asyncio.wait_for(call.read(), 5)
        finally:
            await call.close()


# --- a peer flooding PINGs while reading nothing is dropped (issue 16) --------------------


async def test_a_ping_flood_from_a_peer_that_does_not_read_is_bounded() -> None:
    outcome: list[BaseException] = []
    pings = b"".join(
        PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(4096)
    )

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A server preface, then PINGs until the client drops us; never a byte read.
        writer.write(h2_server_preface())
        try:
            while True:
                writer.write(pings)
                await writer.drain()
        except OSError as exc:
            outcome.append(exc)

    # A small receive buffer (inherited by the accepted socket): the kernel holds little of
    # what the client writes, so the client's own bound is what is tested.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(flood, sock=listener)
    port = listener.getsockname()[1]
    # A bound lower than the default (tests/unit/proxy/test_h2state.py checks that one): h2
    # answers some 40,000 PINGs a second, and the test need not take a minute.
    call = BidiCall(f"127.0.0.1:{port}", PATH, max_message=1024, keepalive=60, max_unsent=1 << 16)
    try:
        await call.start()
        with pytest.raises(RpcError, match=r"UNAVAILABLE: .*does not read"):
            await asyncio.wait_for(call.read(), 60)
        assert call._writer is not None
        assert call._writer.transport.get_write_buffer_size() <= 2 << 20
        await async_wait_until(_true_if(outcome), timeout=10, what="the flooding peer dropped")
    finally:
        await call.close()
        server.close()


def h2_server_preface() -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    return conn.data_to_send()


def _true_if(items: list[BaseException]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(items)

    return check
