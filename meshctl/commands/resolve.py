"""`meshctl resolve NAME --zone Z`: ask a zone's DNS server, as an application would.

The query is a real DNS query (UDP, then TCP if the answer is truncated, or TCP with `--tcp`)
to the zone's DNS address, found in this order: `--dns`; the state file of `meshctl up`
(`--data-dir`/`--state-file` when given); `GET /` of the API when it is that zone's; the state
file of `meshctl up` in its default place. When the zone's API is known too, the answer is
matched against its services (`GET /meshes/{mesh}/services`) to say which zones serve the name.
"""

from __future__ import annotations

import argparse
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from meshctl.client import ApiClient
from meshctl.context import Context
from meshctl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from meshctl.output import dump_json
from meshctl.up.launch import DEFAULT_DATA_DIR, state_path
from meshctl.up.state import ROLE_ZONE, StateFileError, UpState, read_state
from meshfed.config import Address, parse_address

DEFAULT_MESH = "default"
MESHES_SUFFIX = ".meshes.mesh"
QUERY_TYPES = ("A", "AAAA", "ANY", "SOA", "TXT", "SRV")


@dataclass(frozen=True)
class Target:
    """Where to ask: the DNS address, and the zone and its API when known."""

    dns: Address
    zone: str | None
    api: str | None
    found_in: str


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "resolve",
        parents=[common],
        help="resolve a .mesh name with a zone's DNS server",
        description="Send a DNS query for NAME to a zone's DNS server and print the answer "
        "and which zone(s) serve it. The server is --dns, or the zone's address from the "
        "state file of `meshctl up`, or from the zone's API (--api pointing at the zone).",
    )
    p.add_argument("name", metavar="NAME", help="e.g. backend.mesh or backend.zone-2.mesh")
    p.add_argument("--zone", metavar="ZONE", help="the zone whose DNS server to ask")
    p.add_argument("--dns", metavar="HOST:PORT", help="ask this DNS server directly")
    p.add_argument(
        "--type", choices=QUERY_TYPES, default="A", type=str.upper, help="query type (A)"
    )
    p.add_argument("--tcp", action="store_true", help="query over TCP instead of UDP")
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR", help=f"of meshctl up (default {DEFAULT_DATA_DIR})"
    )
    p.add_argument("--state-file", type=Path, metavar="FILE", help="state file of meshctl up")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=run)


# -- finding the zone's DNS server ------------------------------------------------------------


def _address(text: str, what: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise CliError(f"{what} {text!r} is not HOST:PORT: {exc}", EXIT_USAGE) from None


def from_state(state: UpState, zone: str | None, where: str) -> Target:
    zones = [c for c in state.components if c.role == ROLE_ZONE]
    if zone is None:
        if len(zones) != 1:
            names = ", ".join(c.name for c in zones) or "none"
            raise CliError(f"which zone? give --zone (zones in {where}: {names})", EXIT_USAGE)
        zone = zones[0].zone or zones[0].name
    comp = next((c for c in zones if (c.zone or c.name) == zone), None)
    if comp is None:
        names = ", ".join(c.name for c in zones) or "none"
        raise CliError(f"no zone {zone!r} in {where} (zones: {names})", EXIT_USAGE)
    if not comp.dns:
        raise CliError(f"{where} records no DNS address for {zone} (an older meshctl up?)")
    return Target(_address(comp.dns, "DNS address"), zone, comp.api or None, where)


def _state(path: Path) -> UpState | None:
    try:
        return read_state(path)
    except StateFileError:
        return None


def from_api(client: ApiClient, zone: str | None) -> Target | None:
    """The target when the API is a zone's (and the zone asked for, if any); else None."""
    try:
        info = client.get("/")
    except CliError:
        return None
    if not isinstance(info, dict) or info.get("mode") != "zone":
        return None
    their_zone, dns = info.get("zone"), info.get("dns")
    if zone is not None and their_zone != zone:
        return None
    if not isinstance(dns, str):
        raise CliError(f"the zone API at {client.base_url} does not say where its DNS is")
    return Target(_address(dns, "DNS address"), str(their_zone), client.base_url, "the zone API")


def find_target(args: argparse.Namespace, ctx: Context) -> Target:
    if args.dns:
        return Target(_address(args.dns, "--dns"), args.zone, None, "--dns")
    if args.data_dir or args.state_file:
        data_dir = args.data_dir or Path(DEFAULT_DATA_DIR)
        path = state_path(data_dir.absolute(), args.state_file)
        try:
            state = read_state(path)
        except StateFileError as exc:
            raise CliError(str(exc)) from None
        return from_state(state, args.zone, str(path))
    target = from_api(ctx.client(), args.zone)
    if target is not None:
        return target
    path = state_path(Path(DEFAULT_DATA_DIR).absolute(), None)
    found = _state(path)
    if found is not None:
        return from_state(found, args.zone, str(path))
    raise CliError(
        "cannot tell where the zone's DNS server is",
        EXIT_USAGE,
        [
            "give --dns HOST:PORT,",
            "or --api with the zone's API (its GET / names its DNS address),",
            "or run where `meshctl up` keeps its state (or pass its --data-dir)",
        ],
    )


# -- asking -----------------------------------------------------------------------------------


def _exchange_tcp(packet: bytes, dns: Address, timeout: float) -> bytes:
    with socket.create_connection((dns.host, dns.port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">H", len(packet)) + packet)
        head = _read_exactly(sock, 2)
        return _read_exactly(sock, struct.unpack(">H", head)[0])


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-answer")
        data += chunk
    return data


def _exchange_udp(packet: bytes, dns: Address, timeout: float) -> bytes:
    family = socket.AF_INET6 if ":" in dns.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((dns.host, dns.port))
        sock.send(packet)
        while True:
            reply = sock.recv(65535)
            if reply[:2] == packet[:2]:
                return reply


def ask(name: str, qtype: str, dns: Address, tcp: bool, timeout: float) -> tuple[DNSRecord, str]:
    """(reply, transport used). UDP answers with TC set are asked again over TCP."""
    query = DNSRecord.question(name, qtype)
    packet = bytes(query.pack())
    try:
        if not tcp:
            reply = DNSRecord.parse(_exchange_udp(packet, dns, timeout))
            if not reply.header.tc:
                return reply, "udp"
        return DNSRecord.parse(_exchange_tcp(packet, dns, timeout)), "tcp"
    except TimeoutError:
        raise CliError(
            f"no answer from the DNS server at {dns} within {timeout:g}s "
            "(is the zone control plane running?)"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot reach the DNS server at {dns}: {exc.strerror or exc}") from None
    except Exception as exc:  # dnslib raises several types on a malformed reply
        raise CliError(f"the DNS server at {dns} sent an unreadable answer: {exc}") from None


# -- which zones serve it ---------------------------------------------------------------------


def mesh_of(name: str) -> str:
    """The mesh a name belongs to: `<svc>[.<zone>].<mesh>.meshes.mesh`, else `default`."""
    text = name.rstrip(".").lower()
    if text.endswith(MESHES_SUFFIX):
        return text[: -len(MESHES_SUFFIX)].rsplit(".", 1)[-1]
    return DEFAULT_MESH


def served_by(services: Any, addresses: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """(service, [{zone, instances}]) for the first answered address the zone API knows."""
    items = services.get("items") if isinstance(services, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        raw = item.get("zoneVips")
        pinned: dict[str, Any] = raw if isinstance(raw, dict) else {}
        zones = [z for z in item.get("zones") or [] if isinstance(z, dict)]
        for address in addresses:
            if address == item.get("vip"):
                return str(item.get("service")), zones
            for zone, vip in pinned.items():
                if vip == address:
                    return str(item.get("service")), [z for z in zones if z.get("zone") == zone]
    return None, []


def _zones_text(zones: list[dict[str, Any]]) -> str:
    parts = []
    for z in zones:
        n = z.get("instances")
        parts.append(f"{z.get('zone')} ({n} instance{'' if n == 1 else 's'})")
    return ", ".join(parts) or "no zone"


def run(args: argparse.Namespace, ctx: Context) -> int:
    target = find_target(args, ctx)
    reply, transport = ask(args.name, args.type, target.dns, args.tcp, min(ctx.timeout, 5.0))
    rcode = RCODE.get(reply.header.rcode)
    answers = [
        {"name": str(rr.rname), "ttl": rr.ttl, "type": QTYPE.get(rr.rtype), "value": str(rr.rdata)}
        for rr in reply.rr
    ]
    addresses = [a["value"] for a in answers if a["type"] == "A"]
    mesh = mesh_of(args.name)
    service: str | None = None
    zones: list[dict[str, Any]] = []
    note = ""
    if addresses and target.api:
        try:
            body = ApiClient(target.api, ctx.timeout).get(f"/meshes/{mesh}/services")
            service, zones = served_by(body, addresses)
        except CliError as exc:
            note = f"(could not ask the zone API which zones serve it: {exc.message})"
    server = f"{target.zone or 'zone'} DNS {target.dns}"
    if args.output == "json":
        result = {
            "name": args.name,
            "type": args.type,
            "server": str(target.dns),
            "zone": target.zone,
            "transport": transport,
            "rcode": rcode,
            "answers": answers,
            "mesh": mesh,
            "service": service,
            "servedBy": zones,
        }
        ctx.stdout.write(dump_json(result))
        return 0 if rcode == "NOERROR" else EXIT_FAILED
    if rcode != "NOERROR":
        raise CliError(f"{args.name}: {rcode} from {server} ({transport})")
    print(f";; {server} ({transport}): {rcode}", file=ctx.stdout)
    for a in answers:
        print(f"{a['name']}\t{a['ttl']}\tIN\t{a['type']}\t{a['value']}", file=ctx.stdout)
    if not answers:
        print(f"(no {args.type} records for {args.name})", file=ctx.stdout)
    if service is not None:
        print(f"service {service} (mesh {mesh}), served by {_zones_text(zones)}", file=ctx.stdout)
    elif note:
        print(note, file=ctx.stderr)
    return 0
