"""Receiver details: what is applied, what is NACKed and why, and what counts as held."""

from __future__ import annotations

from dataclasses import replace

from meshfed.kds.messages import SyncResponse, WireResource, to_wire
from meshfed.kds.receiver import Receiver
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.model import Key, Resource
from tests.unit.kds.harness import accept_all, res

MTP = "MeshTrafficPermission"


def _resp(*resources: WireResource, removed: list[Key] | None = None) -> SyncResponse:
    return SyncResponse(MTP, list(resources), removed or [], nonce="7")


def test_ack_carries_the_nonce_and_the_change_set_everything() -> None:
    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "a", x=1)), removed=[Key("default", "gone")]), accept_all
    )
    assert reply.response_nonce == "7" and reply.error_detail is None
    assert [r.name for r in changes.upserts] == ["a"]
    assert changes.upserts[0].spec == {"x": 1}
    assert changes.removes == [Key("default", "gone")]
    assert changes.versions == {Key("default", "a"): res(MTP, "a", x=1).content_hash()}


def test_held_versions_change_only_on_commit() -> None:
    rcv = Receiver([MTP], held={MTP: {Key("default", "gone"): "v0"}})
    changes, _ = rcv.handle_response(
        _resp(to_wire(res(MTP, "a")), removed=[Key("default", "gone")]), accept_all
    )
    assert rcv.held(MTP) == {Key("default", "gone"): "v0"}
    assert rcv.subscribe_requests()[0].initial_resource_versions == {Key("default", "gone"): "v0"}
    rcv.commit(changes)
    assert rcv.held(MTP) == {Key("default", "a"): res(MTP, "a").content_hash()}
    assert rcv.insight(MTP).resources_applied == 1
    assert rcv.insight(MTP).removals_applied == 1


def test_bad_payloads_are_nacked_by_name_with_a_reason() -> None:
    good = to_wire(res(MTP, "good"))
    bad_json = replace(to_wire(res(MTP, "badjson")), spec=b"{not json")
    not_object = replace(to_wire(res(MTP, "list")), spec=b"[1, 2]")
    not_utf8 = replace(to_wire(res(MTP, "bytes")), spec=b"\xff\xfe")
    no_version = replace(to_wire(res(MTP, "nover")), version="")
    no_name = replace(to_wire(res(MTP, "x")), name="")
    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(good, bad_json, not_object, not_utf8, no_version, no_name), accept_all
    )
    assert [r.name for r in changes.upserts] == ["good"]
    assert reply.error_detail is not None
    reasons = {f.key.name: f.reason for f in reply.error_detail.failed}
    assert set(reasons) == {"badjson", "list", "bytes", "nover", ""}
    assert "not valid JSON" in reasons["badjson"]
    assert reasons["list"] == "spec must be a JSON object"
    assert "without a version" in reasons["nover"]
    assert "without a name" in reasons[""]
    assert "5 MeshTrafficPermission resource(s) rejected" in reply.error_detail.message
    assert rcv.insight(MTP).last_nack_error == reply.error_detail.message


def test_validator_errors_and_crashes_become_nack_reasons() -> None:
    def validate(r: Resource) -> str | None:
        if r.name == "invalid":
            raise ValidationError([FieldError("spec.action", "must be Allow or Deny")])
        if r.name == "crash":
            raise RuntimeError("boom")
        return None

    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "ok")), to_wire(res(MTP, "invalid")), to_wire(res(MTP, "crash"))),
        validate,
    )
    assert [r.name for r in changes.upserts] == ["ok"]
    assert reply.error_detail is not None
    reasons = {f.key.name: f.reason for f in reply.error_detail.failed}
    assert "spec.action: must be Allow or Deny" in reasons["invalid"]
    assert "boom" in reasons["crash"]


def test_key_both_upserted_and_removed_is_refused() -> None:
    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "a")), removed=[Key("default", "a")]), accept_all
    )
    assert changes.empty
    assert reply.error_detail is not None
    assert reply.error_detail.failed[0].key == Key("default", "a")


def test_duplicate_upsert_last_one_wins() -> None:
    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "a", n=1)), to_wire(res(MTP, "a", n=2))), accept_all
    )
    assert reply.error_detail is None
    assert [r.spec for r in changes.upserts] == [{"n": 2}]
    assert changes.versions == {Key("default", "a"): res(MTP, "a", n=2).content_hash()}


def test_subscribe_requests_one_per_type_with_held_versions() -> None:
    held = {MTP: {Key("m", "a"): "v1"}, "Unknown": {Key("m", "b"): "v2"}}
    rcv = Receiver([MTP, "MeshTimeout"], held=held)
    reqs = {r.type: r for r in rcv.subscribe_requests()}
    assert set(reqs) == {MTP, "MeshTimeout"}
    assert all(r.is_subscribe for r in reqs.values())
    assert reqs[MTP].initial_resource_versions == {Key("m", "a"): "v1"}
    assert reqs["MeshTimeout"].initial_resource_versions == {}


def test_a_remove_without_a_name_is_nacked_not_applied() -> None:
    """Found by tests/fuzz/test_kds_receive.py: the store refuses to look up an empty name,
    so applying such a remove raised and dropped the stream, and the peer resent it forever."""
    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "a")), removed=[Key("default", ""), Key("default", "b")]),
        accept_all,
    )
    assert changes.removes == [Key("default", "b")]
    assert [r.name for r in changes.upserts] == ["a"]
    assert reply.error_detail is not None
    [failed] = reply.error_detail.failed
    assert failed.key == Key("default", "") and "without a name" in failed.reason


def test_a_refused_resource_is_named_with_its_reason_until_accepted() -> None:
    """Issue 16: the NACK, the log and ZoneInsight said only "1 VirtualIPs resource(s)
    rejected: 'zone-1'"; each refused resource now carries its reason, until it is fixed."""

    def refuse_long(r: Resource) -> str | None:
        return "key 'x…x.mesh' is longer than 253 characters" if r.name == "bad" else None

    rcv = Receiver([MTP])
    changes, reply = rcv.handle_response(
        _resp(to_wire(res(MTP, "bad")), to_wire(res(MTP, "good"))), refuse_long
    )
    rcv.commit(changes)
    assert reply.error_detail is not None
    message = reply.error_detail.message
    assert message.startswith("1 MeshTrafficPermission resource(s) rejected: 'bad' in mesh")
    assert "longer than 253 characters" in message
    insight = rcv.insight(MTP)
    assert insight.last_nack_error == message
    assert insight.rejected == {"'bad' in mesh 'default'": refuse_long(res(MTP, "bad"))}
    assert insight.to_json()["rejected"] == insight.rejected

    changes, reply = rcv.handle_response(_resp(to_wire(res(MTP, "bad", x=2))), accept_all)
    rcv.commit(changes)
    assert reply.error_detail is None and rcv.insight(MTP).rejected == {}


def test_a_nack_of_many_resources_stays_bounded() -> None:
    rcv = Receiver([MTP])
    many = [to_wire(res(MTP, f"r{i}")) for i in range(2000)]
    _, reply = rcv.handle_response(_resp(*many), lambda r: "no " * 200)
    assert reply.error_detail is not None and len(reply.error_detail.failed) == 2000
    assert len(reply.error_detail.message) <= 4096 + 40
    assert reply.error_detail.message.endswith("more")
