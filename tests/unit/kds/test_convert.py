"""Engine dataclasses survive the trip through protobuf bytes, and size estimates hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshfed._gen import kds_pb2 as pb
from meshfed.kds.convert import request_from_pb, request_to_pb, response_from_pb, response_to_pb
from meshfed.kds.messages import (
    ErrorDetail,
    FailedResource,
    SyncRequest,
    SyncResponse,
    WireResource,
    removed_size,
    response_overhead,
    upsert_size,
)
from meshfed.resources.model import Key

text = st.text(max_size=40)
keys = st.builds(Key, mesh=text, name=text)
wires = st.builds(
    WireResource,
    name=text,
    mesh=text,
    version=text,
    labels=st.dictionaries(text, text, max_size=4),
    creation_time=text,
    modification_time=text,
    spec=st.binary(max_size=300),
)
responses = st.builds(
    SyncResponse,
    type=text,
    resources=st.lists(wires, max_size=5),
    removed=st.lists(keys, max_size=5),
    nonce=st.text(max_size=20, alphabet="0123456789"),
)
details = st.none() | st.builds(
    ErrorDetail,
    message=text,
    failed=st.lists(st.builds(FailedResource, key=keys, reason=text), max_size=3),
)
requests = st.builds(
    SyncRequest,
    type=text,
    response_nonce=text,
    error_detail=details,
    initial_resource_versions=st.dictionaries(keys, text, max_size=5),
)


def _over_wire(msg: pb.SyncResponse | pb.SyncRequest) -> bytes:
    return msg.SerializeToString()


@given(responses)
def test_response_round_trip(resp: SyncResponse) -> None:
    data = _over_wire(response_to_pb(resp))
    assert response_from_pb(pb.SyncResponse.FromString(data)) == resp


@given(requests)
def test_request_round_trip(req: SyncRequest) -> None:
    data = _over_wire(request_to_pb(req))
    assert request_from_pb(pb.SyncRequest.FromString(data)) == req


def test_empty_nack_is_still_a_nack() -> None:
    req = SyncRequest("T", "3", ErrorDetail(""))
    back = request_from_pb(pb.SyncRequest.FromString(_over_wire(request_to_pb(req))))
    assert back.is_nack and back.error_detail == ErrorDetail("")
    ack = request_from_pb(
        pb.SyncRequest.FromString(_over_wire(request_to_pb(SyncRequest("T", "3"))))
    )
    assert not ack.is_nack


@given(responses)
def test_size_estimate_is_an_upper_bound(resp: SyncResponse) -> None:
    estimate = response_overhead(resp.type) + sum(upsert_size(r) for r in resp.resources)
    estimate += sum(removed_size(k) for k in resp.removed)
    actual = response_to_pb(resp).ByteSize()
    assert actual <= estimate
    # and tight: only the nonce allowance and explicit empty map entries are slack
    slack = 26 + sum(4 * len(r.labels) for r in resp.resources)
    assert estimate - actual <= slack
