"""The control socket: protocol checks, a real Unix socket round trip, clear client errors."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from meshctl.up import control
from meshctl.up.control import ControlError, Reply, Request


def test_request_and_reply_round_trip() -> None:
    req = Request("restart", "zone-1")
    assert control.decode_request(control.encode(req)) == req
    assert control.decode_reply(control.encode(Reply(False, "no"))) == Reply(False, "no")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{", "not a JSON object"),
        (b"[1]", "not a JSON object"),
        (b'{"command": "explode", "component": "global"}', "unknown command 'explode'"),
        (b'{"command": "stop"}', "'component'"),
        (b'{"command": "stop", "component": ""}', "'component'"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        control.decode_request(line)


@pytest.mark.parametrize("line", [b"nope", b'{"message": "x"}', b'{"ok": "yes"}'])
def test_garbled_replies(line: bytes) -> None:
    with pytest.raises(ControlError, match="garbled"):
        control.decode_reply(line)


def test_socket_path_falls_back_to_tmp_when_too_long(tmp_path: Path) -> None:
    assert control.socket_path(Path("/d")) == Path("/d/up.sock")
    deep = Path("/" + "x" * 120)
    path = control.socket_path(deep)
    assert len(str(path)) <= 100
    assert path != control.socket_path(Path("/" + "y" * 120))
    assert path == control.socket_path(deep)


async def test_real_socket_round_trip(tmp_path: Path) -> None:
    seen: list[Request] = []

    async def handler(req: Request) -> Reply:
        seen.append(req)
        return Reply(True, f"{req.component} {req.command}ed")

    path = tmp_path / "up.sock"
    path.write_text("stale")  # a leftover file of a crashed run is replaced
    server = await control.serve(path, handler)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        reply = await asyncio.to_thread(control.send, str(path), Request("stop", "g"), 5.0)
        assert reply == Reply(True, "g stoped")
        assert seen == [Request("stop", "g")]

        def raw(data: bytes) -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.sendall(data)
                return s.recv(4096)

        answer = await asyncio.to_thread(raw, b'{"command": "x"}\n')
        assert control.decode_reply(answer) == Reply(
            False, "bad request: unknown command 'x'; expected one of restart, start, stop"
        )
        assert seen == [Request("stop", "g")]
    finally:
        server.close()
        await server.wait_closed()


def test_client_errors_when_nothing_listens(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="meshctl up is not running"):
        control.send(str(tmp_path / "none.sock"), Request("stop", "g"), 1.0)
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound but not listening: refused
    with pytest.raises(ControlError, match="meshctl up is not running"):
        control.send(str(path), Request("stop", "g"), 1.0)


def test_client_times_out_on_a_silent_server(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        with pytest.raises(ControlError, match=r"did not answer within 0\.2s"):
            control.send(str(path), Request("stop", "g"), 0.2)
