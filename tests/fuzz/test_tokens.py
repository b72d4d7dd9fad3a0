"""Fuzzing token verification (`meshfed.auth.tokens.verify`: every KDS stream, dataplane
stream and API request): any text, a real token with bytes changed, and tokens signed by our
own key with arbitrary claims all end in Verified or TokenError, never another exception; a
changed token is never accepted as anything but itself."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm
from jwt.utils import base64url_encode

from meshfed.auth.tokens import (
    DataplaneClaims,
    SigningKey,
    TokenError,
    TokenKind,
    UserClaims,
    ZoneClaims,
    ZoneScope,
    issue,
    key_set,
    verify,
)
from tests.bounds import fuzz
from tests.fuzz.test_resource_documents import JSON

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
KEY = SigningKey.generate("zone-token-signing-key-1")
TRUSTED = key_set({KEY.kid: KEY.public_pem})
HOUR = dt.timedelta(hours=1)
TOKENS = {
    TokenKind.ZONE: issue(ZoneClaims("zone-1", (ZoneScope.KDS,)), KEY, HOUR, now=NOW),
    TokenKind.DATAPLANE: issue(
        DataplaneClaims("default", {"kuma.io/service": ("web",)}, "web-1"), KEY, HOUR, now=NOW
    ),
    TokenKind.USER: issue(UserClaims("admin", ("mesh-system:admin",)), KEY, HOUR, now=NOW),
}
KINDS = st.sampled_from(list(TokenKind))


def outcome(token: Any, kind: TokenKind) -> str:
    try:
        verify(token, kind, TRUSTED, now=NOW)
    except TokenError as exc:
        assert str(exc)
        return "refused"
    return "verified"


@fuzz(400)
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=300)), kind=KINDS)
def test_any_text(token: str | bytes, kind: TokenKind) -> None:
    assert outcome(token, kind) == "refused"


@fuzz(400)
@given(
    issued=st.sampled_from(list(TokenKind)),
    kind=KINDS,
    flips=st.lists(st.tuples(st.integers(0, 2000), st.characters(max_codepoint=127)), max_size=3),
)
def test_changed_tokens(issued: TokenKind, kind: TokenKind, flips: list[tuple[int, str]]) -> None:
    token = list(TOKENS[issued])
    for pos, char in flips:
        token[pos % len(token)] = char
    changed = "".join(token)
    got = outcome(changed, kind)
    if got == "verified":
        # Base64url has slack bits in its last character: a change there can decode to the
        # same bytes, so an accepted token must be the issued one, for its own kind.
        assert kind == issued
        head, body, sig = changed.split(".")
        assert jwt.utils.base64url_decode(sig) == jwt.utils.base64url_decode(
            TOKENS[issued].split(".")[2]
        )
        assert (head, body) == tuple(TOKENS[issued].split(".")[:2])


@fuzz(400)
@given(
    kind=KINDS,
    payload=st.dictionaries(
        st.sampled_from(
            ["iss", "aud", "jti", "iat", "exp", "zone", "scope", "mesh", "tags", "name", "groups"]
        ),
        JSON,
    ),
    kid=st.one_of(st.just(KEY.kid), st.text(max_size=30), st.integers()),
)
def test_signed_tokens_with_arbitrary_claims(
    kind: TokenKind, payload: dict[str, Any], kid: Any
) -> None:
    """Our own key signs whatever claims: the claim parsing must refuse what is malformed."""
    token = signed({"alg": "ES256", "typ": "JWT", "kid": kid}, payload)
    outcome(token, kind)


def signed(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A JWT signed by our key, built by hand: PyJWT's encode refuses some headers (a kid that
    is not a string) that a hostile client can still send."""
    part = [base64url_encode(json.dumps(obj, allow_nan=True).encode()) for obj in (header, payload)]
    signing_input = b".".join(part)
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, KEY.private_key)
    return (signing_input + b"." + base64url_encode(signature)).decode()
