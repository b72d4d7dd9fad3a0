"""Composition root of the global control plane: store, registry and API wired together.

`GlobalControlPlane` owns everything long-lived. The KDS server (next issue) plugs in here:
it needs the same store and registry, starts after the store is open and stops before it
closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from aiohttp import web

from global_cp.settings import GlobalSettings
from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.config import Address
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import Mode, Registry
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL
from meshfed.resources.types import default_registry
from meshfed.resources.types.mesh import MESH
from meshfed.store.base import AlreadyExistsError, ResourceStore
from meshfed.store.factory import open_store

log = logging.getLogger("global_cp")
ACCESS_LOG_FORMAT = '%a "%r" %s %bB %Tfs'
DEFAULT_MESH = "default"


async def create_default_mesh(store: ResourceStore, registry: Registry) -> bool:
    """Creates Mesh 'default' only if nothing was ever written to the store (revision 0), so a
    user who deleted it does not get it back on the next start. Returns whether it did."""
    if await store.revision() != 0:
        return False
    mesh = resource_from_dict({"type": MESH.name, "name": DEFAULT_MESH}, registry)
    mesh.meta.labels[LABEL_ORIGIN] = ORIGIN_GLOBAL
    try:
        await store.create(mesh)
    except AlreadyExistsError:  # another replica sharing the store was first
        return False
    return True


class GlobalControlPlane:
    def __init__(self, settings: GlobalSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.mode = Mode.GLOBAL
        self.store: ResourceStore | None = None
        self.api: ApiContext | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        s = self.settings
        self.store = await open_store(s.store, s.data_dir)
        where = f" in {s.data_dir}" if s.store == "sqlite" else ""
        log.info("opened %s store%s at revision %d", s.store, where, await self.store.revision())
        if s.default_mesh and await create_default_mesh(self.store, self.registry):
            log.info("first start: created Mesh %r", DEFAULT_MESH)

        self.api = ApiContext(
            store=self.store,
            registry=self.registry,
            mode=self.mode,
            max_body_bytes=s.max_body_bytes,
        )
        self._runner = web.AppRunner(
            build_app(self.api),
            handle_signals=False,
            access_log=logging.getLogger("global_cp.access"),
            access_log_format=ACCESS_LOG_FORMAT,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.api_address.host, s.api_address.port)
        await site.start()
        self.api.ready = True
        log.info(
            "API listening on http://%s (instance %s)", self.api_address(), self.api.instance_id
        )

    def api_address(self) -> Address:
        """The bound address (differs from the setting when the port was 0)."""
        assert self._runner is not None, "not started"
        for addr in self._runner.addresses:
            return Address(str(addr[0]), int(addr[1]))
        return self.settings.api_address

    async def stop(self) -> None:
        if self.api is not None:
            self.api.ready = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None


async def run(settings: GlobalSettings) -> int:
    """Runs until SIGTERM or SIGINT; 0 after a clean shutdown, 1 if it could not start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cp = GlobalControlPlane(settings)
    try:
        await cp.start()
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        with suppress(Exception):
            await cp.stop()
        return 1
    await stop.wait()
    log.info("shutting down")
    await cp.stop()
    log.info("stopped")
    return 0
