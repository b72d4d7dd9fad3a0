"""What the config server writes to the zone store about its proxies (pure).

- The Dataplane a sidecar announces is stored as it sent it, labelled with the zone (Kuma's
  `kuma.io/origin: zone`, `kuma.io/zone`), and with `health.ready` on every inbound: true
  while the proxy is connected and reports that its application answers, false otherwise
  (not connected yet, disconnected, or the application is down). The zone's catalog, DNS
  and ingress `availableServices` leave out inbounds that are not ready, so a disconnected
  sidecar's instances disappear everywhere, and come back when it reconnects and reports.
  Kuma also keeps inbound health in the Dataplane; keeping it there (rather than in memory)
  means every replica of a zone and the global see the same thing.
- When a known proxy reconnects with the same Dataplane, the stored health is kept until
  its first report, so a restart of zone-cp does not make every service flap.
- A ZoneIngress is stored with its `zone` set; its `availableServices` are zone_cp.services'
  to compute, so registration keeps whatever the store holds. Whether its proxy is connected
  is read from its ZoneIngressInsight (`proxy_disconnected`): an ingress whose proxy's last
  subscription is closed advertises nothing, so other zones stop sending to it.
- DataplaneInsight / ZoneIngressInsight hold the connection history (Kuma's
  `subscriptions`: id, control plane instance, connect and disconnect time, config
  responses sent, ACKed and NACKed), the certificate (`mTLS`) and the last report.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from meshfed._gen import dataplane_pb2 as pb
from meshfed.resources.model import (
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Meta,
    Resource,
)
from meshfed.resources.models.proxies import DataplaneSpec, Inbound
from meshfed.resources.typed import spec_as
from meshfed.resources.types.common import as_list
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.resources.types.zone_egress import ZONE_EGRESS_INSIGHT

SUBSCRIPTIONS_KEPT: Final = 5


class Refused(Exception):
    """The proxy cannot be registered; the message tells its operator why."""


def no_mesh(mesh: str, zone: str) -> str:
    """Why a sidecar of a mesh the zone does not have is refused."""
    return (
        f"mesh {mesh!r} does not exist in zone {zone!r} "
        "(meshes are created at the global control plane)"
    )


def _labels(resource: Resource, zone: str) -> dict[str, str]:
    labels = {k: v for k, v in resource.meta.labels.items() if not k.startswith("kuma.io/")}
    labels[LABEL_ORIGIN] = ORIGIN_ZONE
    labels[LABEL_ZONE] = zone
    return labels


def _edit_inbounds(
    spec: Mapping[str, Any], edit: Callable[[int, dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """`spec` with `edit(index, inbound)` in place of each inbound object. Only the path to
    the inbounds is copied: the rest is shared with `spec`, which is never edited in place (a
    deep copy per registration was ~2 % of the zone's CPU under churn, issue 19)."""
    out = dict(spec)
    networking = out.get("networking")
    raw = networking.get("inbound") if isinstance(networking, dict) else None
    if isinstance(networking, dict) and isinstance(raw, list):
        out["networking"] = {
            **networking,
            "inbound": [
                edit(i, inbound) if isinstance(inbound, dict) else inbound
                for i, inbound in enumerate(raw)
            ],
        }
    return out


def without_health(dataplane: Resource) -> dict[str, Any]:
    """The Dataplane's body with inbound health taken out (what the proxy controls). This and
    `with_health` edit the stored document itself, not its model: what is stored stays what
    the proxy announced, byte for byte (a model dump would rewrite durations and order)."""
    return _edit_inbounds(
        dataplane.spec, lambda _, inbound: {k: v for k, v in inbound.items() if k != "health"}
    )


def _inbounds(dataplane: Resource) -> Sequence[Inbound]:
    """The Dataplane's inbounds, typed; none if its body does not fit the model."""
    spec = spec_as(dataplane, DataplaneSpec)
    return (spec.networking.inbound or ()) if spec is not None else ()


def health_of(dataplane: Resource) -> dict[int, bool]:
    """Inbound index -> ready, for the inbounds that say."""
    return {
        i: inbound.health.ready
        for i, inbound in enumerate(_inbounds(dataplane))
        if inbound.health is not None and inbound.health.ready is not None
    }


def with_health(dataplane: Resource, ready: Mapping[int, bool], default: bool) -> Resource:
    """A copy with `health.ready` set on every inbound (by index; `default` for the others)."""
    spec = _edit_inbounds(
        dataplane.spec,
        lambda i, inbound: {**inbound, "health": {"ready": ready.get(i, default)}},
    )
    return Resource(
        type=dataplane.type,
        meta=replace(dataplane.meta, labels=dict(dataplane.meta.labels)),
        spec=spec,
    )


def ready_by_port(dataplane: Resource, report: pb.Report) -> dict[int, bool]:
    """Inbound index -> ready from a sidecar's report (it names inbounds by port)."""
    by_port = {s.port: s.ready for s in report.inbounds}
    return {
        i: by_port[inbound.port]
        for i, inbound in enumerate(_inbounds(dataplane))
        if inbound.port in by_port
    }


def registered_dataplane(announced: Resource, zone: str, stored: Resource | None) -> Resource:
    """What to store for a sidecar that just connected: its Dataplane, zone labels, and the
    stored health if it is the same Dataplane as before (else not ready until it reports)."""
    base = Resource(
        announced.type,
        Meta(name=announced.meta.name, mesh=announced.meta.mesh, labels=_labels(announced, zone)),
        without_health(announced),
    )
    same = stored is not None and without_health(stored) == base.spec
    return with_health(base, health_of(stored) if same and stored else {}, default=False)


def registered_ingress(announced: Resource, zone: str, stored: Resource | None) -> Resource:
    """What to store for a zone ingress that just connected."""
    if stored is not None and stored.meta.labels.get(LABEL_ORIGIN) == ORIGIN_GLOBAL:
        raise Refused(
            f"ZoneIngress name {announced.meta.name!r} is taken by another zone's ingress "
            "(a copy synced from the global); give this one another --name"
        )
    spec = copy.deepcopy(announced.spec)
    spec["zone"] = zone
    spec["availableServices"] = copy.deepcopy(
        (stored.spec.get("availableServices") if stored is not None else None) or []
    )
    return Resource(
        announced.type,
        Meta(name=announced.meta.name, labels=_labels(announced, zone)),
        spec,
    )


def registered_egress(announced: Resource, zone: str) -> Resource:
    """What to store for a zone egress that just connected: its ZoneEgress, in this zone."""
    spec = copy.deepcopy(announced.spec)
    spec["zone"] = zone
    return Resource(
        announced.type, Meta(name=announced.meta.name, labels=_labels(announced, zone)), spec
    )


# -- insights ----------------------------------------------------------------------------------


def _counters(c: pb.Counters) -> dict[str, int]:
    return {
        "connectionsTotal": c.connections_total,
        "connectionsActive": c.connections_active,
        "bytesReceived": c.bytes_received,
        "bytesSent": c.bytes_sent,
        "connectionsRejected": c.connections_rejected,
    }


def report_json(report: pb.Report) -> dict[str, Any]:
    return {
        "configVersion": report.config_version,
        "inbounds": [
            {"port": i.port, "ready": i.ready, **_counters(i.counters)} for i in report.inbounds
        ],
        "services": [
            {"mesh": s.mesh, "service": s.service, **_counters(s.counters)} for s in report.services
        ],
    }


@dataclass
class Subscription:
    """One connection of a proxy (Kuma's DiscoverySubscription, with meshfed's config state)."""

    id: str
    instance: str  # the zone-cp instance that serves it
    connect_time: str
    proxy_version: str
    disconnect_time: str | None = None
    last_update_time: str | None = None
    responses_sent: int = 0
    responses_acked: int = 0
    responses_rejected: int = 0
    config_sent: str = ""
    config_acked: str = ""
    last_nack_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer writer, kept

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "controlPlaneInstanceId": self.instance,
            "connectTime": self.connect_time,
            "status": {
                "lastUpdateTime": self.last_update_time or self.connect_time,
                "total": {
                    "responsesSent": self.responses_sent,
                    "responsesAcknowledged": self.responses_acked,
                    "responsesRejected": self.responses_rejected,
                },
            },
            "version": {"meshfedDp": {"version": self.proxy_version}},
            "config": {
                "sent": self.config_sent,
                "acknowledged": self.config_acked,
                "lastNackError": self.last_nack_error,
            },
        }
        if self.disconnect_time is not None:
            out["disconnectTime"] = self.disconnect_time
        return out


def insight_resource(
    proxy_type: str,
    mesh: str,
    name: str,
    zone: str,
    subscriptions: list[dict[str, Any]],
    *,
    mtls: dict[str, Any] | None = None,
    report: pb.Report | None = None,
) -> Resource:
    """The DataplaneInsight (`proxy_type` SIDECAR) or ZoneIngressInsight of one proxy."""
    desc = {"sidecar": DATAPLANE_INSIGHT, "egress": ZONE_EGRESS_INSIGHT}.get(
        proxy_type, ZONE_INGRESS_INSIGHT
    )
    spec: dict[str, Any] = {"subscriptions": subscriptions[-SUBSCRIPTIONS_KEPT:]}
    if mtls is not None:
        spec["mTLS"] = mtls
    if report is not None:
        spec["report"] = report_json(report)
    labels = {LABEL_ORIGIN: ORIGIN_ZONE, LABEL_ZONE: zone}
    return Resource(desc.name, Meta(name=name, mesh=mesh, labels=labels), spec)


def previous_subscriptions(stored: Resource | None) -> list[dict[str, Any]]:
    """The subscriptions a stored insight holds (well-formed ones only)."""
    if stored is None:
        return []
    return [s for s in as_list(stored.spec.get("subscriptions")) if isinstance(s, dict)]


def proxy_disconnected(insight: Resource | None) -> bool:
    """The insight says its proxy's last connection is closed. No insight (or no
    subscription) means no proxy ever connected: a resource put through the API, which
    counts as online, as a Dataplane registered that way does."""
    subs = previous_subscriptions(insight)
    return bool(subs) and "disconnectTime" in subs[-1]


def held_by_gone(stored: Resource | None, alive: Collection[str]) -> bool:
    """The insight says the proxy's last connection is open on a zone-cp instance that is not
    among `alive` (a previous life of this one after a crash, or a replica that died)."""
    subs = previous_subscriptions(stored)
    if not subs:
        return False
    last = subs[-1]
    return "disconnectTime" not in last and last.get("controlPlaneInstanceId") not in alive
