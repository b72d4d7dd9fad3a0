"""Registrations that arrive together (a rolling restart): each proxy stored with its insight,
their writes coalesced into few store batches, and the per-name rules unchanged: the same
Dataplane again takes over, a different one with the same name is refused (decision 123)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from meshfed.dpconfig.protocol import Hello, ProxyType
from meshfed.resources.model import Resource
from meshfed.store.base import Requirement, StoreKey
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until
from tests.unit.mesh_control.dpsession_factories import web_dataplane
from zone_cp import dpstate
from zone_cp.certs import CertIssuer
from zone_cp.dpinsights import InsightWriter
from zone_cp.dprecords import Records
from zone_cp.dpregistration import Registration
from zone_cp.dpsession import SessionKey

ZONE = "zone-1"


class CountingStore(MemoryStore):
    """Counts the store's write batches (what each registration used to make several of)
    and reads."""

    batches = 0
    reads = 0
    gate: asyncio.Event | None = None  # set: writes wait for it
    waiting = False

    async def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        self.reads += 1
        return await super().get_many(keys)

    async def write_batch(
        self,
        puts: Sequence[Resource],
        deletes: Sequence[StoreKey],
        *,
        expected: Mapping[StoreKey, str | None] | None = None,
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> list[Resource]:
        self.batches += 1
        if self.gate is not None:
            self.waiting = True
            await self.gate.wait()
        return await super().write_batch(
            puts, deletes, expected=expected, require=require, copies=copies
        )


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    s = CountingStore()
    yield s
    await s.close()


def registration(store: CountingStore, registered: list[SessionKey]) -> Registration:
    records = Records(store, ZONE)
    return Registration(
        records,
        InsightWriter(records, CertIssuer()),
        ZONE,
        "cp-1",
        mesh_exists=lambda mesh: mesh == "default",
        on_registered=registered.append,
    )


def hello(resource: Resource) -> Hello:
    return Hello(ProxyType.SIDECAR, resource, "test")


async def test_concurrent_registrations_share_store_batches(store: CountingStore) -> None:
    registered: list[SessionKey] = []
    reg = registration(store, registered)
    names = [f"web-{i}" for i in range(50)]
    sessions = await asyncio.gather(*(reg.register(hello(web_dataplane(n))) for n in names))
    assert sorted(s.name for s in reg.sessions.values()) == sorted(names)
    assert len(registered) == 50
    assert store.batches == 0  # first registrations: written at their first reports (183)
    assert store.reads < 10  # one each before; coalesced now
    # Their first reports write their Dataplanes and insights, coalesced too.
    await asyncio.gather(*(reg.report_ready(s, {0: True}) for s in sessions))
    for name in names:
        assert (await store.get("Dataplane", "default", name)).meta.labels
        insight = await store.get("DataplaneInsight", "default", name)
        assert insight.spec["subscriptions"][-1]["controlPlaneInstanceId"] == "cp-1"
    assert store.batches < 10


async def test_the_same_name_concurrently_one_wins_a_different_one_is_refused(
    store: CountingStore,
) -> None:
    reg = registration(store, [])
    first = web_dataplane("web-1")
    other = web_dataplane("web-1", port=8081)
    results = await asyncio.gather(
        reg.register(hello(first)), reg.register(hello(other)), return_exceptions=True
    )
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], dpstate.Refused)
    [session] = reg.sessions.values()
    assert session is results[0]


async def test_the_same_proxy_again_concurrently_takes_over(store: CountingStore) -> None:
    reg = registration(store, [])
    dp = web_dataplane("web-1")
    old, new = await asyncio.gather(reg.register(hello(dp)), reg.register(hello(dp)))
    assert reg.sessions[new.key] is new
    assert old.stopped.is_set()  # replaced without marking anything offline
    insight = await store.get("DataplaneInsight", "default", "web-1")
    subs = insight.spec["subscriptions"]
    assert len(subs) == 2 and "disconnectTime" in subs[0] and "disconnectTime" not in subs[1]


async def test_health_reported_then_a_reconnect_keeps_it(store: CountingStore) -> None:
    reg = registration(store, [])
    dp = web_dataplane("web-1")
    session = await reg.register(hello(dp))
    await reg.set_ready(session, {0: True, 1: True})
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: True, 1: True}
    again = await reg.register(hello(dp))
    assert again.ready == {0: True, 1: True}
    await reg.unregister(again)
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: False, 1: False}  # offline once it disconnects


async def test_a_restart_racing_its_old_streams_disconnection_stays_consistent(
    store: CountingStore,
) -> None:
    """A restarted sidecar's new stream registers while its old stream's disconnection is
    being written: what the new session believes about its inbounds' health is what is
    stored (the offline write must not land after the new registration read the ready one:
    the sidecar would then report ready, change nothing, and stay not ready; decision 131)."""
    reg = registration(store, [])
    dp = web_dataplane("web-1")
    old = await reg.register(hello(dp))
    await reg.set_ready(old, {0: True, 1: True})
    _, new = await asyncio.gather(reg.unregister(old), reg.register(hello(dp)))
    assert reg.sessions[new.key] is new
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {i: new.ready.get(i, False) for i in (0, 1)}


async def test_a_report_that_changes_readiness_is_written_without_reading_back(
    store: CountingStore,
) -> None:
    reg = registration(store, [])
    session = await reg.register(hello(web_dataplane("web-1")))
    reads, batches = store.reads, store.batches
    await reg.report_ready(session, {0: True, 1: False})
    assert (store.reads, store.batches) == (reads, batches + 1)
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: True, 1: False}
    assert stored.spec == dpstate.with_health(session.resource, {0: True}, default=False).spec


async def test_a_flush_writes_the_insights_changed_since_their_session_wrote_them(
    store: CountingStore,
) -> None:
    reg = registration(store, [])
    web1 = await reg.register(hello(web_dataplane("web-1")))
    web2 = await reg.register(hello(web_dataplane("web-2")))
    insights = InsightWriter(Records(store, ZONE), CertIssuer())
    await insights.flush([web1, web2])  # their first insights (none written at registration)
    web1.acked("v1")
    web2.insight_dirty = True  # marked, but nothing in it changed since its registration
    reads, revision = store.reads, await store.revision()
    await insights.flush([web1, web2])
    assert store.reads == reads  # compared with what each session wrote, not read back
    assert await store.revision() == revision + 1  # one batch: web-1's insight only
    stored = await store.get("DataplaneInsight", "default", "web-1")
    assert stored.spec["subscriptions"][-1]["config"]["acknowledged"] == "v1"
    assert not web1.insight_dirty and not web2.insight_dirty
    await insights.flush([web1, web2])  # nothing dirty: nothing written
    assert await store.revision() == revision + 1


async def test_a_first_registration_leaves_the_insight_to_the_first_report(
    store: CountingStore,
) -> None:
    """Decisions 179, 183: a sidecar's first registration writes nothing; its first report
    writes its Dataplane with the health reported and its insight in one batch, and the next
    flush nothing."""
    reg = registration(store, [])
    revision = await store.revision()
    session = await reg.register(hello(web_dataplane("web-1")))
    assert await store.revision() == revision
    keys = [("Dataplane", "default", "web-1"), ("DataplaneInsight", "default", "web-1")]
    assert (await store.get_many(keys)) == {}
    assert session.insight_dirty  # a flush writes them if no report comes first

    session.acked("v1")
    await reg.report_ready(session, {0: True})
    assert await store.revision() == revision + 1  # Dataplane and insight, one commit
    stored = await store.get("DataplaneInsight", "default", "web-1")
    sub = stored.spec["subscriptions"][-1]
    assert sub["controlPlaneInstanceId"] == "cp-1" and sub["config"]["acknowledged"] == "v1"
    dataplane = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(dataplane)[0] is True
    assert dataplane.meta.labels == {"kuma.io/origin": "zone", "kuma.io/zone": ZONE}
    await InsightWriter(Records(store, ZONE), CertIssuer()).flush([session])
    assert await store.revision() == revision + 1


async def test_a_flush_before_the_first_report_writes_the_dataplane_too(
    store: CountingStore,
) -> None:
    """Decision 183: a sidecar that has not reported by the next flush is stored then, not
    ready, with its insight; its first report then writes its health only."""
    reg = registration(store, [])
    session = await reg.register(hello(web_dataplane("web-1")))
    assert await store.get_many([("Dataplane", "default", "web-1")]) == {}
    revision = await store.revision()
    await InsightWriter(Records(store, ZONE), CertIssuer()).flush([session])
    assert await store.revision() == revision + 1
    assert dpstate.health_of(await store.get("Dataplane", "default", "web-1")) == {
        0: False,
        1: False,
    }
    assert await store.get("DataplaneInsight", "default", "web-1")
    await reg.report_ready(session, session.ready)  # no change: nothing to write
    assert await store.revision() == revision + 1
    await reg.report_ready(session, {0: True})
    assert dpstate.health_of(await store.get("Dataplane", "default", "web-1"))[0] is True


async def test_a_disconnection_before_the_first_report_stores_it_offline(
    store: CountingStore,
) -> None:
    reg = registration(store, [])
    session = await reg.register(hello(web_dataplane("web-1")))
    await reg.unregister(session)
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: False, 1: False}
    insight = await store.get("DataplaneInsight", "default", "web-1")
    assert "disconnectTime" in insight.spec["subscriptions"][-1]


async def test_a_first_report_without_a_readiness_change_writes_the_insight_only(
    store: CountingStore,
) -> None:
    reg = registration(store, [])
    announced = web_dataplane("web-1")
    await store.create(announced)  # through the API before: registered at once, not its insight
    session = await reg.register(hello(announced))
    dataplane = await store.get("Dataplane", "default", "web-1")
    assert dataplane.meta.labels["kuma.io/zone"] == ZONE
    await reg.report_ready(session, session.ready)
    assert (await store.get("Dataplane", "default", "web-1")) == dataplane
    assert await store.get("DataplaneInsight", "default", "web-1")
    revision = await store.revision()
    await reg.report_ready(session, session.ready)  # written already: nothing to write
    assert await store.revision() == revision


async def test_a_reconnection_writes_the_insight_at_registration(store: CountingStore) -> None:
    """A proxy with an insight stored (a restart, a takeover) shows its new subscription at
    once: a crash sweep's compare-and-swap on the old insight must fail (decision 131)."""
    reg = registration(store, [])
    dp = web_dataplane("web-1")
    first = await reg.register(hello(dp))
    await reg.report_ready(first, {0: True})
    await reg.unregister(first)
    again = await reg.register(hello(dp))
    insight = await store.get("DataplaneInsight", "default", "web-1")
    subs = insight.spec["subscriptions"]
    assert [s["id"] for s in subs] == [first.subscription.id, again.subscription.id]
    assert again.insight_written is not None and not again.insight_dirty
    assert again.insight_written.spec == insight.spec


async def test_a_flush_racing_the_first_report_does_not_undo_its_health(
    store: CountingStore,
) -> None:
    """Decision 183: the first report's write is in flight when a flush comes; the flush must
    not write the Dataplane again with the health from before the report (its write would
    land last, and the sidecar stay not ready: its later reports change nothing)."""
    records = Records(store, ZONE)
    insights = InsightWriter(records, CertIssuer())
    reg = Registration(
        records, insights, ZONE, "cp-1", mesh_exists=lambda m: True, on_registered=print
    )
    session = await reg.register(hello(web_dataplane("web-1")))
    store.gate = asyncio.Event()  # the store holds the next write until released
    report = asyncio.create_task(reg.report_ready(session, {0: True, 1: True}))
    await async_wait_until(lambda: _true(store.waiting), what="the report's write in flight")
    session.acked("v1")  # an ACK meanwhile: the flush has its insight to write
    flush = asyncio.create_task(insights.flush([session]))
    await asyncio.sleep(0.01)  # the flush's write queued behind it, if it makes one
    store.gate.set()
    await asyncio.gather(report, flush)
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: True, 1: True}


async def _true(value: bool) -> bool:
    return value
