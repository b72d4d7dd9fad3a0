"""What the in-process dataplane config server tests share: a zone (memory store, the real
ZoneServices and DataplaneServer on loopback gRPC) and a scripted proxy to talk to it."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from global_cp.mesh_ca import ensure_ca, plan_for
from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import DataplaneClaims, TokenKind, ZoneClaims, ZoneScope, issue
from meshfed.config import Address
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_sidecar_config
from meshfed.kds.stream import EOF
from meshfed.resources.codec import resource_to_dict
from meshfed.resources.model import Resource
from meshfed.resources.types import default_registry
from meshfed.resources.types.dataplane import services
from meshfed.store.base import NotFoundError
from meshfed.store.memory import MemoryStore
from tests.unit.policy.factories import dataplane, inbound, mesh_resource
from zone_cp.certs import CertIssuer
from zone_cp.dpserver import DataplaneServer
from zone_cp.services import ZoneServices

ZONE = "zone-1"
CIDR = ipaddress.IPv4Network("127.1.0.0/16")


def doc(resource: Resource) -> dict[str, Any]:
    return resource_to_dict(resource, default_registry().get(resource.type))


class Proxy:
    """A scripted proxy: one DataplaneConfig stream, read and written by the test."""

    def __init__(
        self,
        address: Address,
        token: str | None = None,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        """`token`: sent as the call's `authorization: Bearer` metadata (None: no token);
        `metadata`: the call's metadata as given instead."""
        self.channel = grpc.aio.insecure_channel(str(address))
        if metadata is None and token is not None:
            metadata = (("authorization", f"Bearer {token}"),)
        self.call = pb_grpc.DataplaneConfigStub(self.channel).Stream(None, metadata=metadata)

    async def hello(self, proxy_type: ProxyType, resource: dict[str, Any]) -> None:
        await self.call.write(hello_message(proxy_type, resource, proxy_version="test/1"))

    async def read(self, timeout: float = 10.0) -> pb.CpMessage:
        msg = await asyncio.wait_for(self.call.read(), timeout)
        assert msg is not EOF, "the server ended the stream"
        assert isinstance(msg, pb.CpMessage)
        return msg

    async def config(self, timeout: float = 10.0) -> SidecarConfig:
        msg = await self.read(timeout)
        assert msg.WhichOneof("message") == "config", msg
        return parse_sidecar_config(msg)

    async def ended(self, timeout: float = 10.0) -> bool:
        """The server ends the stream (messages still queued before the end are skipped)."""

        async def drain() -> None:
            while await self.call.read() is not EOF:
                pass

        try:
            await asyncio.wait_for(drain(), timeout)
        except grpc.aio.AioRpcError:
            pass
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.channel.close(grace=None)


@dataclass
class Zone:
    store: MemoryStore
    services: ZoneServices
    server: DataplaneServer
    address: Address

    async def dataplane(self, name: str, mesh: str = "default") -> Resource:
        return await self.store.get("Dataplane", mesh, name)

    async def ready(self, name: str) -> list[bool]:
        dp = await self.dataplane(name)
        return [i["health"]["ready"] for i in dp.spec["networking"]["inbound"]]


async def start_zone(
    store: MemoryStore,
    validity: dt.timedelta = dt.timedelta(hours=1),
    insight_flush: float = 0.05,
) -> AsyncIterator[Zone]:
    services = ZoneServices(store, ZONE, CIDR)
    await services.start()
    server = DataplaneServer(
        store,
        ZONE,
        services,
        CertIssuer(validity),
        instance_id="cp-test",
        insight_flush=insight_flush,
        stale_after=None,
        debounce=0.0,
    )
    address = await server.start(Address("127.0.0.1", 0))
    try:
        yield Zone(store, services, server, address)
    finally:
        await server.stop()
        await services.stop()


async def with_mesh_ca(store: MemoryStore) -> MemoryStore:
    """The default mesh with mTLS and its CA, as the global's sync would bring them."""
    mesh = mesh_resource()
    await store.create(mesh)
    plan = plan_for(mesh)
    assert plan is not None
    await ensure_ca(store, plan)
    return store


async def token_for(
    store: MemoryStore,
    resource: Resource,
    kind: ProxyType = ProxyType.SIDECAR,
    validity: dt.timedelta = dt.timedelta(hours=1),
) -> str | None:
    """A token that lets `resource` connect: a dataplane token naming its services (signed
    with its mesh's key, made if missing), or a zone token of scope ingress for ZONE. None
    for a sidecar whose Mesh does not exist (no key to sign with)."""
    if kind is ProxyType.INGRESS:
        key = await ensure_signing_key(store, TokenKind.ZONE)
        return issue(ZoneClaims(ZONE, (ZoneScope.INGRESS,)), key, validity)
    try:
        await store.get("Mesh", "", resource.mesh)
    except NotFoundError:
        return None
    key = await ensure_signing_key(store, TokenKind.DATAPLANE, resource.mesh)
    claims = DataplaneClaims(resource.mesh, {"kuma.io/service": tuple(services(resource.spec))})
    return issue(claims, key, validity)


async def connect(
    zone: Zone,
    proxies: list[Proxy],
    resource: Resource,
    kind: ProxyType = ProxyType.SIDECAR,
    *,
    token: str | None = None,
    authenticate: bool = True,
) -> Proxy:
    """A proxy that said Hello with `resource`, authenticated with `token`, or (when
    `authenticate`) a token issued for it by `token_for`."""
    if token is None and authenticate:
        token = await token_for(zone.store, resource, kind)
    proxy = Proxy(zone.address, token)
    proxies.append(proxy)
    await proxy.hello(kind, doc(resource))
    return proxy


WEB = dataplane("web-1", inbound("web", 8080, servicePort=18080), address="127.0.0.5")
BACKEND = dataplane("backend-1", inbound("backend", 9090, servicePort=19090), address="127.0.0.6")
