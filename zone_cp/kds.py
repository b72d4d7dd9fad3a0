"""The zone's side of the federation: a KDS client over the zone's store.

Down (global -> zone): what arrives is stored as sent (`kuma.io/origin: global`); the
Receiver starts from the versions already in the store, so a restarted zone resumes instead
of downloading everything again. Up (zone -> global): one view of the process's store cache
feeds the zone's own Dataplanes, ZoneIngresses and insights to the stream, never the copies
the global sent. While the global is unreachable the client retries with jittered exponential
backoff and the zone keeps everything it has. Every session is TLS (unless --kds-insecure)
and presents the zone token, read from its file at each session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshfed.backoff import Backoff
from meshfed.config import Address
from meshfed.kds.auth import read_token_file
from meshfed.kds.client import CONNECTED, KdsClient
from meshfed.kds.metrics import KdsMetrics
from meshfed.kds.naming import types_global_to_zone, types_zone_to_global
from meshfed.kds.options import grpc_url
from meshfed.kds.receive import zone_receive_side
from meshfed.kds.tls import ClientTls
from meshfed.kds.views import ZoneView, zone_mirror
from meshfed.resources.descriptors import Registry
from meshfed.store.base import ResourceStore
from meshfed.store.cache import StoreCache

log = logging.getLogger("zone_cp.kds")

# The zone's inventory goes up in responses gathered over this long: under registration churn
# each Dataplane and insight write otherwise cost a gRPC write of its own to the global, 11 %
# of the zone's CPU (py-spy, issue 19, decision 172); 20 ms is what a config push waits too.
UP_GATHER = 0.02


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ZoneKds:
    def __init__(
        self,
        store: ResourceStore,
        registry: Registry,
        zone: str,
        target: Address | Sequence[Address],
        *,
        max_message_bytes: int,
        reconnect_max: float,
        stale_timeout: float,
        tls: ClientTls | None,
        token_file: Path | None,
        cache: StoreCache | None = None,
        metrics: KdsMetrics | None = None,
    ) -> None:
        """`tls` None: plaintext (--kds-insecure); `token_file`: the zone token; `cache`: the
        process's store cache (None: a cache of its own); `metrics`: the process's KDS
        counters (they outlive this client: a replica makes one per leader term)."""
        self._store = store
        self._registry = registry
        self.zone = zone
        # Several: the global's replicas, tried in turn after a failure (KdsClient).
        self.targets = [target] if isinstance(target, Address) else list(target)
        self._max = max_message_bytes
        self._reconnect_max = reconnect_max
        self._stale_timeout = stale_timeout
        self.tls = tls
        self._token_file = token_file
        self.down_types = types_global_to_zone(registry)
        self.up_types = types_zone_to_global(registry)
        self.mirror = zone_mirror(store, self.up_types, zone, cache)
        self.metrics = metrics
        self.client: KdsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Loads what the zone holds and starts connecting; returns without waiting for it."""
        down = await zone_receive_side(self._store, self._registry, self.down_types)
        await self.mirror.start()
        held = sum(len(down.receiver.held(t)) for t in self.down_types)
        log.info("holding %d resource(s) from the global; resuming from them", held)
        self.client = KdsClient(
            [str(t) for t in self.targets],
            self.zone,
            up_types=self.up_types,
            source=ZoneView(self.mirror, self._registry, self.up_types),
            down=down,
            max_message_size=self._max,
            stale_timeout=self._stale_timeout,
            backoff=Backoff(initial=0.1, maximum=self._reconnect_max),
            tls=self.tls,
            token=self._token,
            metrics=self.metrics,
            gather=UP_GATHER,
        )
        self._tasks = [
            asyncio.create_task(self.client.run(), name="kds-client"),
            asyncio.create_task(self._log_states(self.client), name="kds-state-log"),
        ]

    def _token(self) -> str:
        """The token for the next session; "" when the file cannot be read now (the global
        then refuses with a reason, and the zone retries with backoff)."""
        if self._token_file is None:
            return ""
        try:
            return read_token_file(self._token_file)
        except ValueError as exc:
            log.error("zone %s: %s", self.zone, exc)
            return ""

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.mirror.stop()

    def status(self) -> dict[str, Any]:
        """`GET /_kds`: the connection and what went each way (per type)."""
        client = self.client
        state = client.state if client is not None else "disconnected"
        received: dict[str, Any] = {}
        sent: dict[str, Any] = {}
        if client is not None:
            receiver = client.down.receiver
            for t in self.down_types:
                received[t] = receiver.insight(t).to_json() | {"held": len(receiver.held(t))}
            if client.sender is not None:
                sent = {t: client.sender.insight(t).to_json() for t in self.up_types}
        current = client.target if client is not None else str(self.targets[0])
        tls = self.tls is not None
        return {
            "global": grpc_url(current, tls),
            "globals": [grpc_url(t, tls) for t in self.targets],
            "tls": tls,
            "zone": self.zone,
            "state": state,
            "connectedSince": (
                _rfc3339(client.connected_time) if client and state == CONNECTED else None
            ),
            "lastError": (client.last_error or None) if client is not None else None,
            "sessions": client.sessions if client is not None else 0,
            "received": received,
            "sent": sent,
        }

    async def _log_states(self, client: KdsClient) -> None:
        """One log line per connection state change (the client itself logs failures)."""
        while True:
            changed = client.state_changed
            await changed.wait()
            fields = {"event": client.state, "zone": self.zone}
            if client.state == CONNECTED:
                url = grpc_url(client.target, self.tls is not None)
                log.info("connected to the global at %s", url, extra={**fields, "global": url})
            else:
                log.info("KDS %s", client.state, extra=fields)
