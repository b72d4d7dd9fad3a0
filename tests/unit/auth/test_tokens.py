"""Token issue and verification: every refusal path, and fuzzed input never escapes TokenError."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.auth.tokens import (
    DataplaneClaims,
    KeySet,
    SigningKey,
    TokenError,
    TokenKind,
    UserClaims,
    ZoneClaims,
    ZoneScope,
    issue,
    key_set,
    parse_revocations,
    verify,
    zone_scopes,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
KEY = SigningKey.generate("zone-token-signing-key-1")
OTHER = SigningKey.generate("zone-token-signing-key-1")  # same kid, different key: a forgery
TRUSTED = key_set({KEY.kid: KEY.public_pem})
ZONE = ZoneClaims("zone-1", (ZoneScope.KDS,))


def _zone_token(**kw: object) -> str:
    return issue(ZONE, KEY, HOUR, now=NOW, **kw)  # type: ignore[arg-type]


def test_zone_token_round_trip() -> None:
    got = verify(_zone_token(jti="abc"), TokenKind.ZONE, TRUSTED, now=NOW)
    assert got.claims == ZONE
    assert got.jti == "abc" and got.kid == KEY.kid
    assert got.expires == NOW + HOUR


def test_dataplane_and_user_tokens_round_trip() -> None:
    dp = DataplaneClaims("default", {"kuma.io/service": ("web",)}, "web-1")
    got = verify(issue(dp, KEY, HOUR, now=NOW), TokenKind.DATAPLANE, TRUSTED, now=NOW)
    assert got.claims == dp
    assert isinstance(got.claims, DataplaneClaims) and got.claims.allows_service("web")
    assert not got.claims.allows_service("backend")
    user = UserClaims("admin", ("mesh-system:admin",))
    got = verify(issue(user, KEY, HOUR, now=NOW), TokenKind.USER, TRUSTED, now=NOW)
    assert got.claims == user and isinstance(got.claims, UserClaims) and got.claims.is_admin


@pytest.mark.parametrize("token", [None, "", b""])
def test_no_token(token: str | bytes | None) -> None:
    with pytest.raises(TokenError, match=r"^no token$"):
        verify(token, TokenKind.ZONE, TRUSTED, now=NOW)


def test_forged_signature() -> None:
    forged = issue(ZONE, OTHER, HOUR, now=NOW)
    with pytest.raises(TokenError, match="invalid signature"):
        verify(forged, TokenKind.ZONE, TRUSTED, now=NOW)


def test_tampered_payload() -> None:
    head, body, sig = _zone_token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["zone"] = "zone-2"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="invalid signature"):
        verify(f"{head}.{body}.{sig}", TokenKind.ZONE, TRUSTED, now=NOW)


def test_expired() -> None:
    with pytest.raises(TokenError, match="expired"):
        verify(_zone_token(), TokenKind.ZONE, TRUSTED, now=NOW + HOUR)


def test_revoked() -> None:
    trusted = KeySet(TRUSTED.keys, frozenset({"abc"}))
    with pytest.raises(TokenError, match="token abc is revoked"):
        verify(_zone_token(jti="abc"), TokenKind.ZONE, trusted, now=NOW)


def test_unknown_or_retired_key() -> None:
    retired = SigningKey.generate("zone-token-signing-key-0")
    with pytest.raises(TokenError, match="unknown key 'zone-token-signing-key-0'"):
        verify(issue(ZONE, retired, HOUR, now=NOW), TokenKind.ZONE, TRUSTED, now=NOW)


def test_several_keys_valid_at_once() -> None:
    new = SigningKey.generate("zone-token-signing-key-2")
    both = key_set({KEY.kid: KEY.public_pem, new.kid: new.public_pem})
    for key in (KEY, new):
        verify(issue(ZONE, key, HOUR, now=NOW), TokenKind.ZONE, both, now=NOW)


def test_a_token_of_another_kind_is_refused() -> None:
    user = issue(UserClaims("admin", ("mesh-system:admin",)), KEY, HOUR, now=NOW)
    with pytest.raises(TokenError, match="not a zone token"):
        verify(user, TokenKind.ZONE, TRUSTED, now=NOW)
    with pytest.raises(TokenError, match="not a user token"):
        verify(_zone_token(), TokenKind.USER, TRUSTED, now=NOW)


def test_other_algorithms_are_refused() -> None:
    unsigned = jwt.encode({"aud": "zone"}, None, algorithm="none", headers={"kid": KEY.kid})
    with pytest.raises(TokenError, match="algorithm must be ES256"):
        verify(unsigned, TokenKind.ZONE, TRUSTED, now=NOW)
    hs = jwt.encode({"aud": "zone"}, "x" * 32, algorithm="HS256", headers={"kid": KEY.kid})
    with pytest.raises(TokenError, match="algorithm must be ES256"):
        verify(hs, TokenKind.ZONE, TRUSTED, now=NOW)


def test_missing_claims_are_refused() -> None:
    payload = {"iss": "meshfed", "aud": "zone", "iat": 1, "exp": 2**33, "jti": "x"}
    for drop in ("exp", "jti", "aud", "iss"):
        token = jwt.encode(
            {k: v for k, v in payload.items() if k != drop},
            KEY.private_key,
            algorithm="ES256",
            headers={"kid": KEY.kid},
        )
        with pytest.raises(TokenError, match="malformed"):
            verify(token, TokenKind.ZONE, TRUSTED, now=NOW)
    token = jwt.encode(
        payload | {"zone": "z", "scope": ["root"]},
        KEY.private_key,
        algorithm="ES256",
        headers={"kid": KEY.kid},
    )
    with pytest.raises(TokenError, match="unknown scope"):
        verify(token, TokenKind.ZONE, TRUSTED, now=NOW)


def test_oversized_and_non_ascii() -> None:
    with pytest.raises(TokenError, match="longer than"):
        verify("a" * 10_000, TokenKind.ZONE, TRUSTED, now=NOW)
    with pytest.raises(TokenError, match="not ASCII"):
        verify("é".encode(), TokenKind.ZONE, TRUSTED, now=NOW)


def test_issue_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        issue(ZONE, KEY, dt.timedelta(0))
    with pytest.raises(ValueError):
        issue(ZoneClaims("z", ()), KEY, HOUR)
    with pytest.raises(ValueError):
        issue(DataplaneClaims("default", {}), KEY, HOUR)
    with pytest.raises(ValueError):
        SigningKey.generate("bad kid!")


def test_signing_key_pem_round_trip_and_bad_public_keys() -> None:
    again = SigningKey.from_pem(KEY.kid, KEY.private_pem)
    verify(issue(ZONE, again, HOUR, now=NOW), TokenKind.ZONE, TRUSTED, now=NOW)
    assert key_set({"k": b"not a key"}).keys == {}
    with pytest.raises(ValueError):
        key_set({"k": b"not a key"}, skip_bad=False)


def test_revocations_and_scopes_parse() -> None:
    assert parse_revocations("a, b\nc,,") == {"a", "b", "c"}
    assert zone_scopes(["kds", "ingress"]) == (ZoneScope.KDS, ZoneScope.INGRESS)
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        zone_scopes(["root"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_random_input_is_refused_cleanly(token: str | bytes) -> None:
    with pytest.raises(TokenError):
        verify(token, TokenKind.ZONE, TRUSTED, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_damaged_real_tokens_are_refused_cleanly(data: st.DataObject) -> None:
    token = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(token) - 1))
        token[i] = data.draw(st.integers(0, 255))
    try:
        got = verify(bytes(token), TokenKind.ZONE, TRUSTED, now=NOW)
    except TokenError:
        return
    # What still verifies is the same token (at most padding bits of the base64 changed).
    assert got.claims == ZONE and got.jti == "fixed"


GOOD = issue(ZONE, KEY, HOUR, now=NOW, jti="fixed").encode()


def test_times_out_of_range_or_in_the_future() -> None:
    base = {"iss": "meshfed", "aud": "zone", "jti": "x", "zone": "z", "scope": ["kds"]}
    cases = [
        ({"iat": 1, "exp": 2**60}, "exp is out of range"),
        ({"iat": 1, "exp": "soon"}, "malformed"),
        ({"iat": int((NOW + HOUR).timestamp()), "exp": 2**33}, "issued in the future"),
    ]
    for times, message in cases:
        token = jwt.encode(
            base | times, KEY.private_key, algorithm="ES256", headers={"kid": KEY.kid}
        )
        with pytest.raises(TokenError, match=message):
            verify(token, TokenKind.ZONE, TRUSTED, now=NOW)
