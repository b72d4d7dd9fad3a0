"""Federation acceptance: one real global and two real zones, SQLite stores, loopback ports.

These tests share one cluster (each uses its own resource names); the fault tests, which
kill and restart processes, have their own clusters in test_federation_faults.py.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshfed._gen import kds_pb2 as pb
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.kds.naming import zone_resource_name
from meshfed.kds.stream import CLIENT_ID
from tests.integration.federation_support import (
    Cluster,
    StoreWatch,
    dataplane,
    eventually,
    kds_channel,
    kds_metadata,
    mt_path,
    timeout_policy,
    zone_ingress,
)
from tests.support import Procs, async_wait_until, free_port

pytestmark = pytest.mark.integration

MAX_MESSAGE = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("federation")
    procs = Procs(root)
    try:
        c = Cluster.create(procs, root, global_args=("--kds-max-message-bytes", "1MiB"))
        c.start()
        c.wait_online()
        yield c
    finally:
        procs.stop_all()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cluster.procs.dump_logs())


def _spec(http: Any, path: str) -> Any:
    status, body = http.call("GET", path)
    return body["spec"] if status == 200 else None


def test_policy_applied_at_the_global_appears_in_both_zones_update_and_delete_propagate(
    cluster: Cluster,
) -> None:
    g = cluster.glob.http
    zones = [z.http for z in cluster.zones.values()]
    created = g.put(mt_path("prop"), timeout_policy("prop", idle="20s"))
    for z in zones:
        eventually(lambda z=z: _spec(z, mt_path("prop")) == created["spec"], what="policy")
        copy = z.get(mt_path("prop"))
        assert copy["labels"] == {"kuma.io/origin": "global"}

    # A zone never changes the global's copy: 405, saying where it comes from.
    for z in zones:
        status, body = z.call("PUT", mt_path("prop"), timeout_policy("prop", idle="1s"))
        assert status == 405 and "synced from the global control plane" in body["detail"]
        assert z.call("DELETE", mt_path("prop"))[0] == 405

    updated = g.put(mt_path("prop"), timeout_policy("prop", idle="45s"))
    for z in zones:
        eventually(lambda z=z: _spec(z, mt_path("prop")) == updated["spec"], what="update")

    sync = g.get(mt_path("prop") + "/_sync")
    assert sync["type"] == "MeshTimeout" and sync["mesh"] == "default"
    assert sorted(s["zone"] for s in sync["zones"]) == ["zone-1", "zone-2"]

    def all_in_sync() -> bool:
        got = g.get(mt_path("prop") + "/_sync")
        return all(s["inSync"] and s["version"] == got["version"] for s in got["zones"])

    eventually(all_in_sync, what="_sync reports both zones at the global's version")

    g.delete(mt_path("prop"))
    for z in zones:
        eventually(lambda z=z: z.call("GET", mt_path("prop"))[0] == 404, what="delete")


def test_dataplane_of_zone_1_appears_at_the_global_with_zone_labels_and_delete_removes_it(
    cluster: Cluster,
) -> None:
    g, z1, z2 = cluster.glob.http, cluster.zones["zone-1"].http, cluster.zones["zone-2"].http
    eventually(lambda: z1.call("GET", "/meshes/default")[0] == 200, what="mesh in zone-1")
    z1.put("/meshes/default/dataplanes/dp-a", dataplane("dp-a"))
    stored_name = zone_resource_name("dp-a", "default", "zone-1")
    path = f"/meshes/default/dataplanes/{stored_name}"
    got = eventually(lambda: g.call("GET", path)[1] if g.call("GET", path)[0] == 200 else None)
    assert got["labels"] == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "dp-a",
    }
    assert got["networking"] == dataplane("dp-a")["networking"]
    # The global does not register dataplanes itself, and zones do not get each other's.
    status, body = g.call("PUT", "/meshes/default/dataplanes/dp-b", dataplane("dp-b"))
    assert status == 405 and "zone" in body["detail"]
    assert [d["name"] for d in z2.items("/meshes/default/dataplanes")] == []

    z1.put("/meshes/default/dataplanes/dp-a", dataplane("dp-a", service="api"))
    eventually(
        lambda: g.get(path)["networking"]["inbound"][0]["tags"]["kuma.io/service"] == "api",
        what="update at the global",
    )
    z1.delete("/meshes/default/dataplanes/dp-a")
    eventually(lambda: g.call("GET", path)[0] == 404, what="removed at the global")


def test_zone_ingress_of_zone_1_reaches_zone_2_and_never_comes_back_to_zone_1(
    cluster: Cluster,
) -> None:
    g, z1, z2 = cluster.glob.http, cluster.zones["zone-1"].http, cluster.zones["zone-2"].http
    stored_name = zone_resource_name("zi-a", "", "zone-1")
    watch_1 = StoreWatch(z1, types="ZoneIngress")
    try:
        z1.put("/zoneingresses/zi-a", zone_ingress("zi-a"))
        relayed = eventually(
            lambda: (
                z2.call("GET", f"/zoneingresses/{stored_name}")[1]
                if z2.call("GET", f"/zoneingresses/{stored_name}")[0] == 200
                else None
            ),
            what="ingress relayed to zone-2",
        )
        assert relayed["labels"]["kuma.io/zone"] == "zone-1"
        assert relayed["labels"]["kuma.io/origin"] == "global"
        # zone-1's zone-cp advertises what its own dataplanes offer (none here), whatever the
        # operator wrote; the global relays exactly that.
        eventually(
            lambda: (
                z2.get(f"/zoneingresses/{stored_name}")["availableServices"]
                == z1.get("/zoneingresses/zi-a")["availableServices"]
                == []
            ),
            what="zone-1's advertisement relayed",
        )

        sync = g.get(f"/zoneingresses/{stored_name}/_sync")
        assert [s["zone"] for s in sync["zones"]] == ["zone-2"]  # never its own zone
        eventually(
            lambda: all(
                g.get(f"/zones/{z}/_overview")["zoneInsight"]["inSync"] for z in cluster.zones
            ),
            what="both zones in sync",
        )
        assert {e["name"] for e in watch_1.events} == {"zi-a"}
        assert [i["name"] for i in z1.items("/zoneingresses")] == ["zi-a"]
        # Zone-2's copy is read-only there, and zone-2 does not send it back up.
        status, body = z2.call("DELETE", f"/zoneingresses/{stored_name}")
        assert status == 405 and "synced from the global" in body["detail"]
        status, body = z2.call("PUT", f"/zoneingresses/{stored_name}", zone_ingress(stored_name))
        assert status == 405
        assert [i["name"] for i in g.items("/zoneingresses")] == [stored_name]
    finally:
        watch_1.close()


def test_zone_overview_reports_connection_and_sync_state(cluster: Cluster) -> None:
    g = cluster.glob.http
    page = g.get("/zones+insights")
    assert page["total"] == 2 and page["next"] is None
    names = [o["name"] for o in page["items"]]
    assert names == ["zone-1", "zone-2"]
    over = g.get("/zones/zone-1/_overview")
    assert over["type"] == "ZoneOverview" and over["zone"] == {"enabled": True}
    ins = over["zoneInsight"]
    assert ins["state"] == "online" and isinstance(ins["pending"], int)
    assert ins["lastHealthCheck"] is not None
    sub = ins["subscriptions"][-1]
    assert sub["disconnectTime"] is None and sub["globalInstanceId"] == g.get("/")["instanceId"]
    assert {"Mesh", "MeshTimeout", "ZoneIngress"} <= set(sub["status"]["stat"])
    stat = sub["status"]["stat"]["Mesh"]
    assert stat["responsesAcknowledged"] >= 1 and stat["lastError"] is None
    assert "Dataplane" in sub["status"]["received"]["stat"]
    assert g.call("GET", "/zones/nope/_overview")[0] == 404

    kds = cluster.zones["zone-1"].http.get("/_kds")
    assert kds["state"] == "connected" and kds["global"].startswith("grpcs://127.0.0.1:")
    assert kds["received"]["Mesh"]["held"] >= 1

    # The zone's insight is also a stored resource, readable like any other.
    eventually(lambda: g.call("GET", "/zone-insights/zone-1")[0] == 200, what="ZoneInsight")


# -- bad KDS input: a raw gRPC client in this test plays a misbehaving zone ------------------


async def _read_request(call: Any) -> pb.SyncRequest:
    msg = await asyncio.wait_for(call.read(), 10)
    assert isinstance(msg, pb.SyncRequest), msg
    return msg


async def _reply_to(call: Any, nonce: str) -> pb.SyncRequest:
    """Skips the global's subscribe requests; returns its answer to `nonce`."""
    while True:
        msg = await _read_request(call)
        if msg.response_nonce == nonce:
            return msg


def _deleted(http: Any, zone: str) -> bool:
    """DELETE is refused (409) until the global has seen the raw stream end."""
    return bool(http.call("DELETE", f"/zones/{zone}")[0] == 200)


def _metrics(http: Any) -> str:
    with urllib.request.urlopen(http.base + "/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def _dp_pb(name: str, spec: bytes, labels: dict[str, str] | None = None) -> pb.KdsResource:
    return pb.KdsResource(name=name, mesh="default", version="v1", labels=labels or {}, spec=spec)


async def test_bad_kds_input_gets_a_nack_or_a_clear_stream_error_and_never_a_crash(
    cluster: Cluster,
) -> None:
    g = cluster.glob
    port = g.kds_port
    assert port is not None
    good = dataplane("raw-ok")
    good_spec = (
        b'{"networking":{"address":"127.0.0.1","inbound":[{"port":8080,'
        b'"tags":{"kuma.io/service":"raw"}}]}}'
    )
    assert good["networking"]["address"] == "127.0.0.1"
    raw_md = functools.partial(kds_metadata, cluster.root, g.http.port)
    async with kds_channel(cluster.root, port) as channel:  # TLS, and zone tokens below
        stub = pb_grpc.KDSStub(channel)

        # No zone name, or a bad one: the stream is refused with the reason.
        for metadata, fragment in (
            ((), "missing gRPC metadata"),
            (((CLIENT_ID, "Bad Zone!"),), "invalid zone name"),
        ):
            call = stub.ZoneToGlobalSync(None, metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in (err.value.details() or "")

        md = await asyncio.to_thread(raw_md, "zone-raw")
        call = stub.ZoneToGlobalSync(None, metadata=md, timeout=30)
        # Garbage spec bytes next to a good resource: the good one is stored, the bad NACKed.
        # The payload also claims to come from zone-1: the stream's zone wins.
        await call.write(
            pb.SyncResponse(
                type="Dataplane",
                nonce="n1",
                resources=[
                    _dp_pb("raw-bad", b"\xff\x00not json"),
                    _dp_pb("raw-ok", good_spec, {"kuma.io/zone": "zone-1"}),
                ],
            )
        )
        reply = await _reply_to(call, "n1")
        assert reply.HasField("error_detail")
        assert [f.name for f in reply.error_detail.failed] == ["raw-bad"]
        assert "not valid JSON" in reply.error_detail.failed[0].reason
        # An unknown type: NACKed, the stream stays up.
        await call.write(pb.SyncResponse(type="NoSuchType", nonce="n2"))
        reply = await _reply_to(call, "n2")
        assert "not accepted on this stream" in reply.error_detail.message
        # A type zones may not send (the global's own): NACKed too.
        await call.write(
            pb.SyncResponse(type="MeshTimeout", nonce="n3", resources=[_dp_pb("t", b"{}")])
        )
        reply = await _reply_to(call, "n3")
        assert reply.HasField("error_detail")

        stored = zone_resource_name("raw-ok", "default", "zone-raw")
        status, body = await asyncio.to_thread(
            g.http.call, "GET", f"/meshes/default/dataplanes/{stored}"
        )
        assert status == 200 and body["labels"]["kuma.io/zone"] == "zone-raw"
        bad_name = zone_resource_name("raw-bad", "default", "zone-raw")
        bad_path = f"/meshes/default/dataplanes/{bad_name}"
        assert (await asyncio.to_thread(g.http.call, "GET", bad_path))[0] == 404

        # A message over the limit: a clear error on that stream only.
        huge = pb.SyncResponse(
            type="Dataplane", nonce="n4", resources=[_dp_pb("huge", b"x" * (2 * MAX_MESSAGE))]
        )
        huge_md = await asyncio.to_thread(raw_md, "zone-huge")
        big = stub.ZoneToGlobalSync(None, metadata=huge_md, timeout=30)
        await big.write(huge)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:
                await big.read()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        call.cancel()

    # The global is still up, still serving the real zones.
    assert g.alive()
    eventually_ok = await asyncio.to_thread(cluster.zone_state, "zone-1")
    assert eventually_ok["state"] == "online"
    zones = ('zone="zone-raw"', 'zone="zone-huge"')
    text = await asyncio.to_thread(_metrics, g.http)
    assert all(z in text for z in zones)  # their KDS series
    for zone in ("zone-raw", "zone-huge"):
        deleted = functools.partial(asyncio.to_thread, _deleted, g.http, zone)
        await async_wait_until(deleted, what=f"delete {zone}")

    async def series_gone() -> bool:
        text = await asyncio.to_thread(_metrics, g.http)
        return not any(z in text for z in zones) and 'zone="zone-1"' in text

    await async_wait_until(series_gone, what="the deleted zones' KDS series leave /metrics")
    status, _ = await asyncio.to_thread(g.http.call, "GET", f"/meshes/default/dataplanes/{stored}")
    assert status == 404  # deleting the zone removed its inventory


def test_a_second_global_on_a_busy_kds_port_exits_with_the_reason(
    cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    argv = [procs.script("global-cp"), "run", "--api-address", f"127.0.0.1:{free_port()}"]
    argv += ["--kds-address", f"127.0.0.1:{cluster.glob.kds_port}"]
    proc = procs.start("second-global", [*argv, "--data-dir", str(tmp_path / "g2")])
    assert proc.popen.wait(20) == 1, proc.log()
    assert f"cannot listen for KDS on 127.0.0.1:{cluster.glob.kds_port}" in proc.log()
    assert cluster.zone_state("zone-1")["state"] == "online"
