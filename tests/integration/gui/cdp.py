"""Headless Chromium driven over the Chrome DevTools Protocol (a websocket, aiohttp's client).

The browser is the system's (Debian `chromium`, scripts/install-system-deps.sh), started as a
real process by the test's `procs` (stopped by PID), with a fresh profile. Console errors,
uncaught exceptions and browser log errors (CSP violations, failed loads) are collected so a
test can assert there were none. https://chromedevtools.github.io/devtools-protocol/
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import Procs, async_wait_until

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",  # the browser picks a free port and writes it to its profile
)


def chromium_or_skip() -> str:
    """The browser's path; skipped when absent, except in CI, where it must be installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "chromium is not installed (scripts/install-system-deps.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}")
    pytest.skip(reason)


class Page:
    """One browser tab: commands, page evaluation, and the errors the page reported."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                self._event(data.get("method", ""), data.get("params", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the DevTools connection closed"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {}).get("description", "")
            self.errors.append(f"exception: {details.get('text', '')} {exc}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        await self._ws.send_json({"id": self._next_id, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, what: str, timeout: float = 15) -> Any:
        async def check() -> Any:
            return await self.eval(expression)

        return await async_wait_until(check, timeout=timeout, interval=0.05, what=what)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self._ws.close()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.asynccontextmanager
async def browser(procs: Procs, chromium: str, profile: Path) -> Any:
    """A fresh headless Chromium and one blank tab with Runtime, Log and Page enabled."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    proc = procs.start("chromium", [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"])
    port_file = profile / "DevToolsActivePort"

    async def port() -> int:
        assert proc.alive(), proc.log()[-2000:]
        lines = port_file.read_text().split() if port_file.exists() else []
        return int(lines[0]) if lines else 0

    devtools = await async_wait_until(port, timeout=20, what="chromium's DevTools port")
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{devtools}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
        page = Page(ws)
        try:
            for domain in ("Runtime", "Log", "Page"):
                await page.send(f"{domain}.enable")
            yield page
        finally:
            await page.close()
