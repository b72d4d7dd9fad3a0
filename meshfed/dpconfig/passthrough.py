"""MeshPassthrough compiled for one sidecar, and the decision its passthrough proxy takes per
connection (decision 158). Pure.

Compiling (zone-cp): the MeshPassthrough policies selecting the Dataplane, least priority
first, are merged as Kuma merges them: `passthroughMode` of the last one that sets it wins,
`appendMatch` lists are appended. With none, the Mesh's `networking.outbound.passthrough`
decides (Kuma's default: true, every destination; false: none).

Deciding (mesh-dp, mesh_dp/passthrough.py): the application asks for `host:port` (an HTTP
CONNECT); `All` admits, `None` refuses, `Matched` admits when an entry matches:

- Domain: the requested host equals the value, or the value is `*.suffix` and the host ends
  with `.suffix` (any depth);
- IP / CIDR: an address the host resolves to (or the literal address asked for) is the value
  or lies in it; the connection goes to that address;
- `port`, when set, equals the requested port;
- `protocol`: `tcp` and `mysql` admit any bytes (MySQL's server speaks first); `tls` needs the
  application's first bytes to be a TLS handshake record, `http` an HTTP/1 request line,
  `http2` and `grpc` the HTTP/2 preface. The proxy reads those bytes only when no `tcp`/`mysql`
  entry already admits the destination.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from meshfed.resources.fields import as_list, dig

if TYPE_CHECKING:
    from meshfed.policy.rules import Matched
    from meshfed.resources.model import Resource

Mode = Literal["All", "Matched", "None"]
MatchType = Literal["Domain", "IP", "CIDR"]
PassthroughProtocol = Literal["tcp", "tls", "http", "http2", "grpc", "mysql"]
ANY_BYTES: Final = frozenset({"tcp", "mysql"})
_HTTP1: Final = re.compile(rb"[A-Z]{3,10} \S")
_H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n"
PEEK_BYTES: Final = len(_H2_PREFACE)


class PassthroughMatch(msgspec.Struct, frozen=True, rename="camel"):
    type: MatchType
    value: str
    port: int = 0  # 0: any port
    protocol: PassthroughProtocol = "tcp"


class Passthrough(msgspec.Struct, frozen=True, rename="camel"):
    """Part of the sidecar config (meshfed.dpconfig.model.SidecarConfig.passthrough)."""

    mode: Mode = "None"
    matches: tuple[PassthroughMatch, ...] = ()
    sources: tuple[str, ...] = ()  # `MeshPassthrough/<name>`, or `Mesh/<name>`


def compile_passthrough(matched: Sequence[Matched], mesh: Resource) -> Passthrough:
    """What the MeshPassthroughs matched to a Dataplane (rules.match) let it reach."""
    from meshfed.policy.rules import source_of  # zone-cp's side (decision 187)

    if not matched:
        allowed = dig(mesh.spec, "networking", "outbound", "passthrough")
        mode: Mode = "None" if allowed is False else "All"
        return Passthrough(mode=mode, sources=(f"Mesh/{mesh.meta.name}",))
    mode = "None"
    matches: list[PassthroughMatch] = []
    for m in matched:
        conf = m.policy.spec.get("default")
        if not isinstance(conf, dict):
            continue
        if conf.get("passthroughMode") in ("All", "Matched", "None"):
            mode = conf["passthroughMode"]
        for item in as_list(conf.get("appendMatch")):
            if isinstance(item, dict):
                matches.append(_match(item))
    return Passthrough(
        mode=mode,
        matches=tuple(matches) if mode == "Matched" else (),
        sources=tuple(source_of(m.policy) for m in matched),
    )


def _match(item: dict[str, Any]) -> PassthroughMatch:
    return PassthroughMatch(
        type=item["type"],
        value=str(item["value"]).lower(),
        port=int(item.get("port") or 0),
        protocol=item.get("protocol") or "tcp",
    )


def _domain_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _address_matches(
    m: PassthroughMatch, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> bool:
    try:
        if m.type == "IP":
            return address == ipaddress.ip_address(m.value)
        return address in ipaddress.ip_network(m.value, strict=False)
    except ValueError:
        return False


def candidates(
    p: Passthrough,
    host: str,
    port: int,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
) -> list[PassthroughMatch]:
    """The entries that admit `host:port` (reached at `address`, None: not resolved yet)
    before the protocol is looked at."""
    out: list[PassthroughMatch] = []
    for m in p.matches:
        if m.port and m.port != port:
            continue
        if m.type == "Domain":
            if _domain_matches(m.value, host):
                out.append(m)
        elif address is not None and _address_matches(m, address):
            out.append(m)
    return out


def protocol_of(first: bytes) -> set[str]:
    """The protocols the application's first bytes can be (empty: none we know)."""
    if first[:1] == b"\x16":
        return {"tls"}
    if first.startswith(_H2_PREFACE[: len(first)]) and len(first) >= 3:
        return {"http2", "grpc"}
    if _HTTP1.match(first):
        return {"http"}
    return set()


def admitted_without_bytes(matches: Sequence[PassthroughMatch]) -> bool:
    return any(m.protocol in ANY_BYTES for m in matches)


def admitted_by_bytes(matches: Sequence[PassthroughMatch], first: bytes) -> bool:
    seen = protocol_of(first)
    return any(m.protocol in seen for m in matches)
