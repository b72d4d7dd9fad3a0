"""Dataplane and ZoneIngress: the proxies' resources, in Kuma's Universal shape
(https://kuma.io/docs/latest/production/dp-config/dpp-on-universal/).

meshfed's sidecar listens on VIPs that zone DNS hands out, so there is no iptables-based
transparent proxying; and there are no built-in gateways. Both are refused with a reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import NOT_SUPPORTED, Model, OpenObject, Text, problem
from meshfed.resources.models.common import (
    Address,
    DialableAddress,
    Name,
    Port,
    PositiveUint32,
    ServiceTags,
    Uint32,
    undialable,
)
from meshfed.resources.models.policies import PositiveDuration
from meshfed.resources.values import is_address


class Health(Model):
    ready: bool | None = None


class ServiceProbe(Model):
    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    unhealthy_threshold: PositiveUint32 | None = None
    healthy_threshold: PositiveUint32 | None = None
    tcp: OpenObject | None = None


class Inbound(Model):
    name: (
        Annotated[
            str,
            Text(
                pattern=r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
                message="must be a DNS label (lower case alphanumerics and '-')",
            ),
        ]
        | None
    ) = None
    port: Port
    service_port: Port | None = None
    service_address: Address | None = None
    address: DialableAddress | None = None
    tags: ServiceTags
    health: Health | None = None
    service_probe: ServiceProbe | None = None


class Outbound(Model):
    port: Port
    address: Address | None = None
    tags: ServiceTags


class Admin(Model):
    port: Port | None = None


class DataplaneNetworking(Model):
    refused = {
        "gateway": f"{NOT_SUPPORTED}: there are no built-in gateways",
        "transparentProxying": f"{NOT_SUPPORTED}: sidecars listen on VIPs from the zone's DNS "
        "instead",
    }
    address: DialableAddress
    advertised_address: DialableAddress | None = None
    inbound: list[Inbound] | None = None
    outbound: list[Outbound] | None = None
    admin: Admin | None = None
    gateway: OpenObject | None = None
    transparent_proxying: OpenObject | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        if "gateway" in data:
            return []  # already refused; do not pile a second error on the same mistake
        inbound = data.get("inbound")
        if not isinstance(inbound, list) or not inbound:
            return [problem(("inbound",), "must have at least 1 item")]
        return []


class DataplaneSpec(Model):
    networking: DataplaneNetworking

    def services(self) -> list[str]:
        """The kuma.io/service of each inbound, in order, without repeats."""
        out: list[str] = []
        for inbound in self.networking.inbound or ():
            svc = inbound.tags.get("kuma.io/service")
            if svc is not None and svc not in out:
                out.append(svc)
        return out


class IngressNetworking(Model):
    address: Address  # may be 0.0.0.0 behind an advertised address (rules)
    port: Port
    advertised_address: DialableAddress | None = None
    advertised_port: Port | None = None
    admin: Admin | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Kuma's rule: an advertised address and port are set together or not at all; and
        other zones dial `advertisedAddress` if set, else `address`, so that one must be
        dialable (issue 16: `address: 0.0.0.0` was accepted and advertised)."""
        has_addr, has_port = "advertisedAddress" in data, "advertisedPort" in data
        if has_addr == has_port:
            address = data.get("address")
            if has_addr or not isinstance(address, str) or not is_address(address):
                return []  # (a malformed address: its type says so)
            reason = undialable(address)
            return [] if reason is None else [problem(("address",), reason)]
        missing, present = (
            ("advertisedPort", "advertisedAddress")
            if has_addr
            else ("advertisedAddress", "advertisedPort")
        )
        return [problem((missing,), f"is required when {present} is set")]


class AvailableService(Model):
    tags: ServiceTags
    instances: Uint32 | None = None
    mesh: Name | None = None
    external_service: bool | None = None


class ZoneIngressSpec(Model):
    """Other zones reach the ingress on its advertised address when it is behind NAT or a LB."""

    zone: str | None = None
    networking: IngressNetworking
    available_services: list[AvailableService] | None = None

    def public_address(self) -> str:
        """Where other zones dial this ingress: the advertised address if any, host:port."""
        net = self.networking
        if net.advertised_address:
            return f"{net.advertised_address}:{net.advertised_port}"
        return f"{net.address}:{net.port}"
