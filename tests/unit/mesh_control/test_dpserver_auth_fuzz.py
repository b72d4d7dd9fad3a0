"""Fuzzing the real dataplane config server's authentication: random Hellos, metadata and
token-like values are refused cleanly (a fatal Error and a status, nothing stored, no
certificate) and the server keeps serving. The server runs on its own event loop in a thread,
so hypothesis drives it with a blocking gRPC client."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed._gen import dataplane_pb2 as pb
from meshfed._gen import dataplane_pb2_grpc as pb_grpc
from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import TokenKind
from meshfed.dpconfig.protocol import ProxyType, hello_message
from meshfed.store.memory import MemoryStore
from tests.unit.mesh_control.dpserver_support import (
    WEB,
    Zone,
    doc,
    start_zone,
    token_for,
    with_mesh_ca,
)
from tests.unit.policy.factories import dataplane, inbound

REFUSED = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,  # a Hello that does not parse
    grpc.StatusCode.FAILED_PRECONDITION,  # a mesh that does not exist
}


class ThreadedZone:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.zone: Zone | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        store = await with_mesh_ca(MemoryStore())
        await ensure_signing_key(store, TokenKind.DATAPLANE, "default")
        await ensure_signing_key(store, TokenKind.ZONE)
        async for zone in start_zone(store):
            self.zone = zone
            self._ready.set()
            await self._stop.wait()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def __enter__(self) -> ThreadedZone:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedZone]:
    with ThreadedZone() as tz:
        yield tz


def _seg(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
HEADER = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["ES256", "HS256", "none", "RS256"]),
        "kid": st.sampled_from(["dataplane-token-signing-key-1", "zone-token-signing-key-1", ""]),
        "typ": st.just("JWT"),
    },
)
JWT_LIKE = st.builds(
    lambda h, p, s: f"{_seg(json.dumps(h).encode())}.{_seg(json.dumps(p).encode())}.{_seg(s)}",
    HEADER,
    JSONISH,
    st.binary(max_size=80),
)
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
AUTHORIZATION = st.one_of(
    st.none(),
    PRINTABLE,
    st.builds(lambda t: f"Bearer {t}", PRINTABLE),
    st.builds(lambda t: f"Bearer {t}", JWT_LIKE),
)


@settings(max_examples=150, deadline=None)
@given(
    authorization=AUTHORIZATION,
    name=st.sampled_from(["web-1", "fuzz-1", "x"]),
    service=st.sampled_from(["web", "backend", "fuzz"]),
    mesh=st.sampled_from(["default", "nope"]),
    ingress=st.booleans(),
)
def test_fuzz_random_credentials_are_refused_cleanly(
    threaded: ThreadedZone,
    authorization: str | None,
    name: str,
    service: str,
    mesh: str,
    ingress: bool,
) -> None:
    zone = threaded.zone
    assert zone is not None
    if ingress:
        kind = ProxyType.INGRESS
        resource: dict[str, Any] = {
            "type": "ZoneIngress",
            "name": name,
            "networking": {"address": "127.0.0.8", "port": 10001},
        }
    else:
        kind = ProxyType.SIDECAR
        resource = doc(dataplane(name, inbound(service, 8080), mesh=mesh))
    metadata = None if authorization is None else (("authorization", authorization),)
    with grpc.insecure_channel(str(zone.address)) as channel:
        call = pb_grpc.DataplaneConfigStub(channel).Stream(
            iter([hello_message(kind, resource)]), metadata=metadata, timeout=10
        )
        messages: list[pb.CpMessage] = []
        with pytest.raises(grpc.RpcError) as info:
            for msg in call:
                messages.append(msg)
    assert info.value.code() in REFUSED, info.value  # type: ignore[attr-defined]
    assert [m.WhichOneof("message") for m in messages] == ["error"]
    assert messages[0].error.fatal
    assert not zone.server.sessions
    assert zone.server.issuer.issued_total == 0
    assert not threaded.call(zone.store.list("Dataplane")).items
    assert not threaded.call(zone.store.list("ZoneIngress")).items


def test_after_the_fuzz_a_valid_proxy_still_connects(threaded: ThreadedZone) -> None:
    zone = threaded.zone
    assert zone is not None
    token = threaded.call(token_for(zone.store, WEB))
    with grpc.insecure_channel(str(zone.address)) as channel:
        call = pb_grpc.DataplaneConfigStub(channel).Stream(
            iter([hello_message(ProxyType.SIDECAR, doc(WEB))]),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
        first = next(call)
        call.cancel()
    assert first.WhichOneof("message") == "config", first
