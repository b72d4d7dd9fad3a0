"""MeshPassthrough (https://kuma.io/docs/latest/policies/meshpassthrough/): which destinations
outside the mesh a sidecar may reach directly, in Kuma's shape, with Kuma's own rules:

- `passthroughMode` All / Matched / None (default None); `appendMatch` counts with Matched;
- an entry's `type` Domain (a host name, or `*.` then one; a partial wildcard such as
  `*w.example.com` is refused, as Kuma does), IP or CIDR, its `value` of that type, an
  optional `port`, and `protocol` tcp / tls / http / http2 / grpc / mysql (default tcp);
- a Domain is never matched with `tcp` or `mysql` (Kuma: at TCP level the domain is unknown).

How the sidecar enforces it: decision 158 (mesh_dp/passthrough.py).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import Choice, Model, problem
from meshfed.resources.models.common import Port
from meshfed.resources.models.targetref import TopLevelRef
from meshfed.resources.values import is_hostname

_WILDCARD = re.compile(r"\*\.(.+)")


def domain_problem(value: str) -> str | None:
    wild = _WILDCARD.fullmatch(value)
    name = wild.group(1) if wild else value
    if "*" in name or not is_hostname(name):
        return "must be a domain name, or '*.' followed by one (no partial wildcards)"
    return None


def _address_problem(kind: str, value: str) -> str | None:
    try:
        if kind == "IP":
            ipaddress.ip_address(value)
        else:
            ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "must be an IP address" if kind == "IP" else "must be a CIDR such as 10.0.0.0/8"
    return None


class PassthroughMatch(Model):
    type: Annotated[Literal["Domain", "IP", "CIDR"], Choice()]
    value: str
    port: Port | None = None
    protocol: Annotated[Literal["tcp", "tls", "http", "http2", "grpc", "mysql"], Choice()] = "tcp"

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind, value, protocol = data.get("type"), data.get("value"), data.get("protocol", "tcp")
        if not isinstance(value, str) or kind not in ("Domain", "IP", "CIDR"):
            return []
        reason = domain_problem(value) if kind == "Domain" else _address_problem(str(kind), value)
        if reason is not None:
            return [problem(("value",), reason)]
        if kind == "Domain" and protocol in ("tcp", "mysql"):
            return [
                problem(
                    ("protocol",),
                    f"{protocol} cannot be used with type Domain (at TCP level the domain is "
                    "unknown): use tls, http, http2 or grpc, or type IP or CIDR",
                )
            ]
        return []


class PassthroughConf(Model):
    passthrough_mode: Annotated[Literal["All", "Matched", "None"], Choice()] = "None"
    append_match: list[PassthroughMatch] | None = None


class MeshPassthroughSpec(Model):
    target_ref: TopLevelRef | None = None
    default: PassthroughConf
