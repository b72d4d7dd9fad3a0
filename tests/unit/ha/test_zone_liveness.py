"""ZoneInsight across replicas: merging, who serves a zone, and the leader's sweep."""

from __future__ import annotations

from typing import Any

from global_cp.insights import MAX_SUBSCRIPTIONS, rfc3339
from global_cp.zone_liveness import (
    InsightSweep,
    close_orphans,
    insight_resource,
    merge_insight,
    remote_record,
    serving_replica,
    stored_stat,
)
from meshfed.ha.presence import FULL_PASS_EVERY, SoleReplica
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types.insights import ZONE_INSIGHT
from meshfed.resources.types.zone import ZONE
from meshfed.store.base import ConflictError, NotFoundError
from meshfed.store.memory import MemoryStore

T0 = 1_700_000_000.0


def sub(
    id_: str, replica: str, connect: float, disconnect: float | None = None, pending: int = 0
) -> dict[str, Any]:
    return {
        "id": id_,
        "globalInstanceId": replica,
        "connectTime": rfc3339(T0 + connect),
        "disconnectTime": rfc3339(T0 + disconnect) if disconnect is not None else None,
        "status": {"stat": {"MeshTimeout": {"pending": pending, "rejected": {}}}},
    }


def body(*subs: dict[str, Any], versions: Any = None, check: float | None = None) -> dict[str, Any]:
    return {
        "subscriptions": list(subs),
        "lastHealthCheck": rfc3339(T0 + check) if check is not None else None,
        "versions": versions or {},
    }


def test_the_serving_replica_is_the_newest_subscription_while_it_is_open() -> None:
    assert serving_replica(None) is None
    assert serving_replica(body()) is None
    assert serving_replica(body(sub("a", "A", 1, 5), sub("b", "B", 6))) == "B"
    assert serving_replica(body(sub("a", "A", 1, 5), sub("b", "B", 6, 7))) is None
    # Order in the list does not matter, times do.
    assert serving_replica(body(sub("b", "B", 6), sub("a", "A", 1))) == "B"
    # Junk written by someone else never breaks the question.
    assert serving_replica({"subscriptions": [1, {"id": 3}, "x"]}) is None


def test_merge_keeps_other_replicas_subscriptions_and_ours_win_for_our_own() -> None:
    stored = body(sub("a1", "A", 1, 3), sub("b1", "B", 4), versions={"Mesh": {"m": "vB"}})
    # Replica A's record still has b1 as it saw it when it took over (closed at 4.5, wrong);
    # its own a1 is the truth about a1, and a2 is new.
    ours = body(
        sub("a1", "A", 1, 3.5),
        sub("b1", "B", 4, 4.5),
        sub("a2", "A", 10),
        versions={"Mesh": {"m": "vA"}},
        check=11,
    )
    merged = merge_insight(stored, ours, "A")
    got = {s["id"]: s for s in merged["subscriptions"]}
    assert [s["id"] for s in merged["subscriptions"]] == ["a1", "b1", "a2"]
    assert got["a1"]["disconnectTime"] == rfc3339(T0 + 3.5)  # ours
    # B's own copy says open; a newer subscription exists, so it ended when that one began.
    assert got["b1"]["disconnectTime"] == rfc3339(T0 + 10)
    assert got["a2"]["disconnectTime"] is None
    assert merged["versions"] == {"Mesh": {"m": "vA"}}  # the newest subscription is ours
    assert merged["lastHealthCheck"] == rfc3339(T0 + 11)
    assert serving_replica(merged) == "A"


def test_merge_by_a_replica_the_zone_left_keeps_the_new_owner_in_charge() -> None:
    stored = body(sub("a1", "A", 1, 2), sub("b1", "B", 5), versions={"Mesh": {"m": "vB"}}, check=6)
    ours = body(sub("a1", "A", 1, 4), versions={"Mesh": {"m": "vA"}}, check=3)
    merged = merge_insight(stored, ours, "A")
    assert serving_replica(merged) == "B"
    assert merged["versions"] == {"Mesh": {"m": "vB"}}
    assert merged["lastHealthCheck"] == rfc3339(T0 + 6)
    assert merged["subscriptions"][0]["disconnectTime"] == rfc3339(T0 + 4)


def test_merge_keeps_only_the_newest_subscriptions() -> None:
    stored = body(*(sub(f"b{i}", "B", i, i + 0.5) for i in range(MAX_SUBSCRIPTIONS)))
    merged = merge_insight(stored, body(sub("a", "A", 100)), "A")
    ids = [s["id"] for s in merged["subscriptions"]]
    assert len(ids) == MAX_SUBSCRIPTIONS and ids[-1] == "a" and "b0" not in ids
    assert merge_insight(None, body(sub("a", "A", 1)), "A")["subscriptions"][0]["id"] == "a"


def test_close_orphans_closes_only_dead_replicas_subscriptions() -> None:
    original = body(sub("a", "A", 1), sub("b", "B", 2), sub("c", "C", 0, 1))
    closed, gone = close_orphans(original, frozenset({"A"}), T0 + 50)
    assert gone == ["B"]
    subs = {s["id"]: s for s in closed["subscriptions"]}
    assert subs["a"]["disconnectTime"] is None
    assert subs["b"]["disconnectTime"] == rfc3339(T0 + 50)
    assert subs["c"]["disconnectTime"] == rfc3339(T0 + 1)
    assert original["subscriptions"][1]["disconnectTime"] is None  # input untouched
    assert close_orphans(original, frozenset({"A", "B"}), T0)[1] == []


def test_remote_record_and_stored_counters() -> None:
    stored = body(sub("a", "A", 1, 2), sub("b", "B", 3, pending=4), versions={"Mesh": {"m": "v"}})
    online = remote_record("zone-1", stored, online=True, now=T0 + 9)
    assert online.current is not None and online.current.disconnect_time is None
    offline = remote_record("zone-1", stored, online=False, now=T0 + 9)
    assert offline.current is not None and offline.current.disconnect_time == T0 + 9
    assert stored_stat(stored, "MeshTimeout")["pending"] == 4
    assert stored_stat(stored, "Mesh") == {} and stored_stat({}, "Mesh") == {}


def zone(name: str) -> Resource:
    return Resource(ZONE.name, Meta(name=name))


async def test_sweep_closes_dead_replicas_subscriptions_and_removes_orphan_insights() -> None:
    store = MemoryStore()
    for name in ("zone-1", "zone-2", "zone-3"):
        await store.create(zone(name))
    await store.create(insight_resource("zone-1", body(sub("d", "dead", 1))))
    await store.create(insight_resource("zone-2", body(sub("l", "live", 1))))
    await store.create(insight_resource("zone-3", body(sub("m", "me", 1))))
    await store.create(insight_resource("deleted", body(sub("x", "live", 1))))
    leading = True
    now = T0 + 60
    live = {"me", "live"}

    class Live(SoleReplica):
        async def alive(self) -> frozenset[str]:
            return frozenset(live)

    sweep = InsightSweep(store, Live("me"), lambda: leading, clock=lambda: now)
    await sweep.run()
    assert (sweep.marked_offline, sweep.removed, sweep.passes) == (1, 1, 1)
    z1 = await store.get(ZONE_INSIGHT.name, "", "zone-1")
    assert z1.spec["subscriptions"][0]["disconnectTime"] == rfc3339(T0 + 60)
    for name in ("zone-2", "zone-3"):  # a live replica's, and our own: untouched
        spec = (await store.get(ZONE_INSIGHT.name, "", name)).spec
        assert spec["subscriptions"][0]["disconnectTime"] is None
    assert (await store.list(ZONE_INSIGHT.name)).total == 3

    # The same replicas and a clean last pass: nothing to look at, nothing read or written.
    revision = await store.revision()
    await sweep.run()
    assert sweep.passes == 1 and await store.revision() == revision
    # A replica that came and went between two passes is caught by the periodic full pass.
    await store.update(insight_resource("zone-2", body(sub("d2", "dead", 5))))
    await sweep.run()
    assert sweep.passes == 1 and sweep.marked_offline == 1
    now += FULL_PASS_EVERY
    await sweep.run()
    assert sweep.passes == 2 and sweep.marked_offline == 2
    # When the live replicas change, a pass at once; a replica that no longer leads stops
    # before writing anything.
    await store.update(insight_resource("zone-3", body(sub("l2", "live", 7))))
    revision = await store.revision()
    live = {"me"}
    leading = False
    await sweep.run()
    assert sweep.passes == 3 and await store.revision() == revision
    leading = True
    await sweep.run()  # the stopped pass did not count as clean: this one does the work
    assert sweep.passes == 4 and sweep.marked_offline == 3


async def test_sweep_skips_an_insight_written_meanwhile() -> None:
    """Compare-and-swap: the zone reconnected between the sweep's read and its write."""

    class Racing(MemoryStore):
        async def update(self, resource: Resource, expected_version: str | None = None) -> Any:
            raise ConflictError(resource.type, "", resource.name, expected_version or "", "9")

    store = Racing()
    await store.create(zone("zone-1"))
    await store.create(insight_resource("zone-1", body(sub("d", "dead", 1))))
    sweep = InsightSweep(store, SoleReplica("me"), lambda: True)
    await sweep.run()
    assert sweep.marked_offline == 0

    class Vanishing(MemoryStore):
        async def delete(self, *args: Any, **kwargs: Any) -> None:
            raise NotFoundError(ZONE_INSIGHT.name, "", "gone")

    store2 = Vanishing()
    await store2.create(insight_resource("gone", body()))
    sweep2 = InsightSweep(store2, SoleReplica("me"), lambda: True)
    await sweep2.run()
    assert sweep2.removed == 0
