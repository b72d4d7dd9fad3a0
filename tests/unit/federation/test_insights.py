"""ZoneInsight rendering and persistence, and the KDS option parsers (pure)."""

from __future__ import annotations

import pytest

from global_cp.insights import (
    MAX_SUBSCRIPTIONS,
    SentType,
    Subscription,
    ZoneRecord,
    epoch,
    key_from_text,
    key_text,
    rfc3339,
    subscription_status,
)
from meshfed.config import Address, parse_duration
from meshfed.kds.insight import ReceiveInsight, SendInsight
from meshfed.kds.options import parse_grpc_target, parse_zone_name
from meshfed.resources.model import Key


def test_status_totals_and_errors_come_from_the_engines_counters() -> None:
    sent = SendInsight(responses_sent=3, responses_acked=2, responses_nacked=1, resources_sent=7)
    sent.last_nack_error = "1 MeshTimeout resource(s) rejected: 'x'"
    sent.last_nack_time = 1_700_000_000.0
    sent.last_sent_time = 1_700_000_001.0
    got = ReceiveInsight(responses_received=4, acks_sent=4, resources_applied=9)
    got.rejected["'dp' in mesh 'default'"] = "networking.address: 0.0.0.0 is not allowed"
    status = subscription_status(
        {"MeshTimeout": SentType(sent, pending=1), "Mesh": SentType(SendInsight(), 0)},
        {"Dataplane": got},
    )
    assert status["total"] == {
        "responsesSent": 3,
        "responsesAcknowledged": 2,
        "responsesRejected": 1,
        "resourcesSent": 7,
    }
    mt = status["stat"]["MeshTimeout"]
    assert mt["pending"] == 1 and mt["lastError"] == sent.last_nack_error
    assert mt["lastErrorTime"] == rfc3339(1_700_000_000.0)
    assert status["stat"]["Mesh"]["lastError"] is None
    assert status["received"]["total"]["resourcesApplied"] == 9
    assert status["received"]["stat"]["Dataplane"]["rejected"] == got.rejected  # per resource
    assert status["lastUpdateTime"] == rfc3339(1_700_000_001.0)
    # No activity, no update time: an idle zone's stored insight does not change.
    assert subscription_status({"Mesh": SentType(SendInsight(), 0)}, {})["lastUpdateTime"] is None


def test_zone_record_survives_a_round_trip_through_its_stored_form() -> None:
    rec = ZoneRecord("zone-1")
    for i in range(MAX_SUBSCRIPTIONS + 2):
        rec.add(Subscription(f"s{i}", "g-1", 1_700_000_000.0 + i))
    rec.subscriptions[0].disconnect_time = 1_700_000_100.0
    rec.last_health_check = 1_700_000_050.5
    rec.versions = {"MeshTimeout": {Key("default", "a"): "v1"}, "Mesh": {Key("", "m"): "v2"}}
    body = rec.insight_body()
    assert [s["id"] for s in body["subscriptions"]] == [f"s{i}" for i in range(2, 7)]
    assert body["versions"] == {"Mesh": {"m": "v2"}, "MeshTimeout": {"default/a": "v1"}}

    # The newest subscription was still open when the global died: it is closed at load.
    back = ZoneRecord.from_insight("zone-1", body, closed_at=1_700_000_200.0)
    assert back.versions == rec.versions
    assert back.last_health_check == pytest.approx(rec.last_health_check)
    assert [s.id for s in back.subscriptions] == [s.id for s in rec.subscriptions]
    assert back.subscriptions[-1].disconnect_time == 1_700_000_200.0
    assert back.written == body
    # Whatever an old or foreign writer left there never breaks loading.
    junk = {"subscriptions": [1, {"connectTime": "nope"}], "versions": {"A": 3}}
    assert ZoneRecord.from_insight("z", junk, 0.0).subscriptions == []


def test_times_and_keys_have_one_text_form() -> None:
    assert epoch(rfc3339(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)
    assert rfc3339(None) is None and epoch("garbage") is None and epoch(None) is None
    for key in (Key("default", "a.b"), Key("", "zi-1.abc")):
        assert key_from_text(key_text(key)) == key


@pytest.mark.parametrize(
    ("raw", "seconds"), [("1s", 1.0), ("250ms", 0.25), ("2m", 120.0), ("1.5", 1.5), (3, 3.0)]
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["0s", "-1s", "soon", "1d", True])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_global_kds_url_and_zone_name() -> None:
    assert parse_grpc_target("grpc://127.0.0.1:7685") == Address("127.0.0.1", 7685)
    assert parse_grpc_target("127.0.0.1:7685") == Address("127.0.0.1", 7685)
    assert parse_grpc_target("") is None
    for bad in ("https://h:1", "grpc://h", "grpc://h:0"):
        with pytest.raises(ValueError):
            parse_grpc_target(bad)
    assert parse_zone_name(" zone-1 ") == "zone-1"
    for bad in ("", "Zone_1", "z" * 64):
        with pytest.raises(ValueError):
            parse_zone_name(bad)
