"""Serving the API app on a TCP address: the part both control planes' composition roots share."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from aiohttp import web

from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.config import Address

ACCESS_LOG_FORMAT = '%a "%r" %s %bB %Tfs'
# Open `/_watch` streams end on shutdown by themselves; this only bounds a stuck client.
SHUTDOWN_TIMEOUT = 5.0


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The HTTPS context of `--api-tls-cert/--api-tls-key` (TLS 1.2 or later), None for plain
    HTTP. A file that cannot be read or a key that does not match raises ValueError."""
    if cert is None or key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot use the API TLS certificate {cert} and key {key}: {exc}"
        ) from None
    return ctx


class ApiServer:
    def __init__(
        self,
        ctx: ApiContext,
        address: Address,
        access_log: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.ctx = ctx
        self._address = address
        self._access_log = access_log
        self._tls = tls
        self._runner: web.AppRunner | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    async def start(self) -> Address:
        self._runner = web.AppRunner(
            build_app(self.ctx),
            handle_signals=False,
            access_log=logging.getLogger(self._access_log),
            access_log_format=ACCESS_LOG_FORMAT,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._address.host, self._address.port, ssl_context=self._tls
        )
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
