"""What the API handlers share: the store, the type registry and which side this process is.

Global and zone control planes mount the same handlers; `mode` decides which types this side
may write and which origin label it stamps. The composition roots plug their KDS state in
through the optional hooks and views below (the API itself knows nothing about KDS).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.registry import Collector

from meshfed.api.body import DEFAULT_MAX_BODY_BYTES
from meshfed.resources.descriptors import Mode, Registry, TypeDescriptor
from meshfed.resources.model import Resource
from meshfed.store.base import ResourceStore

# Runs before a delete through the API; raises DeleteRefusedError to refuse it (409: e.g. a
# connected zone).
BeforeDelete = Callable[[TypeDescriptor, str, str], Awaitable[None]]
# Runs after a delete through the API, with the deleted resource (e.g. to remove dependents).
AfterDelete = Callable[[TypeDescriptor, Resource], Awaitable[None]]


class FederationView(Protocol):
    """The global's KDS state as the API serves it (`/zones+insights`, `_overview`, `_sync`)."""

    async def zone_overview(self, zone: Resource) -> dict[str, Any]:
        """The ZoneOverview of a stored Zone."""

    async def sync_status(self, desc: TypeDescriptor, res: Resource) -> dict[str, Any]:
        """Which zone holds which version of a resource the global sends."""


@dataclass
class ApiContext:
    store: ResourceStore
    registry: Registry
    mode: Mode
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    hostname: str = field(default_factory=socket.gethostname)
    instance_id: str = ""
    # The zone this process serves (zone mode only): stamped as kuma.io/zone on local writes.
    zone: str | None = None
    # Zone mode: connected to a global (a policy applied here must say `kuma.io/origin: zone`).
    federated: bool = False
    # Set by the composition root once the store is open and default resources exist.
    ready: bool = False
    before_delete: BeforeDelete | None = None
    after_delete: AfterDelete | None = None
    federation: FederationView | None = None  # global side: zone insights and `_sync`
    kds_status: Callable[[], dict[str, Any]] | None = None  # zone side: `GET /_kds`
    # Replicated control planes: who leads the singleton jobs (`GET /_leader`).
    leader_status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # Set when the server shuts down, so long-lived responses (`/_watch`) end promptly.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # `GET /meshes/{mesh}/services` (meshfed.api.services): the zone's catalog, or on the
    # global each zone's instances and VIPs.
    services: Callable[[str], Awaitable[dict[str, Any]]] | None = None
    # More Prometheus collectors for `/metrics` (zone DNS and VIPs), and more fields for
    # `GET /` (a zone's DNS address).
    collectors: list[Collector] = field(default_factory=list)
    # CA certificates held outside the store, (ca, name, PEM), whose expiry `/metrics` shows
    # (a zone's pinned KDS CA file).
    pinned_cas: list[tuple[str, str, bytes]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # Kuma's behaviour, on request only: a caller on a loopback address is an admin.
    localhost_is_admin: bool = False

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = f"{self.hostname}-{uuid.uuid4().hex[:8]}"


CONTEXT: web.AppKey[ApiContext] = web.AppKey("meshfed_api_context", ApiContext)
