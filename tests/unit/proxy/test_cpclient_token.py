"""The proxies' token: read from a file at every connection and sent as the call's
`authorization: Bearer` metadata (to a real grpcio server); never parsed by the proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.backoff import Backoff
from meshfed.dpconfig.model import IngressConfig
from meshfed.dpconfig.protocol import error_message, parse_ingress_config
from meshfed.proxy.cpclient import ConfigClient, read_token_file
from meshfed.proxy.h2grpc import BidiCall, RpcError
from tests.support import async_wait_until
from tests.unit.proxy.test_cpclient import HELLO, ApplyError, Proxy, ScriptedCp, running


class RecordingCp(ScriptedCp):
    """Also records each session's metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.metadata: list[dict[str, str]] = []

    async def Stream(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.DpMessage], context: Any
    ) -> AsyncIterator[pb.CpMessage]:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        self.changed.set()
        async for msg in super().Stream(request_iterator, context):
            yield msg


@pytest.fixture
async def cp() -> AsyncIterator[tuple[RecordingCp, str]]:
    server = grpc.aio.server()
    recording = RecordingCp()
    pb_grpc.add_DataplaneConfigServicer_to_server(recording, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield recording, f"127.0.0.1:{port}"
    await server.stop(grace=None)


def client(target: str, token_file: Path | None) -> ConfigClient[IngressConfig]:
    proxy = Proxy()
    return ConfigClient(
        target,
        hello=lambda: HELLO,
        parse=parse_ingress_config,
        apply=proxy.apply,
        apply_errors=(ApplyError,),
        report=proxy.report,
        running_version=proxy.version,
        backoff=Backoff(initial=0.01, maximum=0.05),
        token_file=token_file,
    )


async def test_the_token_is_sent_and_reread_at_every_connection(
    cp: tuple[RecordingCp, str], tmp_path: Path
) -> None:
    server, target = cp
    token_file = tmp_path / "token"
    token_file.write_text("first.token.value\n")
    c = client(target, token_file)
    async with running(c):
        await server.wait(lambda: len(server.metadata) == 1)
        assert server.metadata[0]["authorization"] == "Bearer first.token.value"
        token_file.write_text("rotated.token.value")
        # A refusal for the token: retried (slowly), with the file read again.
        server.outbox.put_nowait(
            error_message(pb.Error.UNAUTHENTICATED, "token expired", fatal=True)
        )
        await server.wait(lambda: len(server.metadata) == 2)
        assert server.metadata[1]["authorization"] == "Bearer rotated.token.value"


async def test_without_a_token_file_no_authorization_is_sent(cp: tuple[RecordingCp, str]) -> None:
    server, target = cp
    async with running(client(target, None)):
        await server.wait(lambda: len(server.metadata) == 1)
    assert "authorization" not in server.metadata[0]


async def test_an_unreadable_token_file_is_retried_without_connecting(
    cp: tuple[RecordingCp, str], tmp_path: Path
) -> None:
    server, target = cp
    token_file = tmp_path / "missing"
    c = client(target, token_file)
    async with running(c):

        async def tried() -> bool:
            return c.sessions >= 3

        await async_wait_until(tried, what="three attempts")
        assert server.metadata == []  # never connected without its token
        assert "cannot read the token file" in c.last_error
        assert c.state == "disconnected"
        token_file.write_text("late.token")  # e.g. written by `meshctl up` after the start
        await server.wait(lambda: len(server.metadata) == 1)
    assert server.metadata[0]["authorization"] == "Bearer late.token"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "holds no token"),
        (b"  \n", "holds no token"),
        (b"a b", "holds no token"),
        (b"tok\xffen", "holds no token"),
        (b"x" * 5000, "over 4096 bytes"),
    ],
)
def test_bad_token_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(RpcError, match=reason) as info:
        read_token_file(path)
    assert info.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "metadata",
    [
        [("Authorization", "Bearer x")],
        [("authorization", "Bearer x\r\nx-injected: 1")],
        [(":path", "/other")],
    ],
)
def test_bidi_call_refuses_unsafe_metadata(metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="invalid gRPC metadata"):
        BidiCall("127.0.0.1:1", "/x", max_message=10, metadata=metadata)


async def test_a_proxy_that_is_cancelled_while_waiting_for_a_token_stops(tmp_path: Path) -> None:
    c = client("127.0.0.1:1", tmp_path / "missing")
    task = asyncio.create_task(c.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
