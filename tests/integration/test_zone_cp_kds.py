"""A real `zone-cp` against a fake global (a gRPC server in this test) that sends bad input.

KDS mechanics only: plaintext (`--kds-insecure`) and a token the fake global does not check
beyond seeing that the zone sends it (tests/integration/test_kds_security.py covers TLS and
tokens against the real global). The zone must NACK what it cannot accept, store the rest,
never overwrite or delete its own resources on the global's say-so, survive a message over
its size limit (a stream error and a reconnect, not a crash), and resume from what it holds
when it reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.auth.tokens import ADMIN_GROUP, SigningKey, UserClaims, issue
from meshfed.kds.auth import AUTHORIZATION
from meshfed.kds.stream import CLIENT_ID, EOF
from tests.integration.federation_support import Http, timeout_policy, zone_ingress
from tests.support import Procs, async_wait_until, free_port

pytestmark = pytest.mark.integration

GLOBAL = {"kuma.io/origin": "global"}
LIMIT = 1024 * 1024


class FakeGlobal(pb_grpc.KDSServicer):
    """Plays the global's side of GlobalToZoneSync with whatever the test queues."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[pb.SyncRequest] = asyncio.Queue()
        self.outbox: asyncio.Queue[pb.SyncResponse] = asyncio.Queue()
        self.streams = 0
        self.zones: list[str] = []
        self.authorizations: list[str] = []

    async def GlobalToZoneSync(  # type: ignore[override]
        self, request_iterator: object, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self.streams += 1
        metadata = context.invocation_metadata() or ()
        self.zones += [str(v) for k, v in metadata if k == CLIENT_ID]
        self.authorizations += [str(v) for k, v in metadata if k == AUTHORIZATION]

        async def reader() -> None:
            while (msg := await context.read()) is not EOF:
                assert isinstance(msg, pb.SyncRequest)
                await self.requests.put(msg)

        task = asyncio.create_task(reader())
        try:
            while True:
                await context.write(await self.outbox.get())
        finally:
            task.cancel()

    async def ZoneToGlobalSync(  # type: ignore[override]
        self, request_iterator: object, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        while await context.read() is not EOF:  # subscribes to nothing: the zone sends nothing
            pass

    async def HealthCheck(
        self, request: pb.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HealthCheckResponse:
        return pb.HealthCheckResponse(interval_ms=200)

    async def subscribed(self, type_name: str) -> pb.SyncRequest:
        while True:
            req = await asyncio.wait_for(self.requests.get(), 20)
            if req.type == type_name and not req.response_nonce:
                return req

    async def reply(self, nonce: str) -> pb.SyncRequest:
        while True:
            req = await asyncio.wait_for(self.requests.get(), 20)
            if req.response_nonce == nonce:
                return req


@contextlib.asynccontextmanager
async def fake_global(port: int) -> AsyncIterator[FakeGlobal]:
    servicer = FakeGlobal()
    server = grpc.aio.server()
    pb_grpc.add_KDSServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    try:
        yield servicer
    finally:
        await server.stop(grace=None)


def res(name: str, body: dict[str, Any], labels: dict[str, str], mesh: str = "") -> Any:
    spec = json.dumps(body).encode()
    return pb.KdsResource(name=name, mesh=mesh, version=f"v-{name}", labels=labels, spec=spec)


USER_KEY = SigningKey.generate("user-token-signing-key-1")


def user_public_key() -> Any:
    data = base64.b64encode(USER_KEY.public_pem).decode()
    return res("user-token-signing-public-key-1", {"data": data}, GLOBAL)


def policy(name: str, labels: dict[str, str] = GLOBAL, idle: str = "10s") -> Any:
    return res(name, timeout_policy(name, idle=idle)["spec"], labels, mesh="default")


async def get(http: Http, path: str) -> tuple[int, Any]:
    return await asyncio.to_thread(http.call, "GET", path)


async def test_zone_nacks_bad_input_keeps_its_own_resources_and_survives_huge_messages(
    procs: Procs, tmp_path: Path
) -> None:
    kds_port, api_port = free_port(), free_port()
    token_file = tmp_path / "zone-token"
    token_file.write_text("header.payload.signature\n")
    http = Http(api_port, tmp_path / "admin-token")
    async with fake_global(kds_port) as glob:
        zone = procs.start(
            "zone-1",
            [
                procs.script("zone-cp"),
                "run",
                "--zone",
                "zone-1",
                "--global-kds",
                f"grpc://127.0.0.1:{kds_port}",
                "--api-address",
                f"127.0.0.1:{api_port}",
                "--data-dir",
                str(tmp_path / "zone-1"),
                "--kds-max-message-bytes",
                "1MiB",
                "--kds-reconnect-max",
                "300ms",
                "--kds-insecure",
                "--zone-token-file",
                str(token_file),
            ],
        )
        await glob.subscribed("Mesh")
        assert glob.zones[:1] == ["zone-1"]
        assert glob.authorizations[:1] == ["Bearer header.payload.signature"]
        # Zones verify user tokens with the public keys the global syncs: send one, write
        # through the zone's API with an admin token it signs.
        await glob.outbox.put(
            pb.SyncResponse(type="GlobalSecret", nonce="k1", resources=[user_public_key()])
        )
        assert not (await glob.reply("k1")).HasField("error_detail")
        admin = UserClaims("admin", (ADMIN_GROUP,))
        (tmp_path / "admin-token").write_text(issue(admin, USER_KEY, dt.timedelta(hours=1)))
        await async_wait_until(lambda: asyncio.to_thread(http.ready), timeout=20, what="ready")
        status, _ = await asyncio.to_thread(
            http.call, "PUT", "/zoneingresses/zi-own", zone_ingress("zi-own")
        )
        assert status == 201

        await glob.outbox.put(
            pb.SyncResponse(type="Mesh", nonce="m1", resources=[res("default", {}, GLOBAL)])
        )
        assert not (await glob.reply("m1")).HasField("error_detail")

        bad_spec = pb.KdsResource(
            name="garbage", mesh="default", version="v", labels=GLOBAL, spec=b"\xff{"
        )
        batch = [
            bad_spec,
            policy("good"),
            policy("no-origin", labels={}),
            policy("banana", idle="banana"),
            policy("Bad_Name!"),
        ]
        await glob.outbox.put(pb.SyncResponse(type="MeshTimeout", nonce="p1", resources=batch))
        nack = await glob.reply("p1")
        assert nack.HasField("error_detail")
        failed = {f.name: f.reason for f in nack.error_detail.failed}
        assert set(failed) == {"garbage", "no-origin", "banana", "Bad_Name!"}
        assert "not valid JSON" in failed["garbage"]
        assert "kuma.io/origin" in failed["no-origin"]
        assert "idleTimeout" in failed["banana"]
        status, body = await get(http, "/meshes/default/meshtimeouts/good")
        assert status == 200 and body["labels"] == GLOBAL
        assert (await get(http, "/meshes/default/meshtimeouts?size=10"))[1]["total"] == 1

        # The global may not remove or overwrite what the zone owns.
        await glob.outbox.put(
            pb.SyncResponse(type="ZoneIngress", nonce="z1", removed=[pb.ResourceKey(name="zi-own")])
        )
        await glob.reply("z1")
        await glob.outbox.put(
            pb.SyncResponse(
                type="ZoneIngress",
                nonce="z2",
                resources=[res("zi-own", zone_ingress("zi-own", port=1), GLOBAL)],
            )
        )
        await glob.reply("z2")
        status, body = await get(http, "/zoneingresses/zi-own")
        assert status == 200 and body["networking"]["port"] == 10001
        assert body["labels"]["kuma.io/origin"] == "zone"

        # A type the zone does not take: NACKed on the same stream.
        await glob.outbox.put(pb.SyncResponse(type="Dataplane", nonce="d1"))
        assert "not accepted" in (await glob.reply("d1")).error_detail.message
        assert glob.streams == 1

        # Over the size limit: the stream fails with a clear error, the zone reconnects and
        # resumes from what it stored.
        huge = policy("huge")
        huge.spec = b'{"x":"' + b"y" * (2 * LIMIT) + b'"}'
        await glob.outbox.put(pb.SyncResponse(type="MeshTimeout", nonce="h1", resources=[huge]))
        resub = await glob.subscribed("MeshTimeout")
        assert glob.streams == 2
        held = {v.name: v.version for v in resub.initial_resource_versions}
        assert held == {"good": "v-good"}
        assert zone.alive()
        kds = (await get(http, "/_kds"))[1]
        assert kds["received"]["MeshTimeout"]["nacksSent"] == 1
        assert "RESOURCE_EXHAUSTED" in kds["lastError"]
        assert kds["sessions"] >= 2
        status, _ = await get(http, "/meshes/default/meshtimeouts/good")
        assert status == 200
