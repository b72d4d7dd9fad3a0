"""Sender and Receiver through the in-memory link: the behaviours KDS promises."""

from __future__ import annotations

import pytest

from meshfed.kds.convert import response_to_pb
from meshfed.kds.messages import (
    ErrorDetail,
    FailedResource,
    KdsProtocolError,
    SyncRequest,
    SyncResponse,
    to_wire,
    upsert_size,
)
from meshfed.kds.receiver import Receiver
from meshfed.kds.sender import Sender
from meshfed.resources.model import Key, Resource
from tests.unit.kds.harness import Link, new_link, res

MTP = "MeshTrafficPermission"
MT = "MeshTimeout"


def test_initial_full_sync() -> None:
    link = new_link([MTP, MT])
    for i in range(5):
        link.put(res(MTP, f"p{i}", action="Allow"))
    link.put(res(MT, "t", mesh="other", timeout="5s"))
    link.run()
    assert link.receiver_digest() == link.sender_digest()
    assert len(link.store) == 6
    assert link.store[(MT, Key("other", "t"))].spec == {"timeout": "5s"}
    assert link.sender.in_sync(MTP) and link.sender.in_sync(MT)
    assert link.sender.insight(MTP).responses_acked == 1
    assert (
        link.sender.acked_version(MTP, Key("default", "p0"))
        == res(MTP, "p0", action="Allow").content_hash()
    )


def test_update_and_delete_propagate() -> None:
    link = new_link([MTP])
    link.put(res(MTP, "a", action="Allow"))
    link.put(res(MTP, "b", action="Allow"))
    link.run()
    link.put(res(MTP, "a", action="Deny"))
    link.delete(MTP, "b")
    link.run()
    assert link.store[(MTP, Key("default", "a"))].spec == {"action": "Deny"}
    assert (MTP, Key("default", "b")) not in link.store
    assert link.receiver_digest() == link.sender_digest()
    assert link.delivered[-1].removed == [Key("default", "b")]
    assert link.sender.acked_version(MTP, Key("default", "b")) is None


def test_labels_and_times_travel() -> None:
    link = new_link([MTP])
    r = res(MTP, "a", action="Allow")
    r.meta.labels = {"team": "x"}
    r.meta.creation_time = "2026-01-01T00:00:00Z"
    link.put(r)
    link.run()
    got = link.store[(MTP, Key("default", "a"))]
    assert got.meta.labels == {"team": "x"}
    assert got.meta.creation_time == "2026-01-01T00:00:00Z"
    assert got.content_hash() == r.content_hash()


def test_at_most_one_response_in_flight_per_type() -> None:
    link = new_link([MTP, MT])
    link.run()  # subscriptions
    link.put(res(MTP, "a"))
    link.put(res(MT, "t"))
    assert link.produce() == 2  # one per type: types do not wait for each other
    link.put(res(MTP, "b"))
    assert link.sender.next_response(MTP) is None
    assert MTP not in link.sender.ready_types()
    link.deliver_down()  # MTP
    assert link.sender.next_response(MTP) is None  # the ACK has not arrived yet
    link.deliver_up()
    nxt = link.sender.next_response(MTP)
    assert nxt is not None and [r.name for r in nxt.resources] == ["b"]


def test_burst_of_changes_is_coalesced_to_the_newest_state() -> None:
    link = new_link([MTP])
    link.put(res(MTP, "warmup"))
    link.run()
    link.put(res(MTP, "hot", n=-1))
    assert link.produce() == 1  # in flight now
    for i in range(100):
        link.put(res(MTP, "hot", n=i))
    link.run()
    # the first response (n=-1) and one more carrying only the newest state
    hot = [r for resp in link.delivered for r in resp.resources if r.name == "hot"]
    assert len(hot) == 2
    assert link.store[(MTP, Key("default", "hot"))].spec == {"n": 99}
    assert link.receiver_digest() == link.sender_digest()


def test_burst_before_sending_goes_in_one_response() -> None:
    link = new_link([MTP])
    link.run()
    for i in range(100):
        link.put(res(MTP, "hot", n=i))
    link.run()
    assert len(link.delivered) == 1
    assert link.sent_resources() == 1


def test_change_reverted_while_in_flight_is_not_resent() -> None:
    link = new_link([MTP])
    link.run()
    link.put(res(MTP, "a", n=1))
    link.produce()
    link.put(res(MTP, "a", n=2))
    link.put(res(MTP, "a", n=1))  # back to what is in flight
    link.run()
    assert link.sent_resources() == 1


def test_resume_after_reconnect_sends_only_the_difference() -> None:
    link = new_link([MTP])
    for i in range(1000):
        link.put(res(MTP, f"p{i:04}", n=i))
    link.run()
    assert link.sent_resources() == 1000
    link.drop()
    link.put(res(MTP, "p0500", n=-1))
    link.delivered.clear()
    link.connect()
    link.run()
    assert link.sent_resources() == 1
    assert link.sent_removals() == 0
    assert link.receiver_digest() == link.sender_digest()


def test_resume_with_a_restarted_receiver_and_sender() -> None:
    """Both sides restart: the receiver rebuilds held versions from its store."""
    link = new_link([MTP])
    for i in range(50):
        link.put(res(MTP, f"p{i}", n=i))
    link.run()
    store = dict(link.store)
    held = {MTP: {key: r.content_hash() for (_t, key), r in store.items()}}
    sender = Sender([MTP])
    wanted = [to_wire(res(MTP, f"p{i}", n=i)) for i in range(1, 50)]  # p0 deleted meanwhile
    wanted.append(to_wire(res(MTP, "new")))
    sender.replace_all(MTP, wanted)
    link2 = Link(sender, Receiver([MTP], held=held), store=store)
    link2.connect()
    link2.run()
    assert link2.sent_resources() == 1
    assert link2.sent_removals() == 1
    assert link2.receiver_digest() == link2.sender_digest()


def test_dropped_stream_deletes_nothing() -> None:
    link = new_link([MTP])
    for i in range(10):
        link.put(res(MTP, f"p{i}"))
    link.run()
    before = link.receiver_digest()
    link.put(res(MTP, "p0", changed=True))
    link.produce()
    link.drop()  # the response is lost with the stream
    assert link.receiver_digest() == before
    # A new sender that has not loaded its state yet (a global restarting) says nothing,
    # even though the zone declares everything it holds.
    fresh = Link(Sender([MTP]), link.receiver, store=link.store)
    fresh.connect()
    fresh.run()
    assert fresh.delivered == []
    assert fresh.receiver_digest() == before
    # Once loaded, only the real differences go out.
    fresh.sender.replace_all(MTP, [to_wire(r) for r in link.store.values()])
    fresh.run()
    assert fresh.delivered == []


def test_response_that_does_not_mention_a_resource_keeps_it() -> None:
    link = new_link([MTP])
    link.put(res(MTP, "a"))
    link.put(res(MTP, "b"))
    link.run()
    link.put(res(MTP, "a", n=1))
    link.run()
    assert (MTP, Key("default", "b")) in link.store


def _reject_bad(r: Resource) -> str | None:
    return "spec.bad is not allowed" if r.spec.get("bad") else None


def test_nack_of_one_resource_applies_the_rest_and_does_not_loop() -> None:
    link = new_link([MTP], validate=_reject_bad)
    for i in range(5):
        link.put(res(MTP, f"p{i}", bad=(i == 2)))
    link.run()
    assert len(link.delivered) == 1  # no resend loop
    nack = link.replies[-1]
    assert nack.error_detail is not None
    assert [f.key for f in nack.error_detail.failed] == [Key("default", "p2")]
    assert nack.error_detail.failed[0].reason == "spec.bad is not allowed"
    assert {k.name for (_t, k) in link.store} == {"p0", "p1", "p3", "p4"}
    ins = link.sender.insight(MTP)
    assert ins.responses_nacked == 1
    assert "p2" in ins.last_nack_error
    assert ins.last_nack_time is not None
    assert ins.rejected == {str(Key("default", "p2")): "spec.bad is not allowed"}
    assert link.sender.in_sync(MTP)  # in sync apart from the rejected one
    assert link.receiver.insight(MTP).nacks_sent == 1
    # Changing the resource sends it again; once accepted, the rejection is forgotten.
    link.put(res(MTP, "p2", bad=False))
    link.run()
    assert len(link.delivered) == 2
    assert link.receiver_digest() == link.sender_digest()
    assert link.sender.insight(MTP).rejected == {}


def test_nack_naming_nothing_rejects_the_whole_response_without_looping() -> None:
    sender = Sender([MTP])
    sender.replace_all(MTP, [to_wire(res(MTP, "a"))])
    sender.handle_request(SyncRequest(MTP))
    resp = sender.next_response(MTP)
    assert resp is not None
    sender.handle_request(SyncRequest(MTP, resp.nonce, ErrorDetail("store is read-only")))
    assert sender.next_response(MTP) is None
    assert sender.insight(MTP).last_nack_error == "store is read-only"
    assert sender.acked_version(MTP, Key("default", "a")) is None
    # A re-subscribe (a new stream) gives rejected resources another chance.
    sender.handle_request(SyncRequest(MTP))
    again = sender.next_response(MTP)
    assert again is not None and [r.name for r in again.resources] == ["a"]


def test_nack_of_a_removal_is_not_retried_in_a_loop() -> None:
    link = new_link([MTP])
    link.put(res(MTP, "a"))
    link.run()
    link.delete(MTP, "a")
    resp = link.sender.next_response(MTP)
    assert resp is not None and resp.removed == [Key("default", "a")]
    link.sender.handle_request(
        SyncRequest(
            MTP, resp.nonce, ErrorDetail("no", [FailedResource(Key("default", "a"), "in use")])
        )
    )
    assert link.sender.next_response(MTP) is None
    assert link.sender.acked_version(MTP, Key("default", "a")) is not None  # still held there


def test_stale_ack_is_ignored() -> None:
    link = new_link([MTP])
    link.run()
    link.put(res(MTP, "a"))
    resp = link.sender.next_response(MTP)
    assert resp is not None
    link.sender.handle_request(SyncRequest(MTP, "not-" + resp.nonce))
    assert link.sender.in_flight(MTP)
    assert link.sender.insight(MTP).stale_replies == 1


def test_unknown_types_are_errors_not_crashes() -> None:
    sender = Sender([MTP])
    with pytest.raises(KdsProtocolError, match="'Nope'"):
        sender.handle_request(SyncRequest("Nope"))
    receiver = Receiver([MTP])
    changes, reply = receiver.handle_response(
        SyncResponse("Nope", [to_wire(res("Nope", "x"))], nonce="1"), lambda r: None
    )
    assert changes.empty
    assert reply.error_detail is not None and "'Nope'" in reply.error_detail.message


def test_responses_are_split_to_fit_the_max_message_size() -> None:
    one = to_wire(res(MTP, "p000", blob="x" * 300))
    limit = upsert_size(one) * 4 + 100
    link = new_link([MTP], max_message_size=limit)
    for i in range(20):
        link.put(res(MTP, f"p{i:03}", blob="x" * 300))
    link.run()
    assert len(link.delivered) >= 5
    assert all(response_to_pb(r).ByteSize() <= limit for r in link.delivered)
    assert link.receiver_digest() == link.sender_digest()


def test_oversized_resource_is_reported_by_type_and_name_and_does_not_block_others() -> None:
    link = new_link([MTP, MT], max_message_size=2000)
    link.put(res(MTP, "small"))
    link.put(res(MTP, "huge", blob="x" * 5000))
    link.put(res(MT, "t"))
    link.run()
    assert {k.name for (_t, k) in link.store} == {"small", "t"}
    errors = link.sender.drain_errors()
    assert len(errors) == 1
    assert "MeshTrafficPermission 'huge' in mesh 'default'" in errors[0]
    assert "max message size of 2000 bytes" in errors[0]
    assert link.sender.insight(MTP).last_error == errors[0]
    assert str(Key("default", "huge")) in link.sender.insight(MTP).rejected
    # not retried while unchanged; sent once it fits
    link.run()
    assert link.sender.drain_errors() == []
    link.put(res(MTP, "huge", blob="x"))
    link.run()
    assert (MTP, Key("default", "huge")) in link.store
    assert link.receiver_digest() == link.sender_digest()


def test_nothing_is_sent_before_the_peer_subscribes() -> None:
    sender = Sender([MTP])
    sender.replace_all(MTP, [to_wire(res(MTP, "a"))])
    assert sender.next_response(MTP) is None
    assert sender.ready_types() == []
    sender.handle_request(SyncRequest(MTP))
    assert sender.ready_types() == [MTP]


def test_replace_all_sends_the_difference() -> None:
    link = new_link([MTP])
    link.sender.replace_all(MTP, [to_wire(res(MTP, n)) for n in "abc"])
    link.run()
    link.delivered.clear()
    link.sender.replace_all(MTP, [to_wire(res(MTP, "a")), to_wire(res(MTP, "b", n=1))])
    link.run()
    assert link.sent_resources() == 1 and link.sent_removals() == 1
    assert link.receiver_digest() == link.sender_digest()


def test_after_a_disconnect_nothing_is_sent_until_the_new_subscribe() -> None:
    """Found by the property test: writing on a new stream before the peer's subscribe was
    processed made the sender lose track of what the peer held, so a later delete was lost."""
    link = new_link([MTP])
    link.put(res(MTP, "a"))
    link.run()
    link.drop()
    link.connect()
    link.put(res(MTP, "a", n=1))
    assert link.produce() == 0
    link.delete(MTP, "a")
    link.run()
    assert link.store == {}
    assert link.sender.acked_version(MTP, Key("default", "a")) is None
