"""Serving the API app on a TCP address: the part both control planes' composition roots share."""

from __future__ import annotations

import logging

from aiohttp import web

from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.config import Address

ACCESS_LOG_FORMAT = '%a "%r" %s %bB %Tfs'
# Open `/_watch` streams end on shutdown by themselves; this only bounds a stuck client.
SHUTDOWN_TIMEOUT = 5.0


class ApiServer:
    def __init__(self, ctx: ApiContext, address: Address, access_log: str) -> None:
        self.ctx = ctx
        self._address = address
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    async def start(self) -> Address:
        self._runner = web.AppRunner(
            build_app(self.ctx),
            handle_signals=False,
            access_log=logging.getLogger(self._access_log),
            access_log_format=ACCESS_LOG_FORMAT,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._address.host, self._address.port)
        await site.start()
        return self.address

    @property
    def address(self) -> Address:
        """The bound address (differs from the setting when the port was 0)."""
        assert self._runner is not None, "not started"
        for addr in self._runner.addresses:
            return Address(str(addr[0]), int(addr[1]))
        return self._address

    async def stop(self) -> None:
        self.ctx.ready = False
        self.ctx.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
