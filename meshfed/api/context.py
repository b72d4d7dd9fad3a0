"""What the API handlers share: the store, the type registry and which side this process is.

Global and zone control planes mount the same handlers; `mode` decides which types this side
may write and which origin label it stamps.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from meshfed.api.body import DEFAULT_MAX_BODY_BYTES
from meshfed.resources.descriptors import Mode, Registry
from meshfed.store.base import ResourceStore


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
    # Set by the composition root once the store is open and default resources exist.
    ready: bool = False

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = f"{self.hostname}-{uuid.uuid4().hex[:8]}"


CONTEXT: web.AppKey[ApiContext] = web.AppKey("meshfed_api_context", ApiContext)
