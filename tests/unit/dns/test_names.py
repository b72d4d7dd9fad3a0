"""Names built from catalog entries: variants, validity, deterministic conflicts."""

from __future__ import annotations

import random

from tests.unit.dns.wire import a_records, query
from zone_cp.dns.answers import DnsTable
from zone_cp.dns.names import ServiceVip, mesh_names


def test_plain_and_zone_pinned_names() -> None:
    names = mesh_names(
        [ServiceVip("backend", None, "127.1.0.1"), ServiceVip("backend", "zone-2", "127.1.0.2")]
    )
    assert names.records == {"backend.mesh": "127.1.0.1", "backend.zone-2.mesh": "127.1.0.2"}
    assert names.skipped == [] and names.conflicts == []


def test_underscore_names_also_answer_with_dots() -> None:
    names = mesh_names(
        [
            ServiceVip("backend_kuma-demo_svc_8080", None, "127.1.0.1"),
            ServiceVip("backend_kuma-demo_svc_8080", "east", "127.1.0.2"),
        ]
    )
    assert names.records == {
        "backend_kuma-demo_svc_8080.mesh": "127.1.0.1",
        "backend.kuma-demo.svc.8080.mesh": "127.1.0.1",
        "backend_kuma-demo_svc_8080.east.mesh": "127.1.0.2",
        "backend.kuma-demo.svc.8080.east.mesh": "127.1.0.2",
    }


def test_variant_is_left_out_when_its_parts_are_not_hostname_labels() -> None:
    names = mesh_names([ServiceVip("a__b", None, "127.1.0.1"), ServiceVip("_x", None, "127.1.0.2")])
    assert names.records == {"a__b.mesh": "127.1.0.1", "_x.mesh": "127.1.0.2"}


def test_invalid_services_and_zones_are_skipped_and_reported() -> None:
    names = mesh_names(
        [
            ServiceVip("ok", None, "127.1.0.1"),
            ServiceVip("has space", None, "127.1.0.2"),
            ServiceVip("dotted.name", None, "127.1.0.3"),
            ServiceVip("-leading", None, "127.1.0.4"),
            ServiceVip("x" * 64, None, "127.1.0.5"),
            ServiceVip("ünicode", None, "127.1.0.6"),
            ServiceVip("ok", "bad zone", "127.1.0.7"),
            ServiceVip("", None, "127.1.0.8"),
        ]
    )
    assert names.records == {"ok.mesh": "127.1.0.1"}
    assert len(names.skipped) == 7
    assert "'ok' in zone 'bad zone'" in names.skipped


def test_names_are_lowercased() -> None:
    assert mesh_names([ServiceVip("Backend", "Zone-1", "127.1.0.1")]).records == {
        "backend.zone-1.mesh": "127.1.0.1"
    }


def test_conflicts_prefer_exact_names_and_are_deterministic() -> None:
    entries = [
        ServiceVip("a_b", None, "127.1.0.1"),  # variant a.b.mesh
        ServiceVip("a", "b", "127.1.0.2"),  # exact zone-pinned a.b.mesh wins over the variant
        ServiceVip("web", None, "127.1.0.3"),
        ServiceVip("WEB", None, "127.1.0.4"),  # same name after lowercasing: "WEB" < "web"
    ]
    first = mesh_names(entries)
    assert first.records["a.b.mesh"] == "127.1.0.2"
    assert first.records["web.mesh"] == "127.1.0.4"
    assert sorted(first.conflicts) == ["a.b.mesh", "web.mesh"]
    for seed in range(20):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        assert mesh_names(shuffled).records == first.records


def test_names_feed_a_table() -> None:
    names = mesh_names([ServiceVip("backend_v2", "zone-2", "127.1.0.9")])
    table = DnsTable(names.pairs())
    assert a_records(table.respond(query("backend.v2.zone-2.mesh"))) == ["127.1.0.9"]
    assert a_records(table.respond(query("backend_v2.zone-2.mesh"))) == ["127.1.0.9"]


def test_custom_domain_and_length_limit() -> None:
    names = mesh_names([ServiceVip("svc", None, "10.0.0.1")], domain="Example.COM.")
    assert names.records == {"svc.example.com": "10.0.0.1"}
    long_zone = "z" * 63
    long = mesh_names(
        [ServiceVip("s" * 63, long_zone, "10.0.0.2")], domain=".".join(["d" * 60] * 3)
    )
    assert long.records == {} and len(long.skipped) == 1
