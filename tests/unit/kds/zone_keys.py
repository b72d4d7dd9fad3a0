"""Real zone tokens for in-process KDS tests: one signing key, verified without a store."""

from __future__ import annotations

import datetime as dt

from meshfed.auth.tokens import (
    KeySet,
    SigningKey,
    TokenKind,
    Verified,
    ZoneClaims,
    ZoneScope,
    issue,
    verify,
)
from meshfed.kds.auth import AUTHORIZATION, KdsAuthenticator
from meshfed.kds.stream import CLIENT_ID


class ZoneKeys:
    """Issues zone tokens and verifies them (a TokenVerifier for KdsAuthenticator)."""

    def __init__(self) -> None:
        self.key = SigningKey.generate("zone-token-signing-key-1")
        self.revoked: set[str] = set()

    async def verify(self, token: str | bytes | None, mesh: str = "") -> Verified:
        keys = KeySet({self.key.kid: self.key.private_key.public_key()}, frozenset(self.revoked))
        return verify(token, TokenKind.ZONE, keys)

    def token(
        self,
        zone: str,
        scope: tuple[ZoneScope, ...] = (ZoneScope.KDS,),
        valid_for: dt.timedelta = dt.timedelta(hours=1),
        now: dt.datetime | None = None,
        jti: str | None = None,
    ) -> str:
        return issue(ZoneClaims(zone, scope), self.key, valid_for, now=now, jti=jti)

    def metadata(self, zone: str) -> tuple[tuple[str, str], ...]:
        return ((CLIENT_ID, zone), (AUTHORIZATION, f"Bearer {self.token(zone)}"))

    def authenticator(self) -> KdsAuthenticator:
        return KdsAuthenticator(self)


KEYS = ZoneKeys()
