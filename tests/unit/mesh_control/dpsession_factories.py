"""Sessions of the config server built without a server, for its pure decisions' tests."""

from __future__ import annotations

from meshfed.dpconfig.protocol import Hello, ProxyType
from meshfed.resources.model import Resource
from tests.unit.policy.factories import dataplane, inbound, zone_ingress
from zone_cp import dpstate
from zone_cp.dpbuild import Wants
from zone_cp.dpsession import Session


def web_dataplane(name: str = "web-1", port: int = 8080) -> Resource:
    return dataplane(name, inbound("web", port), inbound("admin", 9090))


def session_of(resource: Resource) -> Session:
    kind = ProxyType.SIDECAR if resource.type == "Dataplane" else ProxyType.INGRESS
    return Session(
        hello=Hello(kind, resource, "test"),
        resource=resource,
        wants=Wants.of(kind, resource, None),
        subscription=dpstate.Subscription("sub-1", "cp-1", "2024-01-01T00:00:00Z", "test"),
        history=[],
        ready=dpstate.health_of(resource),
    )


def sidecar(name: str = "web-1") -> Session:
    return session_of(web_dataplane(name))


def ingress(name: str = "zi-1") -> Session:
    return session_of(zone_ingress(name, "zone-1", "127.0.0.1", 10001, []))
