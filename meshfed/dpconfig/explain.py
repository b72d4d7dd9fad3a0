"""Why can't web reach backend? The path of one call as the control planes see it (pure).

`explain(inventory, source, destination, zone)` walks the hops a call from service `source`
to `<destination>.mesh` depends on, each with a verdict, from the resources a control plane
already holds (the global holds every zone's; a zone-cp its own and the ingresses the global
relays). Nothing here asks a proxy. The hops come in the order one depends on the other, so
the first broken hop is the cause, not a symptom (no VIP is a symptom of no endpoint):

1. `caller`: the Dataplanes whose identity is `source` in the caller's zone;
2. `sidecar`: their proxies connected and the last config ACKed (DataplaneInsight);
3. `service`: `destination` exists: instances per zone with their health (Dataplane inbound
   `health.ready`), or, where the Dataplanes are not known here, what ingresses advertise;
4. `ingress`: each other zone with instances has an ingress, online (ZoneIngressInsight),
   advertising the service (`availableServices`); cross-zone needs mTLS;
5. `endpoints`: what the caller's outbound gets, per zone: the zone's catalog
   (meshfed.dpconfig.catalog) and the locality plan, as zone-cp builds the config;
6. `dns`: `<destination>.mesh`'s VIP in the caller's zone (its VirtualIPs);
7. `outbound`: the caller's outbound (VIP, port, protocol, endpoints) and whether the
   config holding it was ACKed;
8. `permission`: MeshTrafficPermission at each destination inbound for the caller's SPIFFE
   identity (compiled and evaluated as the sidecar does), naming the policy that decides;
9. `policies`: the timeouts, retries, balancing, health checks and limits of the outbound.

Each hop's verdict: `ok`, `warn` (works, partly: some instances or zones are out), `fail`
(the call cannot pass here) or `skip` (not checkable without an earlier hop, e.g. no caller).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from meshfed.dpconfig.build import (
    HTTP_PORT,
    MESH_TRAFFIC_PERMISSION,
    _Builder,
    as_protocol,
    mtls_enabled,
)
from meshfed.dpconfig.catalog import Catalog, ServiceEntry, build_catalog
from meshfed.dpconfig.model import Endpoint, OutboundPolicies
from meshfed.dpconfig.policies import OUTBOUND_TYPES
from meshfed.pki.spiffe import PkiError, parse_spiffe_id, service_id
from meshfed.pki.tag_sans import NO_TAGS, TagSet
from meshfed.policy.callers import certified_tags, selects
from meshfed.policy.permissions import Permissions, compile_permissions
from meshfed.policy.rules import Matched, caller_subset, entries, match, source_of
from meshfed.policy.targetref import view_of
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list, dig
from meshfed.resources.types.vips import vip_entries

Verdict = Literal["ok", "warn", "fail", "skip"]
HOPS = (
    "caller",
    "sidecar",
    "service",
    "ingress",
    "endpoints",
    "dns",
    "outbound",
    "permission",
    "policies",
)


@dataclass(frozen=True, slots=True)
class Hop:
    name: str
    verdict: Verdict
    detail: str  # one line a person reads
    facts: dict[str, Any] = field(default_factory=dict)  # the same, as data

    def to_json(self) -> dict[str, Any]:
        return {"hop": self.name, "verdict": self.verdict, "detail": self.detail, **self.facts}


@dataclass(frozen=True, slots=True)
class Explanation:
    mesh: str
    source: str
    destination: str
    zone: str | None
    hops: tuple[Hop, ...]

    @property
    def broken(self) -> Hop | None:
        """The first hop the call cannot pass."""
        return next((h for h in self.hops if h.verdict == "fail"), None)

    def to_json(self) -> dict[str, Any]:
        broken = self.broken
        return {
            "mesh": self.mesh,
            "from": self.source,
            "to": self.destination,
            "zone": self.zone,
            "ok": broken is None,
            "brokenHop": None if broken is None else broken.name,
            "hops": [h.to_json() for h in self.hops],
        }


@dataclass(frozen=True)
class Inventory:
    """What a control plane holds of one mesh (and the mesh-less ingresses)."""

    mesh: Resource
    dataplanes: Sequence[Resource]
    dataplane_insights: Sequence[Resource]
    ingresses: Sequence[Resource]
    ingress_insights: Sequence[Resource]
    virtual_ips: Sequence[Resource]
    policies: Mapping[str, Sequence[Resource]]  # type name -> resources
    # The zone whose control plane answers (None: the global, which knows every zone).
    here: str | None = None


def zone_of(res: Resource, default: str = "") -> str:
    return res.meta.labels.get(LABEL_ZONE) or default


def _ingress_zone(ingress: Resource) -> str:
    zone = ingress.spec.get("zone")
    return zone if isinstance(zone, str) and zone else zone_of(ingress)


def _display(res: Resource) -> str:
    return res.meta.labels.get(LABEL_DISPLAY_NAME, res.meta.name)


def last_subscription(insight: Resource | None) -> dict[str, Any] | None:
    subs = as_list(insight.spec.get("subscriptions") if insight else None)
    last = subs[-1] if subs else None
    return last if isinstance(last, dict) else None


def proxy_connected(insight: Resource | None) -> bool | None:
    """True/False from the proxy's last subscription; None: no proxy ever connected."""
    last = last_subscription(insight)
    return None if last is None else "disconnectTime" not in last


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _seconds(value: float) -> str:
    return "off" if value == 0 else f"{value:g}s"


class _Walk:
    """One explanation: the inputs indexed once, one method per hop."""

    def __init__(self, inv: Inventory, source: str, destination: str, zone: str | None) -> None:
        self.inv = inv
        self.mesh = inv.mesh.meta.name
        self.source = source
        self.destination = destination
        self.mtls = mtls_enabled(inv.mesh)
        self.here = inv.here
        default_zone = inv.here or ""
        self.dataplanes = [
            (zone_of(dp, default_zone), dp) for dp in inv.dataplanes if dp.meta.mesh == self.mesh
        ]
        self.insights = {i.meta.name: i for i in inv.dataplane_insights}
        self.ingress_insights = {i.meta.name: i for i in inv.ingress_insights}
        callers_by_zone: dict[str, list[Resource]] = {}
        for z, dp in self.dataplanes:
            view = view_of(dp, z)
            if view.inbounds and view.inbounds[0].service == source:
                callers_by_zone.setdefault(z, []).append(dp)
        self.callers_by_zone = callers_by_zone
        if zone is None:
            zone = inv.here or (sorted(callers_by_zone)[0] if callers_by_zone else None)
        self.zone = zone
        self.callers = callers_by_zone.get(zone, []) if zone else []
        self.matched: dict[str, list[Matched]] = {}
        self.catalog: Catalog | None = None
        self.entry: ServiceEntry | None = None
        self.builder: _Builder | None = None
        if zone:
            self.catalog = build_catalog(
                zone,
                [dp for z, dp in self.dataplanes if z == zone],
                [i for i in inv.ingresses if _ingress_zone(i) != zone],
                ingress_online=self._ingress_online,
            )
            self.entry = self.catalog.get(self.mesh, destination)
            if self.callers:
                view = view_of(self.callers[0], zone)
                self.matched = {
                    t: match(inv.policies.get(t, ()), view)
                    for t in (*OUTBOUND_TYPES, MESH_TRAFFIC_PERMISSION)
                }
                self.builder = _Builder(view, zone, self.mtls, self.catalog, self.matched)

    def _ingress_online(self, ingress: Resource) -> bool:
        return proxy_connected(self.ingress_insights.get(ingress.meta.name)) is not False

    # -- hops ---------------------------------------------------------------------------------

    def caller(self) -> Hop:
        try:
            identity = service_id(self.mesh, self.source)
        except PkiError as exc:
            return Hop("caller", "fail", f"{self.source!r} cannot be an identity: {exc}")
        facts: dict[str, Any] = {"identity": identity, "dataplanes": []}
        if self.zone is None:
            return Hop(
                "caller",
                "fail",
                f"no dataplane of service {self.source!r} in mesh {self.mesh!r} in any zone",
                facts,
            )
        names = [_display(dp) for dp in self.callers]
        facts["dataplanes"] = names
        if not names:
            elsewhere = sorted(set(self.callers_by_zone) - {self.zone})
            where = f" (it runs in {', '.join(elsewhere)})" if elsewhere else ""
            return Hop(
                "caller",
                "fail",
                f"no dataplane of service {self.source!r} in zone {self.zone}{where}",
                facts,
            )
        return Hop("caller", "ok", f"{', '.join(names)} in {self.zone}, as {identity}", facts)

    def sidecar(self) -> Hop:
        if not self.callers:
            return Hop("sidecar", "skip", "no caller dataplane")
        states: list[dict[str, Any]] = []
        lines: list[str] = []
        good = 0
        for dp in self.callers:
            state, line = self._sidecar_state(dp)
            states.append({"dataplane": _display(dp), "state": state})
            lines.append(f"{_display(dp)}: {line}")
            good += state in ("acked", "pending")
        verdict: Verdict = "ok" if good == len(self.callers) else "warn" if good else "fail"
        if verdict == "ok" and any(s["state"] == "pending" for s in states):
            verdict = "warn"
        return Hop("sidecar", verdict, "; ".join(lines), {"sidecars": states})

    def _sidecar_state(self, dp: Resource) -> tuple[str, str]:
        last = last_subscription(self.insights.get(dp.meta.name))
        if last is None:
            return "never-connected", "no sidecar has connected (no DataplaneInsight)"
        if "disconnectTime" in last:
            return "disconnected", f"sidecar not connected (since {last['disconnectTime']})"
        sent, acked = dig(last, "config", "sent"), dig(last, "config", "acknowledged")
        nack = dig(last, "config", "lastNackError")
        where = f"connected to {last.get('controlPlaneInstanceId', '?')}"
        if sent and sent == acked:
            return "acked", f"{where}, config {str(sent)[:12]} ACKed"
        if nack:
            return "nacked", f"{where}, config {str(sent)[:12]} rejected: {nack}"
        return "pending", f"{where}, config {str(sent)[:12]} sent, not ACKed yet"

    def _instances(self) -> dict[str, tuple[int, int]]:
        """zone -> (instances, ready) of the destination, from the Dataplanes known here."""
        out: dict[str, tuple[int, int]] = {}
        for z, dp in self.dataplanes:
            for raw in as_list(dig(dp.spec, "networking", "inbound")):
                if dig(raw, "tags", SERVICE_TAG) != self.destination:
                    continue
                n, ready = out.get(z, (0, 0))
                out[z] = (n + 1, ready + (dig(raw, "health", "ready") is not False))
        return out

    def _advertised(self) -> dict[str, dict[str, int]]:
        """zone -> ingress name -> instances of the destination it advertises."""
        out: dict[str, dict[str, int]] = {}
        for ingress in self.inv.ingresses:
            n = 0
            for svc in as_list(ingress.spec.get("availableServices")):
                if dig(svc, "mesh") == self.mesh and dig(svc, "tags", SERVICE_TAG) == (
                    self.destination
                ):
                    count = dig(svc, "instances")
                    n += count if isinstance(count, int) else 1
            if n:
                out.setdefault(_ingress_zone(ingress), {})[_display(ingress)] = n
        return out

    def service(self) -> Hop:
        instances = self._instances()
        advertised = self._advertised()
        zones = sorted(instances.keys() | advertised.keys())
        facts: dict[str, Any] = {
            "zones": [
                {
                    "zone": z,
                    "instances": instances[z][0] if z in instances else None,
                    "ready": instances[z][1] if z in instances else None,
                    "advertised": sum(advertised.get(z, {}).values()),
                }
                for z in zones
            ]
        }
        if not zones:
            known = sorted(
                {str(t) for _, dp in self.dataplanes for t in _services_of(dp)}
                | {s for z in self._all_advertised() for s in z}
            )
            scope = "any zone" if self.here is None else f"zone {self.here} (the global knows all)"
            listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            return Hop(
                "service",
                "fail",
                f"unknown service {self.destination!r}: no instance in {scope}"
                + (f"; known: {listed}" if known else ""),
                facts,
            )
        parts = []
        for z in zones:
            if z in instances:
                n, ready = instances[z]
                parts.append(f"{z}: {ready}/{_plural(n, 'instance')} ready")
            else:
                parts.append(f"{z}: {sum(advertised[z].values())} advertised by its ingress")
        if (
            instances
            and not any(ready for _, ready in instances.values())
            and not (advertised.keys() - instances.keys())
        ):
            return Hop("service", "fail", "no instance ready; " + "; ".join(parts), facts)
        partial = any(ready < n for n, ready in instances.values())
        return Hop("service", "warn" if partial else "ok", "; ".join(parts), facts)

    def _all_advertised(self) -> Iterable[set[str]]:
        for ingress in self.inv.ingresses:
            yield {
                str(dig(s, "tags", SERVICE_TAG))
                for s in as_list(ingress.spec.get("availableServices"))
                if dig(s, "mesh") == self.mesh
            }

    def ingress(self) -> Hop:
        if self.zone is None:
            return Hop("ingress", "skip", "no caller zone")
        instances = self._instances()
        remote = sorted(
            z
            for z in instances.keys() | self._advertised().keys()
            if z and z != self.zone and instances.get(z, (1, 1))[1] > 0
        )
        if not remote:
            return Hop("ingress", "ok", f"not on the path: no other zone has {self.destination}")
        local_ready = instances.get(self.zone, (0, 0))[1]
        if not self.mtls:
            return Hop(
                "ingress",
                "warn" if local_ready else "fail",
                f"mesh {self.mesh!r} has no mTLS: {', '.join(remote)} cannot be reached "
                "(ingresses route on the SNI of an mTLS connection)",
            )
        zones: list[dict[str, Any]] = []
        lines: list[str] = []
        for z in remote:
            state, line = self._zone_ingress(z)
            zones.append({"zone": z, "state": state})
            lines.append(f"{z}: {line}")
        good = sum(1 for s in zones if s["state"] == "ok")
        verdict: Verdict = "ok" if good == len(zones) else "warn" if good or local_ready else "fail"
        return Hop("ingress", verdict, "; ".join(lines), {"zones": zones})

    def _zone_ingress(self, zone: str) -> tuple[str, str]:
        ingresses = [i for i in self.inv.ingresses if _ingress_zone(i) == zone]
        if not ingresses:
            return "none", "no ZoneIngress in the zone"
        problems: list[str] = []
        for ingress in ingresses:
            name = _display(ingress)
            if proxy_connected(self.ingress_insights.get(ingress.meta.name)) is False:
                problems.append(f"{name} offline")
                continue
            if self.destination not in {
                dig(s, "tags", SERVICE_TAG)
                for s in as_list(ingress.spec.get("availableServices"))
                if dig(s, "mesh") == self.mesh
            }:
                problems.append(f"{name} does not advertise {self.destination}")
                continue
            return "ok", f"{name} online, advertises {self.destination}"
        return "not-advertised", "; ".join(problems)

    def endpoints(self) -> tuple[Hop, tuple[Endpoint, ...]]:
        if self.zone is None:
            return Hop("endpoints", "skip", "no caller zone"), ()
        if self.entry is None:
            return (
                Hop(
                    "endpoints",
                    "fail",
                    f"{self.zone}'s catalog has no {self.destination}: no ready local "
                    "instance and no online ingress advertising it",
                ),
                (),
            )
        if self.builder is not None:
            found = self.builder.endpoints(self.entry)
        else:  # no caller: the catalog's choices, without a caller's locality plan
            found = tuple(Endpoint(i.address, i.port, self.zone) for i in self.entry.local) + tuple(
                Endpoint(r.address, r.port, r.zone, r.instances)
                for r in self.entry.remote
                if self.mtls
            )
        per_zone: dict[str, int] = {}
        for e in found:
            per_zone[e.zone] = per_zone.get(e.zone, 0) + (e.weight if e.via_ingress else 1)
        facts = {
            "endpoints": [
                {
                    "zone": e.zone,
                    "address": f"{e.address}:{e.port}",
                    "viaIngress": e.via_ingress,
                    "weight": e.weight,
                    "priority": e.priority,
                }
                for e in found
            ]
        }
        if not found:
            return (
                Hop(
                    "endpoints",
                    "fail",
                    f"no endpoint for {self.destination} from {self.zone} "
                    "(locality rules or mTLS leave none)",
                    facts,
                ),
                found,
            )
        parts = [
            f"{z}: {_plural(n, 'instance')}" + (" via ingress" if z != self.zone else "")
            for z, n in sorted(per_zone.items())
        ]
        return Hop("endpoints", "ok", "; ".join(parts), facts), found

    def vip(self) -> str | None:
        for res in self.inv.virtual_ips:
            if res.meta.mesh != self.mesh or zone_of(res, self.here or "") != self.zone:
                continue
            for e in vip_entries(res.spec):
                if e.active and e.zone is None and e.service == self.destination:
                    return e.vip
        return None

    def dns(self) -> Hop:
        if self.zone is None:
            return Hop("dns", "skip", "no caller zone")
        name = f"{self.destination}.mesh"
        vip = self.vip()
        if vip is None:
            return Hop("dns", "fail", f"{name} has no VIP in {self.zone}: DNS answers NXDOMAIN")
        return Hop("dns", "ok", f"{name} -> {vip} in {self.zone}", {"name": name, "vip": vip})

    def outbound(self, endpoints: Sequence[Endpoint], sidecar: Hop) -> Hop:
        if not self.callers:
            return Hop("outbound", "skip", "no caller dataplane")
        vip = self.vip()
        explicit = self._explicit_outbound()
        if self.entry is None or (vip is None and explicit is None):
            return Hop(
                "outbound", "fail", f"the caller's config has no outbound to {self.destination}"
            )
        port = self.entry.port or HTTP_PORT
        protocol = as_protocol(self.entry.protocol)
        listens = [f"{vip}:{port}"] if vip is not None else []
        if explicit is not None:
            listens.append(explicit)
        facts = {"listen": listens, "protocol": protocol, "endpoints": len(endpoints)}
        states = {s["state"] for s in sidecar.facts.get("sidecars", ())}
        if "acked" in states:
            verdict: Verdict = "ok"
            acked = "in the config the sidecar ACKed"
        else:
            verdict = "warn"
            acked = "not yet ACKed by a sidecar"
        return Hop(
            "outbound",
            verdict,
            f"{' and '.join(listens)} ({protocol}), {_plural(len(endpoints), 'endpoint')}, {acked}",
            facts,
        )

    def _explicit_outbound(self) -> str | None:
        for raw in as_list(dig(self.callers[0].spec, "networking", "outbound")):
            if dig(raw, "tags", SERVICE_TAG) == self.destination:
                address = dig(raw, "address")
                return f"{address if isinstance(address, str) else '127.0.0.1'}:{dig(raw, 'port')}"
        return None

    def permission(self) -> Hop:
        try:
            identity = service_id(self.mesh, self.source)
        except PkiError:
            return Hop("permission", "skip", "no caller identity")
        if not self.mtls:
            return Hop("permission", "ok", "mTLS is off: MeshTrafficPermission is not enforced")
        policies = self.inv.policies.get(MESH_TRAFFIC_PERMISSION, ())
        allowed: dict[str, list[str]] = {}  # deciding reason -> dataplanes
        denied: dict[str, list[str]] = {}
        for z, dp in self.dataplanes:
            view = view_of(dp, z)
            mtp = match(policies, view)
            for inbound in view.inbounds:
                if inbound.service != self.destination:
                    continue
                perms = compile_permissions(mtp, inbound.index, self.mesh, mtls_enabled=True)
                verdict = perms.evaluate(identity, self._caller_tags())
                why = _deciding(mtp, inbound.index, perms, identity, self._caller_tags())
                (allowed if verdict.allowed else denied).setdefault(why, []).append(
                    f"{_display(dp)} ({z})"
                )
        if not allowed and not denied:
            where = "here" if self.here is None else f"in zone {self.here} (ask the global)"
            return Hop("permission", "skip", f"no dataplane of {self.destination} known {where}")
        facts = {
            "identity": identity,
            "allowed": [{"by": k, "dataplanes": v} for k, v in allowed.items()],
            "denied": [{"by": k, "dataplanes": v} for k, v in denied.items()],
        }
        if not allowed:
            return Hop("permission", "fail", f"{identity} denied: {'; '.join(denied)}", facts)
        if denied:
            return Hop(
                "permission",
                "warn",
                f"{identity} allowed ({'; '.join(allowed)}) but denied at "
                + "; ".join(f"{', '.join(v)}: {k}" for k, v in denied.items()),
                facts,
            )
        return Hop("permission", "ok", f"{identity} allowed: {'; '.join(allowed)}", facts)

    def _caller_tags(self) -> TagSet:
        """The tags the first caller's certificate carries (decision 152): what `from[]`
        entries naming callers by tags see; none without a caller dataplane."""
        if not self.callers or not self.zone:
            return NO_TAGS
        return certified_tags(view_of(self.callers[0], self.zone), self.source, self.zone)

    def policies(self) -> Hop:
        if self.builder is None:
            return Hop("policies", "skip", "no caller dataplane")
        p = self.builder.policies(self.destination)
        protocol = as_protocol(self.entry.protocol) if self.entry is not None else "tcp"
        detail = describe_policies(p, protocol)
        return Hop("policies", "ok", detail, {"sources": list(p.sources)})


def _services_of(dp: Resource) -> Iterable[Any]:
    for raw in as_list(dig(dp.spec, "networking", "inbound")):
        service = dig(raw, "tags", SERVICE_TAG)
        if isinstance(service, str):
            yield service


def _deciding(
    matched: Sequence[Matched],
    inbound: int,
    perms: Permissions,
    identity: str,
    tags: TagSet = NO_TAGS,
) -> str:
    """Which MeshTrafficPermission decides `identity`'s verdict at one inbound, and by which
    entry, following Permissions.evaluate: the first matching `rules[]` matcher (deny, then
    allowWithShadowDeny, then allow), else the last `from[]` entry that selects the caller
    and sets an action (the merge's winner), else none: denied by default."""
    verdict = perms.evaluate(identity, tags)
    if verdict.reason.startswith("rules "):
        key = verdict.reason.split()[1]
        for e in entries(matched, "rules", inbound):
            for item in as_list(e.default.get(key)):
                value, kind = dig(item, "spiffeID", "value"), dig(item, "spiffeID", "type")
                if isinstance(value, str) and (
                    identity == value if kind == "Exact" else identity.startswith(value)
                ):
                    return f"{source_of(e.policy)} (rules {key}: {kind} {value})"
    if verdict.reason.startswith("from[]"):
        service = parse_spiffe_id(identity).service
        last = ""
        for e in entries(matched, "from", inbound):
            subset = caller_subset(e.target_ref)
            if subset is None or not selects(subset, service, tags):
                continue
            action = e.default.get("action")
            if isinstance(action, str):
                kind = e.target_ref.get("kind", "Mesh")
                last = f"{source_of(e.policy)} (from {kind}: {action})"
        if last:
            return last
    return verdict.reason


def describe_policies(p: OutboundPolicies, protocol: str) -> str:
    """The settings that shape a call on one outbound (HTTP ones only where it speaks HTTP)."""
    http = protocol != "tcp"
    parts = [
        f"connect timeout {_seconds(p.connect_timeout)}",
        f"idle {_seconds(p.idle_timeout)}",
        *([f"request timeout {_seconds(p.request_timeout)}"] if http else []),
        f"connect attempts {p.max_connect_attempts}",
        *([f"http retries {p.http_retry.num_retries}"] if http else []),
        f"balancer {p.load_balancer}",
        f"max connections {p.max_connections}",
        "health checks "
        + ("off" if p.health_check is None else f"every {_seconds(p.health_check.interval)}"),
        "routes: none (the service as a whole)",
    ]
    by = ", ".join(p.sources) if p.sources else "Kuma's defaults (no policy matches)"
    return "; ".join(parts) + f"; from {by}"


def explain(
    inventory: Inventory, source: str, destination: str, zone: str | None = None
) -> Explanation:
    """The hops of a call from service `source` in `zone` (default: the answering zone, or
    the first zone where `source` runs) to `<destination>.mesh`."""
    w = _Walk(inventory, source, destination, zone)
    sidecar = w.sidecar()
    endpoints, found = w.endpoints()
    hops = (
        w.caller(),
        sidecar,
        w.service(),
        w.ingress(),
        endpoints,
        w.dns(),
        w.outbound(found, sidecar),
        w.permission(),
        w.policies(),
    )
    return Explanation(w.mesh, source, destination, w.zone, hops)
