"""One proxy connected to the config server, as its parts see it.

The stream handler (zone_cp.dpserver) reads and writes its stream, the registration
(zone_cp.dpregistration) stores it, the insight writer (zone_cp.dpinsights) records its
subscription and the pusher (zone_cp.dppusher) sends it configs through its outbox. The
answers a proxy sends change only the session (`acked`, `rejected`, `reported`); what reaches
the store is written by the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.protocol import Hello, ProxyType
from meshfed.policy.targetref import DataplaneView, view_of
from meshfed.resources.model import Resource, now_rfc3339
from zone_cp import dpstate
from zone_cp.dpbuild import Wants

SessionKey = tuple[str, str, str]  # the registered resource's (type, mesh, name)


@dataclass
class Session:
    """One connected proxy."""

    hello: Hello
    resource: Resource  # as registered (without health)
    wants: Wants  # which catalog changes concern it
    subscription: dpstate.Subscription
    history: list[dict[str, Any]]  # earlier subscriptions, from the stored insight
    outbox: asyncio.Queue[pb.CpMessage] = field(default_factory=asyncio.Queue)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = ""
    unavailable: str = ""  # the CONFIG_UNAVAILABLE message last sent ("" once a config went)
    ready: dict[int, bool] = field(default_factory=dict)  # inbound index -> ready
    report: pb.Report | None = None
    insight_dirty: bool = False
    # The insight as this session last wrote it: a periodic flush writes the insight only if
    # it differs (without reading the store back: zone_cp.dpinsights). None: not written yet
    # (a sidecar's first registration leaves it to its first report or the next flush).
    insight_written: Resource | None = field(default=None, repr=False)
    # False: its Dataplane is not stored yet (a sidecar's first registration leaves it to its
    # first report or the next flush, with the health reported: decision 183).
    resource_written: bool = True
    _view: DataplaneView | None = field(default=None, repr=False)

    def view(self, zone: str) -> DataplaneView:
        """`view_of(resource, zone)`, made once: the registered resource never changes while
        the session lives, and every rebuild of its config reads it."""
        if self._view is None:
            self._view = view_of(self.resource, zone)
        return self._view

    @property
    def kind(self) -> ProxyType:
        return self.hello.proxy_type

    @property
    def key(self) -> SessionKey:
        return self.resource.key

    @property
    def name(self) -> str:
        return self.resource.meta.name

    @property
    def mesh(self) -> str:
        return self.resource.meta.mesh

    def describe(self) -> str:
        what = {ProxyType.SIDECAR: "dataplane", ProxyType.EGRESS: "zone egress"}.get(
            self.kind, "zone ingress"
        )
        where = f" (mesh {self.mesh})" if self.mesh else ""
        return f"{what} {self.name}{where}"

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stopped.set()

    def acked(self, version: str) -> None:
        """The proxy applied config `version`."""
        sub = self.subscription
        sub.responses_acked += 1
        sub.config_acked = version
        sub.last_update_time = now_rfc3339()
        self.insight_dirty = True

    def rejected(self, error: str) -> None:
        """The proxy refused a config, saying why (kept short in the insight)."""
        sub = self.subscription
        sub.responses_rejected += 1
        sub.last_nack_error = error[:1000]
        sub.last_update_time = now_rfc3339()
        self.insight_dirty = True

    def reported(self, report: pb.Report) -> dict[int, bool]:
        """Keeps the proxy's report; returns the inbounds' readiness it implies (a sidecar's;
        an ingress has none, so its own stays as it is)."""
        self.report = report
        self.subscription.last_update_time = now_rfc3339()
        self.insight_dirty = True
        if self.kind is not ProxyType.SIDECAR:
            return self.ready
        return {**self.ready, **dpstate.ready_by_port(self.resource, report)}
