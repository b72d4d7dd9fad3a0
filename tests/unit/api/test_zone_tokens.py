"""`POST /tokens/zone`: admin only, inputs checked field by field, the token as text/plain,
and a token that the KDS verifier accepts for that zone and scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.auth.credentials import Verifier, ensure_admin_token
from meshfed.auth.tokens import TokenKind, ZoneClaims, ZoneScope
from meshfed.auth.zone_tokens import DEFAULT_SCOPE, ZoneTokenRequest, parse_request
from meshfed.resources.descriptors import Mode
from meshfed.resources.errors import FieldError
from tests.unit.api.conftest import Api, start_api


def test_the_request_defaults() -> None:
    assert parse_request({"zone": "zone-1"}) == ZoneTokenRequest(
        "zone-1", DEFAULT_SCOPE, dt.timedelta(hours=720)
    )
    assert DEFAULT_SCOPE == (ZoneScope.KDS, ZoneScope.INGRESS, ZoneScope.EGRESS)
    got = parse_request({"zone": "z", "scope": ["ingress", "ingress"], "validFor": "90m"})
    assert got == ZoneTokenRequest("z", (ZoneScope.INGRESS,), dt.timedelta(minutes=90))


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], [""]),
        ({}, ["zone"]),
        ({"zone": "Bad Zone!"}, ["zone"]),
        ({"zone": "z" * 64}, ["zone"]),
        ({"zone": "z", "scope": []}, ["scope"]),
        ({"zone": "z", "scope": "kds"}, ["scope"]),
        ({"zone": "z", "scope": ["kds", "root"]}, ["scope[1]"]),
        ({"zone": "z", "validFor": "forever"}, ["validFor"]),
        ({"zone": "z", "validFor": "-1h"}, ["validFor"]),
        ({"zone": "z", "validFor": "20y"}, ["validFor"]),
        ({"zone": "z", "validFor": 3600}, ["validFor"]),
        ({"zone": "z", "admin": True}, ["admin"]),
        ({"scope": ["x"], "validFor": "0"}, ["zone", "scope[0]", "validFor"]),
    ],
)
def test_bad_requests_name_every_bad_field(body: Any, fields: list[str]) -> None:
    errors = parse_request(body)
    assert isinstance(errors, list)
    assert sorted(e.field for e in errors) == sorted(fields)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["zone", "scope", "validFor", "x"]), st.from_type(object)))
def test_any_body_is_parsed_or_refused_never_crashes(body: dict[str, Any]) -> None:
    result = parse_request(body)
    assert isinstance(result, ZoneTokenRequest) or all(isinstance(e, FieldError) for e in result)


@pytest.fixture
async def global_api() -> Any:
    a, client = await start_api(Mode.GLOBAL, anonymous=True)
    try:
        yield a
    finally:
        await client.close()
        await a.store.close()


async def test_an_admin_gets_a_token_the_kds_verifier_accepts(global_api: Api) -> None:
    admin = await ensure_admin_token(global_api.store)
    before = await global_api.snapshot()
    resp = await global_api.client.post(
        "/tokens/zone",
        json={"zone": "zone-1", "scope": ["kds"], "validFor": "1h"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert resp.status == 200 and resp.content_type == "text/plain"
    token = await resp.text()
    verified = await Verifier(global_api.store, TokenKind.ZONE).verify(token)
    assert verified.claims == ZoneClaims("zone-1", (ZoneScope.KDS,))
    left = verified.expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=58) < left <= dt.timedelta(hours=1)
    revision, rows = await global_api.snapshot()
    assert revision >= before[0]  # a signing key may have been made; no Zone, nothing else
    assert not any(r[0] == "Zone" for r in rows)


async def test_only_an_admin_may_issue_and_bad_input_is_400(global_api: Api) -> None:
    body = {"zone": "zone-1"}
    status, err = await global_api.json("POST", "/tokens/zone", json=body)
    assert status == 401 and "admin user token" in err["detail"]
    admin = await ensure_admin_token(global_api.store)
    status, err = await global_api.json(
        "POST",
        "/tokens/zone",
        json={"zone": "Bad!", "scope": ["nope"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert status == 400
    assert {p["field"] for p in err["invalid_parameters"]} == {"zone", "scope[0]"}


async def test_zones_have_no_token_endpoint() -> None:
    a, client = await start_api(Mode.ZONE, anonymous=True, zone="zone-1")
    try:
        resp = await client.post("/tokens/zone", json={"zone": "zone-1"})
        assert resp.status in (404, 405)
    finally:
        await client.close()
        await a.store.close()
