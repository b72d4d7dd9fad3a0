"""Kuma 2.x's service resources (issue 17): MeshService, MeshMultiZoneService and
HostnameGenerator, with Kuma's fields (kuma.io/docs/latest/networking/meshservice/,
.../meshmultizoneservice/, .../hostnamegenerator/).

MeshService and MeshMultiZoneService carry `spec` and `status` side by side, as Kuma's
documents do: their descriptors are not `spec_wrapped`, and these models are the whole body.
`status` is written by the control planes (VIPs, hostnames, TLS state); a status a user sends
is kept only until the zone next writes it, as Kuma's status subresource.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import Choice, Model, OpenObject, problem
from meshfed.resources.models.common import (
    PROTOCOLS,
    Labels,
    NonEmpty,
    Port,
    TagKey,
    TagValue,
)
from meshfed.resources.models.system import Vip
from meshfed.resources.types.common import NOT_SUPPORTED

AppProtocol = Annotated[
    Literal["tcp", "http", "http2", "grpc"],
    Choice(
        (
            ("kafka", f"{NOT_SUPPORTED}: the sidecar speaks {', '.join(PROTOCOLS)}"),
            ("tls", f"{NOT_SUPPORTED}: the sidecar speaks {', '.join(PROTOCOLS)}"),
        )
    ),
]
DataplaneTags = Annotated[dict[TagKey, TagValue], Field(min_length=1)]


class DataplaneRef(Model):
    name: NonEmpty


class MeshServiceSelector(Model):
    refused = {
        "dataplaneLabels": f"{NOT_SUPPORTED}: a MeshService selects its Dataplanes by "
        "dataplaneTags or dataplaneRef (Universal)",
    }
    dataplane_tags: DataplaneTags | None = None
    dataplane_ref: DataplaneRef | None = None
    dataplane_labels: OpenObject | None = None


class MeshServicePort(Model):
    """`port` callers use; `targetPort` the Dataplane inbound's port, or its `name`
    (meshfed.dpconfig.meshservices keeps the instances whose inbound has that name)."""

    name: NonEmpty | None = None
    port: Port
    target_port: Port | NonEmpty | None = None
    app_protocol: AppProtocol = "tcp"


class Identity(Model):
    type: Literal["ServiceTag", "SpiffeID"]
    value: NonEmpty


def _unique_ports(data: dict[str, Any]) -> list[InitErrorDetails]:
    out: list[InitErrorDetails] = []
    ports = data.get("ports")
    if not isinstance(ports, list):
        return out
    seen_ports: set[int] = set()
    seen_names: set[str] = set()
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            continue
        port, name = p.get("port"), p.get("name")
        if isinstance(port, int):
            if port in seen_ports:
                out.append(problem(("ports", i, "port"), f"port {port} is listed twice"))
            seen_ports.add(port)
        if isinstance(name, str):
            if name in seen_names:
                out.append(problem(("ports", i, "name"), f"name {name!r} is listed twice"))
            seen_names.add(name)
    return out


class MeshServiceSpecBody(Model):
    selector: MeshServiceSelector = MeshServiceSelector()
    ports: list[MeshServicePort] = []
    identities: list[Identity] | None = None
    state: Literal["Available", "Unavailable"] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return _unique_ports(data)


class HostnameGeneratorRef(Model):
    core_name: NonEmpty


class Address(Model):
    hostname: NonEmpty
    origin: NonEmpty | None = None
    hostname_generator_ref: HostnameGeneratorRef | None = None


class StatusVip(Model):
    ip: Vip


class TlsStatus(Model):
    status: Literal["Ready", "NotReady"] | None = None


class DataplaneProxies(Model):
    connected: int | None = None
    healthy: int | None = None
    total: int | None = None


class Condition(Model):
    type: NonEmpty
    status: Literal["True", "False", "Unknown"]
    reason: NonEmpty
    message: str | None = None


class GeneratorStatus(Model):
    hostname_generator_ref: HostnameGeneratorRef
    conditions: list[Condition] | None = None


class MeshServiceStatus(Model):
    addresses: list[Address] | None = None
    vips: list[StatusVip] | None = None
    tls: TlsStatus | None = None
    dataplane_proxies: DataplaneProxies | None = None
    hostname_generators: list[GeneratorStatus] | None = None


class MeshServiceSpec(Model):
    """The whole body of a MeshService (Kuma's `spec` and `status`)."""

    spec: MeshServiceSpecBody = MeshServiceSpecBody()
    status: MeshServiceStatus | None = None


class LabelSelector(Model):
    match_labels: Labels | None = None


class MeshServiceRefSelector(Model):
    mesh_service: LabelSelector


class MultiZonePort(Model):
    name: NonEmpty | None = None
    port: Port
    app_protocol: AppProtocol = "tcp"


class MeshMultiZoneServiceSpecBody(Model):
    selector: MeshServiceRefSelector
    ports: Annotated[list[MultiZonePort], Field(min_length=1)]

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return _unique_ports(data)


class MatchedService(Model):
    name: NonEmpty
    namespace: str | None = None
    zone: str | None = None
    mesh: str | None = None


class MeshMultiZoneServiceStatus(Model):
    addresses: list[Address] | None = None
    vips: list[StatusVip] | None = None
    mesh_services: list[MatchedService] | None = None
    hostname_generators: list[GeneratorStatus] | None = None


class MeshMultiZoneServiceSpec(Model):
    spec: MeshMultiZoneServiceSpecBody
    status: MeshMultiZoneServiceStatus | None = None


class GeneratorSelector(Model):
    mesh_service: LabelSelector | None = None
    mesh_external_service: LabelSelector | None = None
    mesh_multi_zone_service: LabelSelector | None = None


class HostnameGeneratorSpec(Model):
    """`template`: Go-template text of the forms meshfed.resources.hostname_template reads."""

    refused = {"extension": f"{NOT_SUPPORTED}: meshfed has no hostname generator extensions"}
    selector: GeneratorSelector = GeneratorSelector()
    template: NonEmpty
    extension: OpenObject | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        from meshfed.resources.hostname_template import TemplateError, parse_template

        template = data.get("template")
        if isinstance(template, str) and template:
            try:
                parse_template(template)
            except TemplateError as exc:
                return [problem(("template",), str(exc))]
        return []
