"""Messages of the DataplaneConfig stream (proto/dataplane.proto): building and checking them.

The gRPC glue (zone-cp's server, mesh-dp's and zone-ingress's clients) should touch the
generated code only through these functions, so that every message is checked in one place:

- proxy side: `hello_message` first (with a sidecar's reachable services, so zone-cp builds
  only their outbounds), then `ack_message` / `nack_message` for each Config
  (after `parse_sidecar_config` / `parse_ingress_config`), and Reports (built directly from
  dataplane_pb2: they are plain counters);
- zone-cp side: `parse_hello` on the first message (a ProtocolError carries the Error code
  to answer with), then `config_message` on every change (with the bytes the version was
  hashed from: a config is encoded once), `error_message` on refusal.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.model import (
    ConfigFormatError,
    Encoded,
    IngressConfig,
    SidecarConfig,
    content_version,
)

if TYPE_CHECKING:
    from meshfed.resources.descriptors import Registry
    from meshfed.resources.model import Resource

ErrorCode = pb.Error.Code

# Bounds on a Hello's reachable services: far above any real sidecar's list (Kuma users list
# the few services an application calls), far below what would make a Hello a burden.
MAX_REACHABLE_SERVICES: Final = 4096
MAX_SERVICE_NAME: Final = 253  # `<service>.mesh` must still fit a DNS name
# The character set of a `kuma.io/service` tag value (meshfed.resources.types.common): a name
# outside it can never match a service.
_SERVICE_NAME = re.compile(r"[a-zA-Z0-9.\-_:]+")


class ProxyType(enum.StrEnum):
    SIDECAR = "sidecar"
    INGRESS = "ingress"
    EGRESS = "egress"


_TO_PB = {ProxyType.SIDECAR: pb.SIDECAR, ProxyType.INGRESS: pb.INGRESS, ProxyType.EGRESS: pb.EGRESS}
_FROM_PB = {v: k for k, v in _TO_PB.items()}
_RESOURCE_TYPE = {
    ProxyType.SIDECAR: "Dataplane",
    ProxyType.INGRESS: "ZoneIngress",
    ProxyType.EGRESS: "ZoneEgress",
}


class ProtocolError(ValueError):
    """A message the peer should not have sent; `code` is what to answer with."""

    def __init__(self, message: str, code: pb.Error.Code.ValueType = pb.Error.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Hello:
    proxy_type: ProxyType
    resource: Resource  # validated Dataplane or ZoneIngress
    proxy_version: str
    reachable: frozenset[str] | None = None  # a sidecar's reachable services; None: every one


def reachable_problem(names: Collection[str]) -> str | None:
    """What is wrong with a list of reachable services (None: nothing). mesh-dp checks its
    own list with this at start; zone-cp checks every Hello with it."""
    if len(names) > MAX_REACHABLE_SERVICES:
        return f"{len(names)} reachable services, more than the {MAX_REACHABLE_SERVICES} allowed"
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            return f"reachable service [{i}] is empty"
        if len(name) > MAX_SERVICE_NAME:
            return f"reachable service [{i}] is longer than {MAX_SERVICE_NAME} characters"
        if not _SERVICE_NAME.fullmatch(name):
            return (
                f"reachable service [{i}] {name[:64]!r} is not a service name (alphanumeric "
                "characters, '.', '-', '_', ':')"
            )
    return None


def hello_message(
    proxy_type: ProxyType,
    resource: dict[str, Any],
    *,
    proxy_version: str = "",
    reachable: Collection[str] | None = None,
) -> pb.DpMessage:
    """The first message of a proxy: `resource` is its Dataplane/ZoneIngress in Kuma JSON;
    `reachable` the services a sidecar calls (None: every service of its mesh)."""
    mesh = resource.get("mesh", "") if proxy_type is ProxyType.SIDECAR else ""
    return pb.DpMessage(
        hello=pb.Hello(
            proxy_type=_TO_PB[proxy_type],
            resource=json.dumps(resource, separators=(",", ":")).encode(),
            mesh=mesh if isinstance(mesh, str) else "",
            proxy_version=proxy_version,
            reachable_services=sorted(reachable or ()),
            reachable_services_set=reachable is not None,
        )
    )


def _parse_reachable(hello: pb.Hello, proxy_type: ProxyType) -> frozenset[str] | None:
    if not hello.reachable_services_set:
        if hello.reachable_services:
            raise ProtocolError(
                "Hello.reachable_services is given but reachable_services_set is false"
            )
        return None
    if proxy_type is not ProxyType.SIDECAR:
        raise ProtocolError("Hello.reachable_services is for a SIDECAR only")
    problem = reachable_problem(hello.reachable_services)
    if problem is not None:
        raise ProtocolError(f"Hello.reachable_services: {problem}")
    return frozenset(hello.reachable_services)


def parse_hello(msg: pb.DpMessage, registry: Registry | None = None) -> Hello:
    """Checks a stream's first message; ProtocolError says what is wrong with it. zone-cp's
    side: the resource schema is imported here, not by the proxies that import this module
    for their half (decision 187)."""
    from meshfed.resources.codec import resource_from_dict
    from meshfed.resources.errors import ValidationError
    from meshfed.resources.types import default_registry

    if msg.WhichOneof("message") != "hello":
        raise ProtocolError("the first message of a stream must be a Hello")
    hello = msg.hello
    proxy_type = _FROM_PB.get(hello.proxy_type)
    if proxy_type is None:
        raise ProtocolError("Hello.proxy_type must be SIDECAR, INGRESS or EGRESS")
    try:
        data = json.loads(hello.resource)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"Hello.resource is not valid JSON: {exc}") from None
    try:
        resource = resource_from_dict(
            data, registry or default_registry(), expected_type=_RESOURCE_TYPE[proxy_type]
        )
    except ValidationError as exc:
        detail = "; ".join(f"{e.field}: {e.reason}" if e.field else e.reason for e in exc.errors)
        raise ProtocolError(
            f"Hello.resource is not a valid {_RESOURCE_TYPE[proxy_type]}: {detail}"
        ) from None
    if proxy_type is ProxyType.SIDECAR and hello.mesh != resource.meta.mesh:
        raise ProtocolError(
            f"Hello.mesh {hello.mesh!r} differs from the Dataplane's mesh {resource.meta.mesh!r}"
        )
    if proxy_type is not ProxyType.SIDECAR and hello.mesh:
        raise ProtocolError(
            f"Hello.mesh must be empty for an {proxy_type.name}: "
            f"{_RESOURCE_TYPE[proxy_type]} has no mesh"
        )
    reachable = _parse_reachable(hello, proxy_type)
    return Hello(proxy_type, resource, hello.proxy_version, reachable)


def config_message(
    encoded: Encoded[SidecarConfig | IngressConfig | EgressConfig]
    | Encoded[SidecarConfig | IngressConfig]
    | Encoded[EgressConfig],
) -> pb.CpMessage:
    """The Config message of a config encoded once (model.encode_config). It says the zone
    reads a report inside the ACK (`ack_report`): every zone-cp with this code does."""
    return pb.CpMessage(
        config=pb.Config(version=encoded.version, json=encoded.body, ack_report=True)
    )


C = TypeVar("C", SidecarConfig, IngressConfig, EgressConfig)


def _parse_config(msg: pb.CpMessage, kind: type[C]) -> C:
    if msg.WhichOneof("message") != "config":
        raise ConfigFormatError("not a Config message")
    body = msg.config
    config = kind.from_json(body.json)
    if config.version:
        raise ConfigFormatError("the body's version must be empty: Config.version carries it")
    if body.version != content_version(body.json):
        raise ConfigFormatError(
            f"Config.version {body.version!r} differs from the body's hash "
            f"{content_version(body.json)!r}"
        )
    return msgspec.structs.replace(config, version=body.version)


def parse_sidecar_config(msg: pb.CpMessage) -> SidecarConfig:
    """A sidecar's config; ConfigFormatError (NACK it with the message) if unusable."""
    return _parse_config(msg, SidecarConfig)


def parse_ingress_config(msg: pb.CpMessage) -> IngressConfig:
    return _parse_config(msg, IngressConfig)


def parse_egress_config(msg: pb.CpMessage) -> EgressConfig:
    return _parse_config(msg, EgressConfig)


def ack_message(version: str, report: pb.Report | None = None) -> pb.DpMessage:
    """An ACK of `version`; with `report` only to a zone whose Config set `ack_report`."""
    return pb.DpMessage(ack=pb.Ack(version=version, report=report))


def nack_message(version: str, error: str) -> pb.DpMessage:
    return pb.DpMessage(nack=pb.Nack(version=version, error=error))


def error_message(
    code: pb.Error.Code.ValueType, message: str, *, fatal: bool = False
) -> pb.CpMessage:
    return pb.CpMessage(error=pb.Error(code=code, message=message, fatal=fatal))
