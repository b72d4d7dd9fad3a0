"""Fuzzing what a zone does with KDS responses from the global (the receive side a zone-cp
runs: protobuf decode, `Receiver.handle_response` with the zone's validator, the store batch,
`commit`), over the memory store. Whatever arrives, in any order:

- nothing raises but a store conflict (an exception from apply would drop the stream, and the
  global would resend the same poison forever);
- every refused resource is named in the NACK with its own reason, and the rest applies;
- the zone's own resources are never overwritten or deleted;
- after each response the store holds exactly what the receiver says it holds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshfed._gen import kds_pb2 as pb
from meshfed.kds.convert import response_from_pb, response_to_pb
from meshfed.kds.messages import SyncResponse, WireResource
from meshfed.kds.naming import types_global_to_zone
from meshfed.kds.receive import zone_receive_side
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.bounds import fuzz

REG = default_registry()
DOWN = types_global_to_zone(REG)
GLOBAL = {LABEL_ORIGIN: ORIGIN_GLOBAL}
OWN = {LABEL_ORIGIN: "zone", "kuma.io/zone": "zone-1"}
NAMES = st.sampled_from(["a", "b", "c", "own", "x" * 254, "a..b", "", "B", "default"])
MESHES = st.sampled_from(["default", "", "other", "a..b"])


def timeout_spec(idle: Any) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
    }


SPECS = st.one_of(
    st.sampled_from(["10s", "1m", "banana", "", "-1s"]).map(
        lambda i: json.dumps(timeout_spec(i)).encode()
    ),
    st.sampled_from([b"{}", b"[]", b"null", b"{", b"\xff\xfe", b'{"targetRef": 1}', b""]),
    st.binary(max_size=40),
)
LABELS: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just(GLOBAL),
    st.just(OWN),
    st.just({}),
    st.dictionaries(
        st.sampled_from([LABEL_ORIGIN, "team", "kuma.io/zone", "bad key!", ""]),
        st.sampled_from([ORIGIN_GLOBAL, "zone", "x", "a\nb", "v" * 70]),
        max_size=3,
    ),
)
WIRES = st.builds(
    WireResource,
    name=NAMES,
    mesh=MESHES,
    version=st.sampled_from(["v1", "v2", ""]),
    labels=LABELS,
    spec=SPECS,
)
RESPONSES = st.builds(
    SyncResponse,
    type=st.sampled_from(["MeshTimeout", "MeshTimeout", "Mesh", "Secret", "Dataplane", "Bogus"]),
    resources=st.lists(WIRES, max_size=5),
    removed=st.lists(st.builds(Key, mesh=MESHES, name=NAMES), max_size=3),
    nonce=st.text(max_size=5),
)


def own_policy() -> Resource:
    return Resource("MeshTimeout", Meta("own", "default", dict(OWN)), timeout_spec("5s"))


async def run(responses: list[SyncResponse]) -> None:
    store = MemoryStore()
    try:
        await store.create(Resource("Mesh", Meta("default", "", dict(GLOBAL)), {}))
        await store.create(own_policy())
        side = await zone_receive_side(store, REG, DOWN)
        for resp in responses:
            # Through protobuf and back, as the stream receives it.
            wire = response_from_pb(
                pb.SyncResponse.FromString(response_to_pb(resp).SerializeToString())
            )
            changes, reply = side.receiver.handle_response(wire, side.validate)
            if not changes.empty:
                await side.apply(changes)
            side.receiver.commit(changes)
            assert reply.type == resp.type and reply.response_nonce == resp.nonce
            if reply.error_detail is not None:
                detail = reply.error_detail
                assert detail.message
                for failed in detail.failed:
                    assert failed.reason, failed
                    assert str(failed.key) in detail.message
            upserted = {(r.mesh, r.name) for r in changes.upserts}
            for wire_res in wire.resources:
                key = (wire_res.mesh, wire_res.name)
                refused = reply.error_detail is not None and any(
                    tuple(f.key) == key for f in reply.error_detail.failed
                )
                # Applied, or NACKed, or (the zone's own policy's key) left alone.
                ours = wire.type == "MeshTimeout" and key == ("default", "own")
                if wire.type in DOWN and key not in set(map(tuple, wire.removed)):
                    assert refused or key in upserted or ours, (key, reply)
            # The zone's own policy is untouched; the store agrees with the receiver.
            own = await store.get("MeshTimeout", "default", "own")
            assert own.meta.labels == OWN and own.spec == own_policy().spec
            for type_name in DOWN:
                listed = (await store.list(type_name, labels=GLOBAL)).items
                stored = {Key(r.meta.mesh, r.meta.name) for r in listed}
                assert stored == set(side.receiver.held(type_name)), type_name
    finally:
        await store.close()


@fuzz(300)
@given(responses=st.lists(RESPONSES, min_size=1, max_size=6))
def test_any_responses_leave_the_zone_consistent(responses: list[SyncResponse]) -> None:
    asyncio.run(run(responses))


@fuzz(300)
@given(data=st.binary(max_size=300))
def test_undecodable_bytes_are_a_decode_error(data: bytes) -> None:
    """What grpc hands the stream is a parsed message or a DecodeError: never half a message."""
    try:
        msg = pb.SyncResponse.FromString(data)
    except Exception as exc:
        assert type(exc).__name__ == "DecodeError", exc
        return
    response_from_pb(msg)
