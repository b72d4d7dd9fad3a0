"""MeshService hostnames under `mesh.local` (issue 17) beside the `.mesh` names: one server,
two authoritative domains, each with its own NXDOMAIN and SOA; other names still forwarded."""

from __future__ import annotations

from meshfed.config import Address
from tests.unit.dns.wire import a_records, parse, query
from zone_cp.dns.answers import RCODE_NXDOMAIN, DnsTable, Forward
from zone_cp.dns.names import NameSet
from zone_cp.dns_wiring import ZoneDns


def tables(forwarding: bool = False) -> DnsTable:
    local = DnsTable(
        [("backend.svc.zone-2.mesh.local", "127.1.0.9")], domain="mesh.local", forwarding=forwarding
    )
    return DnsTable([("backend.mesh", "127.1.0.1")], forwarding=forwarding, also=local)


def test_both_domains_answer() -> None:
    table = tables()
    assert a_records(table.respond(query("backend.mesh"))) == ["127.1.0.1"]
    assert a_records(table.respond(query("Backend.SVC.zone-2.mesh.local"))) == ["127.1.0.9"]
    assert table.size == 2


def test_each_domain_has_its_own_nxdomain_and_soa() -> None:
    reply = parse(tables().respond(query("nosuch.svc.mesh.local")))
    assert reply.header.rcode == RCODE_NXDOMAIN
    assert str(reply.auth[0].rname) == "mesh.local."
    reply = parse(tables().respond(query("nosuch.mesh")))
    assert str(reply.auth[0].rname) == "mesh."


def test_the_slow_path_reaches_the_second_domain_too() -> None:
    # class ANY takes the dnslib path
    q = query("backend.svc.zone-2.mesh.local", qclass=255)
    assert a_records(tables().respond(q)) == ["127.1.0.9"]


def test_other_names_are_still_forwarded() -> None:
    assert isinstance(tables(forwarding=True).respond(query("example.com")), Forward)


def test_zone_dns_splits_the_names_by_domain() -> None:
    dns = ZoneDns(Address("127.0.0.1", 0))
    names = NameSet({"backend.mesh": "127.1.0.1", "backend.svc.mesh.local": "127.1.0.2"})
    dns.update(names)
    assert a_records(dns.server.table.respond(query("backend.svc.mesh.local"))) == ["127.1.0.2"]
    assert a_records(dns.server.table.respond(query("backend.mesh"))) == ["127.1.0.1"]
