"""Who may talk KDS: the pure decision (metadata + verification result -> accept or why not),
and a real in-process KdsServer fed random metadata (hypothesis): refused cleanly, no crash,
no session, no hook."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.auth.tokens import (
    TokenError,
    TokenKind,
    UserClaims,
    Verified,
    ZoneClaims,
    ZoneScope,
)
from meshfed.kds.auth import (
    AUTHORIZATION,
    CLIENT_INSTANCE,
    KdsRequest,
    Refusal,
    decide,
    read_request,
    read_token_file,
)
from meshfed.kds.stream import CLIENT_ID
from tests.support import free_port
from tests.unit.kds.test_stream import Hooks, fast_global, serving
from tests.unit.kds.zone_keys import KEYS

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
BAD = grpc.StatusCode.INVALID_ARGUMENT


def verified(zone: str, *scope: ZoneScope) -> Verified:
    return Verified(
        TokenKind.ZONE,
        ZoneClaims(zone, scope or (ZoneScope.KDS,)),
        "jti-1",
        "zone-token-signing-key-1",
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("metadata", "code", "fragment"),
    [
        ((), BAD, "missing gRPC metadata 'client-id'"),
        (((AUTHORIZATION, "Bearer t"),), BAD, "missing gRPC metadata 'client-id'"),
        (((CLIENT_ID, "Bad Zone!"), (AUTHORIZATION, "Bearer t")), BAD, "invalid zone name"),
        (((CLIENT_ID, "zone-1"), (CLIENT_ID, "zone-2")), BAD, "'client-id' is given more"),
        (
            ((CLIENT_ID, "zone-1"), (AUTHORIZATION, "Bearer a"), (AUTHORIZATION, "Bearer b")),
            BAD,
            "'authorization' is given more than once",
        ),
        (((CLIENT_ID, "zone-1"),), UNAUTH, "missing gRPC metadata 'authorization'"),
        (((CLIENT_ID, "zone-1"), (AUTHORIZATION, "")), UNAUTH, "missing gRPC metadata"),
        (((CLIENT_ID, "zone-1"), (AUTHORIZATION, "Bearer")), UNAUTH, "malformed"),
        (((CLIENT_ID, "zone-1"), (AUTHORIZATION, "Basic abc")), UNAUTH, "malformed"),
        (((CLIENT_ID, "zone-1"), (AUTHORIZATION, "Bearer a b")), UNAUTH, "malformed"),
        (((CLIENT_ID, "zone-1"), (AUTHORIZATION, "Bearer " + "x" * 9000)), BAD, "too long"),
    ],
)
def test_a_call_that_does_not_say_who_it_is_is_refused(
    metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode, fragment: str
) -> None:
    refusal = read_request(metadata)
    assert isinstance(refusal, Refusal)
    assert refusal.code == code and fragment in refusal.message


def test_a_call_is_read_with_its_token_and_instance() -> None:
    request = read_request(
        ((CLIENT_ID, b"zone-1"), (AUTHORIZATION, "bearer  tok"), (CLIENT_INSTANCE, "i-1"))
    )
    assert request == KdsRequest("zone-1", "tok", "i-1")


def test_the_decision() -> None:
    request = KdsRequest("zone-1", "tok")
    assert decide(request, verified("zone-1")) is None
    assert decide(request, verified("zone-1", ZoneScope.KDS, ZoneScope.INGRESS)) is None
    other = decide(request, verified("zone-2"))
    assert other == Refusal(DENIED, other.message if other else "")
    assert other is not None and "not valid for zone 'zone-1'" in other.message
    scope = decide(request, verified("zone-1", ZoneScope.INGRESS))
    assert scope is not None and scope.code == DENIED and "lacks scope 'kds'" in scope.message
    expired = decide(request, TokenError("token expired at 2020-01-01T00:00:00+00:00"))
    assert expired == Refusal(
        UNAUTH, "invalid zone token: token expired at 2020-01-01T00:00:00+00:00"
    )
    user = Verified(TokenKind.USER, UserClaims("admin"), "j", "k", dt.datetime.now(dt.UTC))
    refused = decide(request, user)  # ...and user claims are never a zone's
    assert refused is not None and refused.code == UNAUTH


async def test_the_authenticator_verifies_real_tokens() -> None:
    auth = KEYS.authenticator()
    ok = await auth.authenticate(KEYS.metadata("zone-1"))
    assert isinstance(ok, KdsRequest) and ok.zone == "zone-1"
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    old = KEYS.token("zone-1", now=past)
    refused = await auth.authenticate(((CLIENT_ID, "zone-1"), (AUTHORIZATION, f"Bearer {old}")))
    assert isinstance(refused, Refusal) and "expired" in refused.message
    KEYS.revoked.add("revoked-jti")
    try:
        gone = KEYS.token("zone-1", jti="revoked-jti")
        refused = await auth.authenticate(
            ((CLIENT_ID, "zone-1"), (AUTHORIZATION, f"Bearer {gone}"))
        )
        assert isinstance(refused, Refusal) and "revoked" in refused.message
    finally:
        KEYS.revoked.discard("revoked-jti")


def test_the_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc.def.ghi\n")
    assert read_token_file(path) == "abc.def.ghi"
    for bad in ("", "\n", "two tokens", "x" * 9000):
        path.write_text(bad)
        with pytest.raises(ValueError) as err:
            read_token_file(path)
        assert "abc" not in str(err.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(tmp_path / "missing")


# -- fuzz --------------------------------------------------------------------------------------

text = st.text(max_size=300)
TOKENS = {zone: KEYS.token(zone) for zone in ("zone-1", "zone-2")}
header = st.one_of(
    text,
    st.builds(lambda t: f"Bearer {t}", text),
    st.sampled_from([f"Bearer {t}" for t in TOKENS.values()]),
)
metadata = st.lists(
    st.tuples(
        st.sampled_from([CLIENT_ID, AUTHORIZATION, CLIENT_INSTANCE, "other"]),
        st.one_of(text, header, st.sampled_from(["zone-1", "zone-2", "evil-zone"])),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(metadata)
def test_random_metadata_is_decided_without_crashing(md: list[tuple[str, str]]) -> None:
    request = read_request(md)
    if isinstance(request, Refusal):
        assert request.code in (BAD, UNAUTH) and request.message
        return
    result = asyncio.run(KEYS.authenticator().authenticate(md))
    if isinstance(result, KdsRequest):  # accepted only with the zone's own valid token
        assert result.token == TOKENS.get(result.zone)
    else:
        assert result.code in (UNAUTH, DENIED) and result.message


_printable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200
)  # what gRPC lets a client put in ASCII metadata


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from([CLIENT_ID, AUTHORIZATION, CLIENT_INSTANCE]), _printable),
        max_size=4,
    )
)
def test_a_real_server_refuses_random_metadata_cleanly(md: list[tuple[str, str]]) -> None:
    async def run() -> None:
        port = free_port()
        hooks = Hooks()
        kds = fast_global(hooks)
        async with serving(kds, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.KDSStub(channel)
            try:
                await stub.HealthCheck(pb.HealthCheckRequest(), metadata=tuple(md), timeout=5)
                accepted = True
            except grpc.aio.AioRpcError as exc:
                accepted = False
                assert exc.code() in (BAD, UNAUTH, DENIED), exc
            call = stub.GlobalToZoneSync(None, metadata=tuple(md), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while True:
                    await call.read()
            # Random metadata never carries a valid token: refused, never an accepted stream.
            assert not accepted
            assert err.value.code() in (BAD, UNAUTH, DENIED)
        assert hooks.events == [] and kds.sessions == {}

    asyncio.run(run())
