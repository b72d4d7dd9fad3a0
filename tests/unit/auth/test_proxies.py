"""The pure decisions of proxy authentication (meshfed.auth.proxies): which token lets which
proxy connect, tested directly, and fuzzed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.auth.proxies import (
    BadCredentials,
    bearer_of,
    claimed_mesh,
    dataplane_refusal,
    egress_refusal,
    ingress_refusal,
)
from meshfed.auth.tokens import DataplaneClaims, ZoneClaims, ZoneScope
from meshfed.resources.model import Resource
from tests.unit.policy.factories import dataplane, inbound

WEB = dataplane("web-1", inbound("web", 8080, tags={"version": "v1"}))


def claims(*services: str, mesh: str = "default", name: str = "", **tags: tuple[str, ...]) -> Any:
    return DataplaneClaims(mesh, {"kuma.io/service": services, **tags}, name)


def test_bearer_of_metadata() -> None:
    assert bearer_of(None) is None
    assert bearer_of([("user-agent", "x")]) is None
    assert bearer_of([("authorization", "Bearer abc")]) == "abc"
    assert bearer_of([("Authorization", b"bearer  abc ")]) == "abc"
    for bad, reason in [
        ([("authorization", "Basic abc")], "must be 'Bearer <token>'"),
        ([("authorization", "Bearer ")], "must be 'Bearer <token>'"),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], "more than one"),
        ([("authorization", b"Bearer \xff")], "not ASCII"),
        ([("authorization", "Bearer " + "a" * 9000)], "longer than"),
    ]:
        with pytest.raises(BadCredentials, match=reason):
            bearer_of(bad)


def _token(payload: object) -> str:
    def seg(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{seg(b'{}')}.{seg(json.dumps(payload).encode())}.sig"


def test_claimed_mesh_reads_the_unverified_claim() -> None:
    assert claimed_mesh(_token({"mesh": "other"})) == "other"
    assert claimed_mesh(_token({"mesh": 3})) is None
    assert claimed_mesh(_token(["mesh"])) is None
    assert claimed_mesh("a.!!!.c") is None
    assert claimed_mesh("nodots") is None


def test_a_token_covering_the_dataplane_allows_it() -> None:
    assert dataplane_refusal(claims("web"), WEB) is None
    assert dataplane_refusal(claims("web", "other"), WEB) is None
    assert dataplane_refusal(claims("web", name="web-1"), WEB) is None
    assert dataplane_refusal(claims("web", version=("v1", "v2")), WEB) is None


@pytest.mark.parametrize(
    ("token", "dp", "reason"),
    [
        (claims("backend"), WEB, "inbound[0] has kuma.io/service='web'"),
        (claims("web", mesh="other"), WEB, "for mesh 'other', not mesh 'default'"),
        (claims("web", name="web-2"), WEB, "named 'web-2', not 'web-1'"),
        (claims("web", version=("v2",)), WEB, "inbound[0] has version='v1'"),
        (claims("web", zone=("z",)), WEB, "inbound[0] has zone=no value"),
        (
            claims("web"),
            dataplane("two", inbound("web", 1), inbound("backend", 2)),
            "inbound[1] has kuma.io/service='backend'",
        ),
    ],
)
def test_a_token_not_covering_the_dataplane_refuses_it(
    token: DataplaneClaims, dp: Resource, reason: str
) -> None:
    refused = dataplane_refusal(token, dp)
    assert refused is not None and reason in refused


def test_ingress_tokens() -> None:
    assert ingress_refusal(ZoneClaims("zone-1", (ZoneScope.INGRESS,)), "zone-1") is None
    both = ZoneClaims("zone-1", (ZoneScope.KDS, ZoneScope.INGRESS))
    assert ingress_refusal(both, "zone-1") is None
    kds = ingress_refusal(ZoneClaims("zone-1", (ZoneScope.KDS,)), "zone-1")
    assert kds == "the zone token has scope kds, not ingress"
    other = ingress_refusal(ZoneClaims("zone-2", (ZoneScope.INGRESS,)), "zone-1")
    assert other == "the zone token is for zone 'zone-2', not this zone 'zone-1'"


NAMES = st.text("abcw-eb", min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    services=st.lists(NAMES, min_size=1, max_size=3),
    inbound_services=st.lists(NAMES, min_size=1, max_size=3),
    mesh=st.sampled_from(["default", "other"]),
    name=st.sampled_from(["", "web-1", "web-2"]),
)
def test_fuzz_a_dataplane_is_allowed_exactly_when_the_token_covers_it(
    services: list[str], inbound_services: list[str], mesh: str, name: str
) -> None:
    """A certificate is only ever issued for services the token names."""
    dp = dataplane("web-1", *(inbound(s, 1000 + i) for i, s in enumerate(inbound_services)))
    refused = dataplane_refusal(claims(*services, mesh=mesh, name=name), dp)
    allowed = mesh == "default" and name in ("", "web-1") and set(inbound_services) <= set(services)
    assert (refused is None) == allowed, refused


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["authorization", "Authorization", "x-other"]),
            st.one_of(st.text(max_size=100), st.binary(max_size=100)),
        ),
        max_size=3,
    )
)
def test_fuzz_metadata_never_raises_anything_but_bad_credentials(
    metadata: list[tuple[str, str | bytes]],
) -> None:
    try:
        token = bearer_of(metadata)
    except BadCredentials:
        return
    assert token is None or (token and token == token.strip())
    if token is not None:
        claimed_mesh(token)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.recursive(st.none(), st.lists, max_leaves=5)))
def test_fuzz_claimed_mesh(junk: object) -> None:
    text = junk if isinstance(junk, str) else _token(junk)
    mesh = claimed_mesh(text)
    assert mesh is None or isinstance(mesh, str)


def test_egress_tokens() -> None:
    assert egress_refusal(ZoneClaims("zone-1", (ZoneScope.EGRESS,)), "zone-1") is None
    everything = ZoneClaims("zone-1", (ZoneScope.KDS, ZoneScope.INGRESS, ZoneScope.EGRESS))
    assert egress_refusal(everything, "zone-1") is None
    ingress = egress_refusal(ZoneClaims("zone-1", (ZoneScope.INGRESS,)), "zone-1")
    assert ingress == "the zone token has scope ingress, not egress"
    other = egress_refusal(ZoneClaims("zone-2", (ZoneScope.EGRESS,)), "zone-1")
    assert other == "the zone token is for zone 'zone-2', not this zone 'zone-1'"
