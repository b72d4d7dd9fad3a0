"""Ending a KDS stream that is already closed (issue 16): no abort, no error in the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import pytest

from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.kds.server import end_call
from tests.support import async_wait_until


class _ClosedContext:
    """A servicer context whose call is over; aborting it would fail inside grpc."""

    def __init__(self, done: bool, cancelled: bool) -> None:
        self._done, self._cancelled = done, cancelled
        self.aborts: list[tuple[grpc.StatusCode, str]] = []

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborts.append((code, details))
        raise RuntimeError("GRPC_CALL_ERROR_TOO_MANY_OPERATIONS")


@pytest.mark.parametrize(("done", "cancelled"), [(True, False), (True, True), (False, True)])
async def test_a_closed_call_is_not_aborted(done: bool, cancelled: bool) -> None:
    context: Any = _ClosedContext(done, cancelled)
    await end_call(context, grpc.StatusCode.UNAVAILABLE, "stale")
    assert context.aborts == []


class _CancelledThenEnded(pb_grpc.KDSServicer):
    """A handler that outlives its call's cancellation (as a stop racing the peer's cancel
    does) and then ends the call."""

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.started = False

    async def GlobalToZoneSync(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]
        self.started = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        try:
            await end_call(context, grpc.StatusCode.UNAVAILABLE, "closing the stale stream")
        except BaseException as exc:
            self.outcome = repr(exc)
            raise
        self.outcome = "returned"


async def test_ending_a_call_the_peer_cancelled_neither_raises_nor_logs_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer = _CancelledThenEnded()

    async def started() -> bool:
        return servicer.started

    async def ended() -> bool:
        return servicer.outcome is not None

    server = grpc.aio.server()
    pb_grpc.add_KDSServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = pb_grpc.KDSStub(channel).GlobalToZoneSync(None)
                await async_wait_until(started, what="handler runs")
                call.cancel()
                await async_wait_until(ended, what="handler end")
    finally:
        await server.stop(None)
    assert servicer.outcome == "returned"
    assert "TOO_MANY_OPERATIONS" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
