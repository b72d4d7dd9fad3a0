"""The cache of verified tokens: a repeated token costs a lookup, and security is unchanged:
a revoked token, a key rotated away, an expired token are refused at once (decision 123)."""

from __future__ import annotations

import datetime as dt

import pytest

from meshfed.auth import keyring
from meshfed.auth.credentials import Verifier, ensure_signing_key
from meshfed.auth.tokens import (
    DataplaneClaims,
    SigningKey,
    TokenError,
    TokenKind,
    VerifiedTokens,
    ZoneClaims,
    ZoneScope,
    issue,
    key_set,
)
from meshfed.store.memory import MemoryStore

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
KEY = SigningKey.generate("zone-token-signing-key-1")
NEW_KEY = SigningKey.generate("zone-token-signing-key-2")
TRUSTED = key_set({KEY.kid: KEY.public_pem})
ZONE = ZoneClaims("zone-1", (ZoneScope.KDS,))


def token(jti: str = "t1", key: SigningKey = KEY) -> str:
    return issue(ZONE, key, HOUR, now=NOW, jti=jti)


def test_a_repeated_token_is_answered_from_the_cache() -> None:
    cache = VerifiedTokens(TokenKind.ZONE)
    repeated = token()  # ES256 signatures are randomised: each issue is another token
    first = cache.verify(repeated, TRUSTED, now=NOW)
    # a fresh but equal key set (the verifier re-reads its keys every second) still hits
    again = cache.verify(repeated, key_set({KEY.kid: KEY.public_pem}), now=NOW)
    assert again is first and cache.hits == 1


def test_a_revoked_token_is_refused_at_once() -> None:
    cache = VerifiedTokens(TokenKind.ZONE)
    cached = token("t1")
    cache.verify(cached, TRUSTED, now=NOW)
    revoked = key_set({KEY.kid: KEY.public_pem}, {"t1"})
    with pytest.raises(TokenError, match="revoked"):
        cache.verify(cached, revoked, now=NOW)
    assert cache.hits == 0


def test_a_token_of_a_key_rotated_away_is_refused_at_once() -> None:
    cache = VerifiedTokens(TokenKind.ZONE)
    cached = token("t1")
    cache.verify(cached, TRUSTED, now=NOW)
    rotated = key_set({NEW_KEY.kid: NEW_KEY.public_pem})
    with pytest.raises(TokenError, match="unknown key"):
        cache.verify(cached, rotated, now=NOW)
    assert cache.hits == 0


def test_a_cached_token_is_refused_from_its_expiry() -> None:
    cache = VerifiedTokens(TokenKind.ZONE)
    cached = token("t1")
    cache.verify(cached, TRUSTED, now=NOW)
    with pytest.raises(TokenError, match="expired"):
        cache.verify(cached, TRUSTED, now=NOW + HOUR)
    assert cache.hits == 0


def test_refusals_are_not_cached_and_the_size_is_bounded() -> None:
    cache = VerifiedTokens(TokenKind.ZONE, size=2)
    forged = token(key=SigningKey.generate(KEY.kid))  # our key id, another key
    for _ in range(2):
        with pytest.raises(TokenError, match="invalid signature"):
            cache.verify(forged, TRUSTED, now=NOW)
    assert len(cache) == 0
    a, b, c = (token(jti) for jti in "abc")
    for t in (a, b, c):
        cache.verify(t, TRUSTED, now=NOW)
    assert len(cache) == 2
    cache.verify(a, TRUSTED, now=NOW)  # the oldest went: verified again
    assert cache.hits == 0
    cache.verify(a, TRUSTED, now=NOW)
    assert cache.hits == 1


def test_another_kind_is_refused_even_when_cached_as_its_own() -> None:
    dp_key = SigningKey.generate("dataplane-token-signing-key-1")
    dp_token = issue(DataplaneClaims("default", {"kuma.io/service": ("web",)}), dp_key, HOUR)
    zone_cache = VerifiedTokens(TokenKind.ZONE)
    with pytest.raises(TokenError, match="not a zone token"):
        zone_cache.verify(dp_token, key_set({dp_key.kid: dp_key.public_pem}))


async def test_the_verifier_refuses_a_cached_token_once_revoked() -> None:
    store = MemoryStore()
    key = await ensure_signing_key(store, TokenKind.ZONE)
    zone_token = issue(ZONE, key, HOUR, jti="t1")
    verifier = Verifier(store, TokenKind.ZONE, cache_seconds=0)
    await verifier.verify(zone_token)
    await verifier.verify(zone_token)
    assert verifier.verified.hits == 1
    await store.create(keyring.make_secret(TokenKind.ZONE, "zone-token-revocations", b"t1"))
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(zone_token)
