"""A second zone-cp with the same --zone (real processes) is refused with a clear error and
keeps backing off; the first one's streams are never replaced."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.kds.auth import CLIENT_INSTANCE
from meshfed.kds.stream import EOF
from tests.integration.federation_support import (
    Cluster,
    Http,
    dataplane,
    eventually,
    kds_channel,
    kds_metadata,
)
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration


def test_a_second_zone_cp_with_the_same_zone_is_refused_and_the_first_undisturbed(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    cluster.wait_online()
    g, first = cluster.glob.http, cluster.zones["zone-1"]
    first.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="dp-1 at the global")
    first_sessions = first.http.get("/_kds")["sessions"]

    twin_port = free_port()
    twin_argv = [a if a != str(first.data_dir) else str(tmp_path / "twin") for a in first.argv]
    twin_argv[twin_argv.index(f"127.0.0.1:{first.http.port}")] = f"127.0.0.1:{twin_port}"
    twin = procs.start("zone-1-twin", twin_argv)
    twin_http = Http(twin_port)
    wait_until(lambda: twin.alive() and twin_http.ready(), timeout=30, what="twin ready")

    def refused() -> bool:
        error = twin_http.get("/_kds")["lastError"] or ""
        return "already connected from another zone control plane" in error

    eventually(refused, what="the twin refused with a clear error")
    kds = twin_http.get("/_kds")
    assert kds["lastError"].startswith("ALREADY_EXISTS: ") and kds["state"] != "connected"
    insight = cluster.zone_state("zone-1")
    assert insight["state"] == "online" and len(insight["subscriptions"]) == 1
    assert "already connected" in insight["lastError"]
    # The first zone-cp was never replaced; the twin keeps backing off instead of hammering.
    assert first.http.get("/_kds")["sessions"] == first_sessions
    sessions = kds["sessions"]
    eventually(lambda: twin_http.get("/_kds")["sessions"] > sessions, what="a later retry")
    assert first.http.get("/_kds")["sessions"] == first_sessions
    assert g.get("/dataplanes")["total"] == 1


async def _twin_outcomes(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], eager: bool
) -> dict[str, str]:
    """Status of the HealthCheck and both streams of a second instance, the streams opened
    together; `eager` writes at once, as a client that does not wait to be accepted."""
    stub = pb_grpc.KDSStub(channel)
    out: dict[str, str] = {}
    try:
        await stub.HealthCheck(pb.HealthCheckRequest(), metadata=metadata, timeout=5)
        out["HealthCheck"] = "OK"
    except grpc.aio.AioRpcError as exc:
        out["HealthCheck"] = exc.code().name

    async def stream(name: str, call: Any, first: Any) -> None:
        if not eager:
            await call.initial_metadata()
        with contextlib.suppress(Exception):
            await call.write(first)
        try:
            async with asyncio.timeout(5):
                while True:
                    if await call.read() is EOF:
                        out[name] = "EOF"
                        return
        except grpc.aio.AioRpcError as exc:
            out[name] = exc.code().name
        except TimeoutError:
            call.cancel()
            out[name] = "still open"

    down = stub.GlobalToZoneSync(None, metadata=metadata, timeout=10)
    up = stub.ZoneToGlobalSync(None, metadata=metadata, timeout=10)
    await asyncio.gather(
        stream("GlobalToZoneSync", down, pb.SyncRequest(type="Mesh")),
        stream("ZoneToGlobalSync", up, pb.SyncResponse(type="ZoneIngress", nonce="n1")),
    )
    return out


def test_a_second_instance_gets_one_status_on_both_streams_and_the_health_check(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    cluster.wait_online()
    port = cluster.glob.kds_port
    assert port is not None
    metadata = (
        *kds_metadata(tmp_path, cluster.glob.http.port, "zone-1"),
        (CLIENT_INSTANCE, "twin-instance"),
    )

    async def run() -> list[dict[str, str]]:
        outcomes = []
        async with kds_channel(tmp_path, port) as channel:
            # As zone-cp does: write only once the global accepted the stream.
            for _ in range(4):
                outcomes.append(await _twin_outcomes(channel, metadata, eager=False))
            # A client that writes at once: it read INTERNAL in about 1 of 50 streams (its
            # own core failing the write the refusal overtook) before the server took the
            # first message before refusing (meshfed.kds.server._read_first).
            for _ in range(40):
                outcomes.append(await _twin_outcomes(channel, metadata, eager=True))
        return outcomes

    for outcome in asyncio.run(run()):
        assert set(outcome.values()) == {"ALREADY_EXISTS"}, outcome
    assert cluster.zone_state("zone-1")["state"] == "online"
