"""How synced resources are named, labelled and routed, and that versions survive renaming."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from meshfed.kds import naming
from meshfed.kds.messages import to_wire
from meshfed.resources.codec import check_name
from meshfed.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    Key,
    Meta,
    Resource,
)
from meshfed.resources.types import default_registry


def _dp(name: str, mesh: str = "default", labels: dict[str, str] | None = None) -> Resource:
    return Resource("Dataplane", Meta(name=name, mesh=mesh, labels=dict(labels or {})), {"a": 1})


def test_directions_come_from_the_descriptors() -> None:
    reg = default_registry()
    down = set(naming.types_global_to_zone(reg))
    up = set(naming.types_zone_to_global(reg))
    assert {"Mesh", "Secret", "MeshTrafficPermission", "MeshTimeout", "ZoneIngress"} <= down
    assert {"Dataplane", "DataplaneInsight", "ZoneIngress", "ZoneIngressInsight"} <= up
    assert not {"Dataplane", "DataplaneInsight", "Zone", "ZoneInsight"} & down
    assert not {"Mesh", "Secret", "Zone", "ZoneInsight"} & up
    assert "MeshTrafficPermission" in up  # zone-originated policies (decision 149)


def test_zone_names_do_not_collide_and_stay_valid() -> None:
    a = naming.zone_resource_name("web", "default", "zone-1")
    b = naming.zone_resource_name("web", "default", "zone-2")
    c = naming.zone_resource_name("web", "other", "zone-1")
    assert len({a, b, c}) == 3
    assert a.startswith("web.") and a == naming.zone_resource_name("web", "default", "zone-1")
    # separators cannot be shifted between fields to forge a collision
    assert naming.zone_resource_name("b", "a", "c") != naming.zone_resource_name("a", "b", "c")


_PART = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


@given(st.from_regex(rf"{_PART}(\.{_PART}){{0,5}}", fullmatch=True).filter(lambda n: len(n) <= 253))
def test_zone_name_is_a_valid_resource_name(name: str) -> None:
    """Every valid name (Kuma's: an RFC 1123 subdomain) keeps a valid name at the global,
    also when cut to make room for the hash."""
    out = naming.zone_resource_name(name, "default", "zone-1")
    assert check_name(out, "name") == []


def test_zone_to_global_labels_and_version_survive_renaming() -> None:
    local = _dp("web-1", labels={"team": "a", LABEL_ZONE: "forged"})
    wire_form = naming.outgoing_from_zone(local, "zone-1")
    assert wire_form.meta.labels == {
        "team": "a",
        LABEL_ORIGIN: "zone",
        LABEL_ZONE: "zone-1",
        LABEL_DISPLAY_NAME: "web-1",
    }
    assert local.meta.labels[LABEL_ZONE] == "forged"  # the input is not modified
    stored = naming.stored_at_global(wire_form, "zone-1")
    assert stored.meta.name == naming.zone_resource_name("web-1", "default", "zone-1")
    assert stored.meta.labels == wire_form.meta.labels
    assert stored.content_hash() == to_wire(wire_form).version
    held = naming.held_at_global([stored, _dp("own-global-thing")], "zone-1")
    assert held == {"Dataplane": {Key("default", "web-1"): to_wire(wire_form).version}}
    assert naming.held_at_global([stored], "zone-2") == {}


def test_stored_at_global_leaves_what_it_received_as_it_was() -> None:
    """Decision 190: it shares the body instead of copying it, and builds new metadata."""
    received = naming.outgoing_from_zone(_dp("web-1", labels={"team": "a"}), "zone-1")
    received.meta.version = "7"
    before = copy.deepcopy(received)
    stored = naming.stored_at_global(received, "zone-1")
    assert received == before  # name, labels, version, body
    assert stored.meta.version == "" and stored.meta.name != received.meta.name
    assert stored.spec is received.spec  # shared: the stores copy what they keep
    assert stored.meta.labels is not received.meta.labels


def test_global_trusts_the_stream_not_the_payload_for_the_zone() -> None:
    forged = _dp("web", labels={LABEL_ZONE: "zone-2", LABEL_ORIGIN: "global"})
    stored = naming.stored_at_global(forged, "zone-1")
    assert stored.meta.labels[LABEL_ZONE] == "zone-1"
    assert stored.meta.labels[LABEL_ORIGIN] == "zone"
    assert stored.meta.name == naming.zone_resource_name("web", "default", "zone-1")


def test_global_to_zone_form_and_held_rebuild() -> None:
    policy = Resource(
        "MeshTrafficPermission", Meta(name="allow", mesh="default", version="42"), {"x": 1}
    )
    out = naming.outgoing_from_global(policy)
    assert out.meta.labels == {LABEL_ORIGIN: "global"} and out.meta.version == ""
    local = _dp("mine")
    held = naming.held_in_zone([out, local])
    assert held == {"MeshTrafficPermission": {Key("default", "allow"): to_wire(out).version}}


def test_routing_rules() -> None:
    reg = default_registry()
    zi, dp, mtp = reg.get("ZoneIngress"), reg.get("Dataplane"), reg.get("MeshTrafficPermission")
    ingress = Resource(
        "ZoneIngress", Meta(name="zi.abc", labels={LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"})
    )
    assert naming.sends_to_zone(zi, ingress, "zone-2")
    assert not naming.sends_to_zone(zi, ingress, "zone-1")  # never back to its own zone
    dataplane = _dp("d", labels={LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"})
    assert not naming.sends_to_zone(dp, dataplane, "zone-2")
    assert naming.sends_to_zone(mtp, Resource("MeshTrafficPermission", Meta(name="p")), "zone-1")
    # a zone pushes up its own inventory, not what it got from the global
    assert naming.sends_to_global(zi, Resource("ZoneIngress", Meta(name="mine")))
    relayed = Resource("ZoneIngress", Meta(name="zi.abc", labels={LABEL_ORIGIN: "global"}))
    assert not naming.sends_to_global(zi, relayed)
    copy = Resource("MeshTrafficPermission", Meta(name="p", labels={LABEL_ORIGIN: "global"}))
    assert not naming.sends_to_global(mtp, copy)
    # a policy applied at the zone goes up, and never on to other zones (decision 149)
    own = Resource("MeshTrafficPermission", Meta(name="p", labels={LABEL_ORIGIN: "zone"}))
    assert naming.sends_to_global(mtp, own)
    own.meta.labels[LABEL_ZONE] = "zone-1"
    assert not naming.sends_to_zone(mtp, own, "zone-2")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), _JSON, max_size=4),
)
def test_wire_version_is_the_content_hash(labels: dict[str, str], spec: dict[str, object]) -> None:
    """to_wire encodes the body once for both the wire and the version: the version stays
    the stored copy's content_hash (what a restarted receiver rebuilds), byte for byte."""
    res = Resource("Dataplane", Meta(name="dp", mesh="default", labels=labels), dict(spec))
    assert to_wire(res).version == res.content_hash()


def test_outgoing_forms_share_the_body_but_never_change_the_original() -> None:
    ingress = Resource("ZoneIngress", Meta(name="zi", labels={"a": "b"}), {"zone": "z", "n": [1]})
    out = naming.with_ingress_zone(naming.outgoing_from_zone(ingress, "zone-1"), "zone-1")
    assert out.spec == {"zone": "zone-1", "n": [1]}
    assert ingress.spec == {"zone": "z", "n": [1]} and ingress.meta.labels == {"a": "b"}
    down = naming.outgoing_from_global(ingress)
    assert down.meta.labels == {"a": "b", LABEL_ORIGIN: "global"}
    assert ingress.meta.labels == {"a": "b"}
