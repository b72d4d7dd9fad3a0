"""Proxies authenticate to the dataplane config server (real gRPC, memory store): every way a
token can be wrong is refused with the status and reason the proxy sees, and leaves nothing
behind (no Dataplane or ZoneIngress, no insight, no certificate, no session)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest

from meshfed._gen import dataplane_pb2 as pb
from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import (
    DataplaneClaims,
    SigningKey,
    TokenKind,
    ZoneClaims,
    ZoneScope,
    issue,
)
from meshfed.dpconfig.protocol import ProxyType
from meshfed.resources.model import Resource
from meshfed.store.base import NotFoundError
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from tests.unit.mesh_control.dpserver_support import (
    WEB,
    ZONE,
    Proxy,
    Zone,
    connect,
    doc,
    with_mesh_ca,
)
from tests.unit.mesh_control.test_dpserver_ingress_offline import ingress_resource
from tests.unit.policy.factories import MESH_REF, dataplane, frm, inbound, mesh_resource, mtp

HOUR = dt.timedelta(hours=1)
SERVICE = "kuma.io/service"


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    """Mesh default (with its CA) and mesh other, each with its dataplane-token key, and the
    zone-token keys (at a zone, the public halves arrive from the global)."""
    s = await with_mesh_ca(MemoryStore())
    await s.create(mtp("allow-all", MESH_REF, from_=[frm(MESH_REF, "Allow")]))
    await s.create(mesh_resource("other"))
    for mesh in ("default", "other"):
        await ensure_signing_key(s, TokenKind.DATAPLANE, mesh)
    await ensure_signing_key(s, TokenKind.ZONE)
    yield s
    await s.close()


async def dp_token(
    store: MemoryStore,
    services: tuple[str, ...] = ("web",),
    *,
    mesh: str = "default",
    name: str = "",
    valid_for: dt.timedelta = HOUR,
    now: dt.datetime | None = None,
    jti: str | None = None,
) -> str:
    key = await ensure_signing_key(store, TokenKind.DATAPLANE, mesh)
    claims = DataplaneClaims(mesh, {SERVICE: services}, name)
    return issue(claims, key, valid_for, now=now, jti=jti)


async def zone_token(store: MemoryStore, zone: str = ZONE, *scopes: ZoneScope) -> str:
    key = await ensure_signing_key(store, TokenKind.ZONE)
    return issue(ZoneClaims(zone, scopes or (ZoneScope.INGRESS,)), key, HOUR)


async def refusal(proxy: Proxy) -> tuple[pb.Error, grpc.StatusCode | None, str]:
    """The fatal Error the server sent, then the stream's status and details."""
    msg = await proxy.read()
    assert msg.WhichOneof("message") == "error", msg
    assert msg.error.fatal
    try:
        end = await proxy.call.read()
    except grpc.aio.AioRpcError as exc:
        return msg.error, exc.code(), exc.details() or ""
    raise AssertionError(f"the stream went on after a fatal error: {end}")


async def nothing_stored(zone: Zone, resource: Resource) -> None:
    if resource.type == "Dataplane":
        types = ("Dataplane", "DataplaneInsight")
    else:
        types = ("ZoneIngress", "ZoneIngressInsight")
    for type_name in types:
        with pytest.raises(NotFoundError):
            await zone.store.get(type_name, resource.mesh, resource.name)
    assert zone.server.issuer.issued_total == 0
    assert zone.server.issuer.record(resource.mesh, resource.name) is None
    assert resource.key not in zone.server.sessions


async def assert_refused(
    zone: Zone,
    proxies: list[Proxy],
    resource: Resource,
    token: str | None,
    status: grpc.StatusCode,
    reason: str,
    kind: ProxyType = ProxyType.SIDECAR,
) -> None:
    proxy = await connect(zone, proxies, resource, kind, token=token, authenticate=False)
    error, code, details = await refusal(proxy)
    want = {
        grpc.StatusCode.UNAUTHENTICATED: pb.Error.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED: pb.Error.PERMISSION_DENIED,
    }[status]
    assert error.code == want, error
    assert code == status, (code, details)
    assert reason in error.message and reason in details, (reason, error.message)
    await nothing_stored(zone, resource)


# -- sidecars --------------------------------------------------------------------------------


async def test_a_sidecar_without_a_token_is_refused(zone: Zone, proxies: list[Proxy]) -> None:
    await assert_refused(
        zone, proxies, WEB, None, grpc.StatusCode.UNAUTHENTICATED, "no dataplane token"
    )
    assert zone.server.unauthorized_total == 1


async def test_a_malformed_token_is_refused(zone: Zone, proxies: list[Proxy]) -> None:
    unauth = grpc.StatusCode.UNAUTHENTICATED
    await assert_refused(zone, proxies, WEB, "not-a-jwt", unauth, "malformed token")
    await assert_refused(zone, proxies, WEB, "a.b.c", unauth, "malformed token")


async def test_a_token_for_another_service_cannot_get_its_certificate(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    token = await dp_token(store, ("backend",))
    await assert_refused(
        zone,
        proxies,
        WEB,
        token,
        grpc.StatusCode.PERMISSION_DENIED,
        "inbound[0] has kuma.io/service='web', which the dataplane token does not allow "
        "(allowed: backend)",
    )


async def test_a_token_must_cover_every_inbound(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    two = dataplane("web-2", inbound("web", 8080), inbound("admin", 8081), address="127.0.0.7")
    token = await dp_token(store, ("web",))
    await assert_refused(
        zone,
        proxies,
        two,
        token,
        grpc.StatusCode.PERMISSION_DENIED,
        "inbound[1] has kuma.io/service='admin'",
    )


async def test_a_token_for_another_mesh_is_refused(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    token = await dp_token(store, mesh="other")
    await assert_refused(
        zone,
        proxies,
        WEB,
        token,
        grpc.StatusCode.PERMISSION_DENIED,
        "the dataplane token is for mesh 'other', not mesh 'default'",
    )


async def test_an_expired_token_is_refused(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = await dp_token(store, now=past, valid_for=HOUR)
    await assert_refused(
        zone, proxies, WEB, token, grpc.StatusCode.UNAUTHENTICATED, "token expired at"
    )


async def test_a_revoked_token_is_refused(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    token = await dp_token(store, jti="stolen-1")
    name = keyring.revocations_name(TokenKind.DATAPLANE)
    await store.create(keyring.make_secret(TokenKind.DATAPLANE, name, b"other,stolen-1", "default"))
    # The verifier may hold the keys it read for up to a second.
    zone.server._dataplane_tokens._cache.clear()
    await assert_refused(
        zone, proxies, WEB, token, grpc.StatusCode.UNAUTHENTICATED, "token stolen-1 is revoked"
    )


async def test_a_forged_token_is_refused(zone: Zone, proxies: list[Proxy]) -> None:
    """Signed by a key of the right name that is not the mesh's."""
    forger = SigningKey.generate(keyring.signing_key_name(TokenKind.DATAPLANE, 1))
    token = issue(DataplaneClaims("default", {SERVICE: ("web",)}), forger, HOUR)
    await assert_refused(
        zone, proxies, WEB, token, grpc.StatusCode.UNAUTHENTICATED, "invalid signature"
    )
    stranger = SigningKey.generate("dataplane-token-signing-key-9")
    token = issue(DataplaneClaims("default", {SERVICE: ("web",)}), stranger, HOUR)
    await assert_refused(zone, proxies, WEB, token, grpc.StatusCode.UNAUTHENTICATED, "unknown key")


async def test_a_token_naming_another_dataplane_is_refused(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    token = await dp_token(store, name="web-2")
    await assert_refused(
        zone,
        proxies,
        WEB,
        token,
        grpc.StatusCode.PERMISSION_DENIED,
        "the dataplane token is for a Dataplane named 'web-2', not 'web-1'",
    )


async def test_other_token_kinds_and_schemes_are_refused(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    unauth = grpc.StatusCode.UNAUTHENTICATED
    await assert_refused(zone, proxies, WEB, await zone_token(store), unauth, "token refused")
    basic = Proxy(zone.address, metadata=(("authorization", "Basic d2ViOndlYg=="),))
    proxies.append(basic)
    await basic.hello(ProxyType.SIDECAR, doc(WEB))
    error, code, _ = await refusal(basic)
    assert code == unauth and "must be 'Bearer <token>'" in error.message
    await nothing_stored(zone, WEB)


async def test_a_refused_impostor_leaves_the_connected_proxy_alone(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    web = await connect(zone, proxies, WEB)
    first = await web.config()
    assert first.identity == "spiffe://default/web"
    # Its insight is written at its first report or flush (decision 179), before the impostor.
    await async_wait_until(
        lambda: store.get("DataplaneInsight", "default", "web-1"), what="web-1's insight"
    )
    issued = zone.server.issuer.issued_total
    impostor = await connect(zone, proxies, WEB, token=await dp_token(store, ("backend",)))
    error, code, _ = await refusal(impostor)
    assert "does not allow" in error.message
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert WEB.key in zone.server.sessions  # not replaced, not marked offline
    assert zone.server.issuer.issued_total == issued
    insight = await store.get("DataplaneInsight", "default", "web-1")
    assert len(insight.spec["subscriptions"]) == 1


async def test_a_valid_token_gets_the_certificate_of_its_service(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    token = await dp_token(store, ("web", "web-admin"), name="web-1")
    web = await connect(zone, proxies, WEB, token=token)
    config = await web.config()
    assert config.identity == "spiffe://default/web" and config.tls is not None
    assert zone.server.issuer.issued_total == 1


# -- zone ingresses --------------------------------------------------------------------------


async def test_ingress_refusals(zone: Zone, proxies: list[Proxy], store: MemoryStore) -> None:
    ingress = ingress_resource()
    unauth, denied = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    cases: list[tuple[str | None, grpc.StatusCode, str]] = [
        (None, unauth, "no zone token"),
        (await dp_token(store), unauth, "zone token refused"),
        (
            await zone_token(store, ZONE, ZoneScope.KDS),
            denied,
            "the zone token has scope kds, not ingress",
        ),
        (
            await zone_token(store, "zone-2", ZoneScope.INGRESS, ZoneScope.KDS),
            denied,
            "the zone token is for zone 'zone-2', not this zone 'zone-1'",
        ),
        ("x" * 5000, unauth, "longer than"),  # under gRPC's own 8 KiB limit
    ]
    for token, status, reason in cases:
        await assert_refused(zone, proxies, ingress, token, status, reason, ProxyType.INGRESS)


async def test_an_ingress_with_a_zone_token_of_scope_ingress_connects(
    zone: Zone, proxies: list[Proxy], store: MemoryStore
) -> None:
    ingress = ingress_resource()
    token = await zone_token(store, ZONE, ZoneScope.INGRESS)
    proxy = await connect(zone, proxies, ingress, ProxyType.INGRESS, token=token)
    msg = await proxy.read()
    assert msg.WhichOneof("message") == "config", msg
    await store.get("ZoneIngress", "", "zi-1")
