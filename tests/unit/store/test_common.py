"""Offsets and stamping shared by every backend."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.resources.model import Meta, Resource
from meshfed.store._common import decode_offset, encode_offset, stamped_new, stamped_update
from meshfed.store.base import InvalidOffsetError


@given(st.text(), st.text(min_size=1))
def test_offset_round_trip(mesh: str, name: str) -> None:
    offset = encode_offset(mesh, name)
    assert offset.isascii() and "/" not in offset and "+" not in offset and "=" not in offset
    assert decode_offset(offset) == (mesh, name)


@given(st.text())
def test_any_string_is_either_an_offset_or_a_clear_error(offset: str) -> None:
    try:
        mesh, name = decode_offset(offset)
    except InvalidOffsetError as exc:
        assert "invalid offset" in str(exc)
    else:
        assert isinstance(mesh, str) and isinstance(name, str)


@pytest.mark.parametrize("mesh, name", [("\ud800", "a"), ("a", "\udc80x")])
def test_an_offset_naming_a_lone_surrogate_is_invalid(mesh: str, name: str) -> None:
    # Well-formed JSON, but no key can hold it: SQLite and etcd fail to encode it (was a 500).
    raw = json.dumps(["k1", mesh, name]).encode()
    with pytest.raises(InvalidOffsetError):
        decode_offset(base64.urlsafe_b64encode(raw).decode())


def test_long_garbage_is_truncated_in_the_message() -> None:
    with pytest.raises(InvalidOffsetError) as info:
        decode_offset("!" * 10_000)
    assert len(str(info.value)) < 200


def test_stamping() -> None:
    res = Resource("MeshRetry", Meta(name="a", mesh="m", version="77"), {"x": 1})
    new = stamped_new(res, 5)
    assert new.meta.version == "5" and new.meta.creation_time == new.meta.modification_time
    assert res.meta.version == "77" and new is not res
    changed = Resource("MeshRetry", Meta(name="a", mesh="m", creation_time="2001"), {"x": 2})
    updated = stamped_update(changed, new, 9)
    assert updated.meta.creation_time == new.meta.creation_time
    assert updated.meta.version == "9" and updated.spec == {"x": 2}
