"""The control socket of a running `meshctl up`: one JSON line in, one JSON line out.

`meshctl up restart|stop COMPONENT` connects to the Unix socket named in the state file and
sends `{"command": "restart", "component": "global"}`; the supervisor answers
`{"ok": true, "message": "..."}` once the action is done: for `start` and `restart`, once the
component is ready (or has failed), within the `timeout` the client says it waits. A Unix
socket under the data directory keeps it private to the user and needs no port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMANDS = ("restart", "start", "stop")
DEFAULT_WAIT = 30.0
MAX_LINE = 65536
# sun_path holds 108 bytes on Linux; leave room for the terminating NUL and then some.
_MAX_SOCKET_PATH = 100


class ControlError(Exception):
    """The running `up` could not be asked (not running, wrong socket, garbled answer)."""


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    component: str
    timeout: float = DEFAULT_WAIT  # how long the client waits for the reply


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    message: str


Handler = Callable[[Request], Awaitable[Reply]]


def socket_path(data_dir: Path) -> Path:
    """`<data-dir>/up.sock`, or a per-directory name in the temp dir when that path is too
    long for a Unix socket address."""
    path = data_dir / "up.sock"
    if len(str(path).encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"meshctl-up-{digest}.sock"


def encode(value: Request | Reply) -> bytes:
    if isinstance(value, Request):
        data: dict[str, Any] = {
            "command": value.command,
            "component": value.component,
            "timeout": value.timeout,
        }
    else:
        data = {"ok": value.ok, "message": value.message}
    return json.dumps(data).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Raises ValueError with a reason for anything but a known command on a named component."""
    try:
        data = json.loads(line)
    except ValueError:
        raise ValueError("not a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    command, component = data.get("command"), data.get("component")
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    if not isinstance(component, str) or not component:
        raise ValueError("'component' must be a non-empty string")
    timeout = data.get("timeout", DEFAULT_WAIT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError("'timeout' must be a positive number of seconds")
    return Request(command, component, float(timeout))


def decode_reply(line: bytes) -> Reply:
    try:
        data = json.loads(line)
    except ValueError:
        raise ControlError("garbled answer from meshctl up (not JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise ControlError("garbled answer from meshctl up (no 'ok')")
    return Reply(data["ok"], str(data.get("message", "")))


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listens on `path` (a stale socket file from a crashed run is replaced; the caller holds
    the data directory lock, so no live `up` owns it)."""
    _remove_stale(path)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                reply = await handler(decode_request(line))
            except ValueError as exc:
                reply = Reply(False, f"bad request: {exc}")
            writer.write(encode(reply))
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent a line over the limit: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_LINE)
    os.chmod(path, 0o600)
    return server


def _remove_stale(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def send(path: str, request: Request, timeout: float) -> Reply:
    """Blocking client: one request, one reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"meshctl up is not running (nothing listens on {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach meshctl up at {path}: {exc.strerror}") from None
        try:
            sock.sendall(encode(request))
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_LINE:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"meshctl up did not answer within {timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to meshctl up: {exc}") from None
    if not data:
        raise ControlError("meshctl up closed the connection without answering")
    return decode_reply(data)
