"""The zone's MADS endpoint (decision 162): `POST /v3/discovery:monitoringassignments` on
`--mads-address`, answering Prometheus's `kuma_sd_configs` as Kuma's control plane does
(https://prometheus.io/docs/prometheus/latest/configuration/configuration/#kuma_sd_config).

The assignments (zone_cp/mads.py) are rebuilt from the store cache whenever a Dataplane or a
MeshMetric changes. A request whose `version_info` is the client's current version is held
until its assignments change or `fetch-timeout` passes (then 304 Not Modified), the long poll
Prometheus asks for; any other gets the current assignments at once (200).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import Final

from aiohttp import web

from meshfed.aio import wait_for
from meshfed.config import Address
from meshfed.resources.model import Resource
from meshfed.store.cache import CacheView
from zone_cp.mads import (
    PATH,
    TYPES,
    RequestError,
    Snapshot,
    assignments,
    parse_fetch_timeout,
    parse_request,
    pick,
    response,
    snapshots,
)

log = logging.getLogger("zone_cp.mads")
MAX_BODY: Final = 64 * 1024  # a DiscoveryRequest is a few hundred bytes
SHUTDOWN_TIMEOUT: Final = 1.0  # held polls are woken at stop: nothing waits this long


class MadsServer:
    def __init__(self, view: CacheView[Resource], zone: str) -> None:
        self._view = view
        self._zone = zone
        self.known: dict[str, Snapshot] = snapshots({})
        self._changed = asyncio.Event()  # set and replaced at every change
        self._stopping = False
        self._pending = False  # a refresh is scheduled (a burst of changes costs one)
        self._runner: web.AppRunner | None = None

    def _schedule(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.refresh)

    def refresh(self) -> None:
        """Rebuild every client's assignments; wake the held polls if any changed."""
        self._pending = False
        try:
            new = snapshots(
                assignments(
                    (r for r, _ in self._view.entries("Dataplane")),
                    [r for r, _ in self._view.entries("MeshMetric")],
                    self._zone,
                )
            )
        except Exception:  # a resource no validator foresaw: keep serving the last good lists
            log.exception("MADS: could not rebuild the monitoring assignments")
            return
        if {c: s.version for c, s in new.items()} != {c: s.version for c, s in self.known.items()}:
            self.known = new
            self._changed.set()
            self._changed = asyncio.Event()

    async def start(self, address: Address) -> str:
        self.refresh()
        self._view.listen(lambda *_: self._schedule())
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address.host, address.port, reuse_address=True)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return str(Address(host, port))

    async def stop(self) -> None:
        self._stopping = True
        self._changed.set()
        await self._view.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
            wanted = parse_request(body)
            timeout = parse_fetch_timeout(request.query.get("fetch-timeout"))
        except RequestError as exc:
            return _error(400, str(exc))
        current = pick(self.known, wanted.client)
        deadline = asyncio.get_running_loop().time() + timeout
        # Held until this client's own list changes (another client's change wakes it too:
        # it goes back to waiting), the timeout passes or the zone stops.
        while current.version == wanted.version and not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            changed = self._changed
            with suppress(TimeoutError):
                await wait_for(changed.wait(), left)
            current = pick(self.known, wanted.client)
        if current.version == wanted.version:
            return web.Response(status=304)
        text = json.dumps(response(current), separators=(",", ":"))
        return web.Response(text=text, content_type="application/json")


def _error(status: int, detail: str) -> web.Response:
    """Kuma's REST error shape."""
    body = {"title": "Could not parse request", "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


__all__ = ["TYPES", "MadsServer"]
