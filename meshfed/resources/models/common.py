"""Value types several resources share: ports, addresses, names, Kuma's tags and labels."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from meshfed.resources.models.base import Also, Keyed, Range, Text, map_key, problem
from meshfed.resources.types.common import PROTOCOL_TAG, SERVICE_TAG, service_name_problem
from meshfed.resources.values import is_address

UINT32 = 2**32 - 1
INT32 = 2**31 - 1

Port = Annotated[int, Range(1, 65535)]
Percent = Annotated[int, Range(0, 100)]
PositiveUint32 = Annotated[int, Range(1, UINT32)]
Uint32 = Annotated[int, Range(0, UINT32)]
Address = Annotated[str, Text(predicate=is_address, message="must be an IP address or a hostname")]


def _dialable(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return is_address(text)  # a host name
    return not (
        ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def undialable(value: str) -> str | None:
    """Why other proxies cannot dial `value`, or None when they can."""
    if not is_address(value):
        return "must be an IP address or a hostname"
    if _dialable(value):
        return None
    ip = ipaddress.ip_address(value)
    kind = "an unspecified" if ip.is_unspecified else "a multicast or broadcast"
    return f"must be an address other proxies can dial, not {kind} address ({value})"


@dataclass(frozen=True)
class _Dialable:
    """An address other proxies connect to (a Dataplane's): 0.0.0.0, ::, multicast refused."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        def check(value: str) -> str:
            reason = undialable(value)
            if reason is None:
                return value
            raise PydanticCustomError("meshfed", "{reason}", {"reason": reason})

        return core_schema.no_info_after_validator_function(
            check, core_schema.str_schema(strict=True)
        )


DialableAddress = Annotated[str, _Dialable()]
# A reference to another resource by name (mesh, service): Kuma's name character set.
Name = Annotated[
    str,
    Text(
        pattern=r"[0-9a-z._-]+",
        message="must consist of lower case alphanumeric characters, '-', '.' and '_'",
    ),
]
NonEmpty = Annotated[str, Text(non_empty=True)]

# Kuma's tag character sets: keys may hold '/', ':'; selector values may also be '*' or '/'.
TagKey = Annotated[
    str,
    Text(
        pattern=r"[a-zA-Z0-9.\-_:/]+",
        message="must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':', '/'",
    ),
]
TAG_VALUE_PATTERN = r"[a-zA-Z0-9.\-_:]+"
TagValue = Annotated[
    str,
    Text(
        pattern=TAG_VALUE_PATTERN,
        message="must be non-empty and consist of alphanumeric characters, '.', '-', '_', ':'",
    ),
]
SelectorValue = Annotated[
    str,
    Text(
        pattern=r"[a-zA-Z0-9.\-_:/]+|\*",
        message="must be '*' or consist of alphanumeric characters, '.', '-', '_', ':', '/'",
    ),
]
Tags = Annotated[dict[TagKey, TagValue], Keyed()]
SelectorTags = Annotated[dict[TagKey, SelectorValue], Keyed()]
Labels = Annotated[dict[NonEmpty, str], Keyed()]

PROTOCOLS = ("tcp", "http", "http2", "grpc")


def _service_rules(value: dict[str, Any]) -> list[InitErrorDetails]:
    out: list[InitErrorDetails] = []
    if SERVICE_TAG not in value:
        out.append(problem((), f"must contain the {SERVICE_TAG!r} tag"))
    service = value.get(SERVICE_TAG)
    if isinstance(service, str) and re.fullmatch(TAG_VALUE_PATTERN, service):
        reason = service_name_problem(service)
        if reason is not None:
            out.append(problem((map_key(SERVICE_TAG),), reason))
    proto = value.get(PROTOCOL_TAG)
    if isinstance(proto, str) and proto not in PROTOCOLS:
        out.append(problem((map_key(PROTOCOL_TAG),), "must be one of " + ", ".join(PROTOCOLS)))
    return out


# Tags of a dataplane inbound/outbound or an advertised service: kuma.io/service is mandatory
# and names a VIP key and DNS name; kuma.io/protocol is one Kuma knows.
ServiceTags = Annotated[dict[TagKey, TagValue], Keyed(), Also(_service_rules)]
