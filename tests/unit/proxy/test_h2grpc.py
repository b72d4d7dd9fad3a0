"""The proxies' gRPC client (h2) against a real grpcio server: messages both ways past the
flow-control windows, statuses, limits, keepalive, and peers that fail or are not gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from meshfed.proxy.h2grpc import BidiCall, GrpcMessages, RpcError, frame, split_target
from tests.support import async_wait_until, free_port

PATH = "/test.Echo/Stream"
Handler = Callable[[AsyncIterator[bytes], Any], AsyncIterator[bytes]]


@contextlib.asynccontextmanager
async def grpc_server(
    handler: Handler, options: list[tuple[str, int]] | None = None
) -> AsyncIterator[str]:
    """A real grpcio server with one bidi method taking and giving raw bytes."""
    server, target = await start_grpc_server(handler, options)
    try:
        yield target
    finally:
        await server.stop(grace=None)


async def start_grpc_server(
    handler: Handler, options: list[tuple[str, int]] | None = None
) -> tuple[grpc.aio.Server, str]:
    method = grpc.stream_stream_rpc_method_handler(handler)  # bytes in, bytes out
    server = grpc.aio.server(options=options or [])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", {"Stream": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def echo_then_big(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    """Answers each message with its upper-case form, then a 3 MiB message, then ends OK."""
    async for req in requests:
        if req == b"end":
            break
        yield req.upper()
    yield b"x" * (3 << 20)


async def test_messages_both_ways_and_a_clean_end() -> None:
    async with grpc_server(echo_then_big) as target:
        call = BidiCall(target, PATH, max_message=4 << 20)
        await call.start()
        try:
            big_request = b"a" * (2 << 20)  # past the server's 64 KiB window: waits for updates
            for msg in (b"hello", big_request, b"world"):
                await call.write(msg)
                assert await call.read() == msg.upper()
            await call.write(b"end")
            assert await call.read() == b"x" * (3 << 20)
            assert await call.read() is None
            assert await call.read() is None  # stays ended
            with pytest.raises(RpcError, match="CANCELLED"):
                await call.write(b"late")
        finally:
            await call.close()


async def test_a_failed_call_carries_the_status_and_message() -> None:
    async def refuse(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad hello: 100% wrong\nline")
        yield b""  # pragma: no cover - makes this an async generator

    async with grpc_server(refuse) as target:
        call = BidiCall(target, PATH, max_message=1024)
        await call.start()
        try:
            await call.write(b"hi")
            with pytest.raises(RpcError) as err:
                await call.read()
            assert err.value.code == "INVALID_ARGUMENT"
            assert err.value.details == "bad hello: 100% wrong\nline"
        finally:
            await call.close()


async def test_an_unknown_method_is_unimplemented() -> None:
    async with grpc_server(echo_then_big) as target:
        call = BidiCall(target, "/test.Echo/Nope", max_message=1024)
        await call.start()
        try:
            with pytest.raises(RpcError, match="UNIMPLEMENTED"):
                await call.read()
        finally:
            await call.close()


async def test_a_message_over_the_limit_is_refused() -> None:
    async with grpc_server(echo_then_big) as target:
        call = BidiCall(target, PATH, max_message=1 << 20)
        await call.start()
        try:
            await call.write(b"end")
            with pytest.raises(RpcError, match="RESOURCE_EXHAUSTED"):
                await call.read()
        finally:
            await call.close()


async def test_nobody_listening_is_unavailable() -> None:
    call = BidiCall(f"127.0.0.1:{free_port()}", PATH, max_message=1024)
    with pytest.raises(RpcError, match="UNAVAILABLE: cannot connect"):
        await call.start()
    await call.close()


@contextlib.asynccontextmanager
async def raw_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()


async def test_a_silent_peer_is_noticed_by_keepalive() -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    async with raw_server(accept_and_say_nothing) as target:
        call = BidiCall(target, PATH, max_message=1024, keepalive=0.2, keepalive_timeout=0.3)
        await call.start()
        try:
            with pytest.raises(RpcError, match=r"UNAVAILABLE: .*keepalive ping"):
                await asyncio.wait_for(call.read(), 10)
        finally:
            await call.close()
            for w in held:
                w.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        b"\x00" * 64,
        bytes(range(256)) * 4,
        b"",  # closes at once
    ],
)
async def test_a_peer_that_is_not_grpc_gives_an_rpc_error(reply: bytes) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(reply)
        await w.drain()
        w.close()

    async with raw_server(answer) as target:
        call = BidiCall(target, PATH, max_message=1024)
        await call.start()
        try:
            with pytest.raises(RpcError):
                await call.read()
            with pytest.raises(RpcError):
                await call.write(b"x")
        finally:
            await call.close()


async def test_pings_are_answered_by_grpcio_and_the_call_goes_on() -> None:
    async def echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for req in requests:
            yield req

    options = [
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 50),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    async with grpc_server(echo, options) as target:
        call = BidiCall(target, PATH, max_message=1024, keepalive=0.1, keepalive_timeout=2)
        await call.start()
        try:
            await call.write(b"one")
            assert await call.read() == b"one"

            async def three_pings() -> bool:
                return call.pings_acked >= 3

            await async_wait_until(three_pings, timeout=10, what="3 keepalive pings answered")
            await call.write(b"two")
            assert await call.read() == b"two"
        finally:
            await call.close()


async def test_the_server_going_away_mid_call_is_unavailable() -> None:
    started = asyncio.Event()

    async def hold(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        started.set()
        async for req in requests:
            yield req

    server, target = await start_grpc_server(hold)
    call = BidiCall(target, PATH, max_message=1024)
    try:
        await call.start()
        await call.write(b"a")
        assert await call.read() == b"a"
        await server.stop(grace=None)
        with pytest.raises(RpcError) as err:
            await call.read()
        assert err.value.code in ("UNAVAILABLE", "CANCELLED"), err.value
    finally:
        await call.close()
        await server.stop(grace=None)


# --- pure parts ---------------------------------------------------------------------------


def test_messages_split_anywhere_are_reassembled() -> None:
    stream = b"".join(frame(m) for m in (b"", b"a", b"bc" * 1000))
    for cut in range(0, len(stream), 7):
        reader = GrpcMessages(1 << 20)
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == [b"", b"a", b"bc" * 1000]
        assert reader.pending == 0


def test_compressed_or_oversized_messages_are_refused() -> None:
    with pytest.raises(RpcError, match="INTERNAL: compressed"):
        GrpcMessages(100).feed(b"\x01\x00\x00\x00\x01a")
    with pytest.raises(RpcError, match="RESOURCE_EXHAUSTED"):
        GrpcMessages(100).feed(b"\x00\x00\x00\x01\x00")


@pytest.mark.parametrize("target", ["nohost", "host:", ":80", "h:99999", "h:x"])
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(RpcError, match="INVALID_ARGUMENT"):
        split_target(target)


def test_targets_split() -> None:
    assert split_target("127.0.0.1:7678") == ("127.0.0.1", 7678)
    assert split_target("[::1]:5678") == ("::1", 5678)
