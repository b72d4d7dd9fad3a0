"""The config pusher's pure decisions: which proxies a pass rebuilds, when certificates are
due, and what a rebuilt config costs to send (one encode)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from msgspec.structs import replace

from meshfed.dpconfig import model
from meshfed.dpconfig.protocol import parse_sidecar_config
from tests.unit.dpconfig.test_model import CONFIG
from tests.unit.mesh_control.dpsession_factories import ingress, sidecar
from zone_cp.dppusher import (
    DirtySet,
    RotateAt,
    due_for_rotation,
    message_if_changed,
    next_rotation,
)

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
A = ("Dataplane", "default", "a")
B = ("Dataplane", "default", "b")
GONE = ("Dataplane", "default", "gone")


def test_a_pass_takes_the_dirty_proxies_still_connected_once() -> None:
    dirty = DirtySet()
    dirty.add(A)
    dirty.add(GONE)
    assert dirty.take([A, B]) == {A}
    assert dirty.take([A, B]) == set()


def test_everyone_dirty_means_every_connected_proxy() -> None:
    dirty = DirtySet()
    dirty.add(A)
    dirty.add(None)
    assert dirty.take([A, B]) == {A, B}
    assert dirty.take([A, B]) == set()


def test_callers_of_a_changed_service_wait_until_the_window_ends() -> None:
    """Decision 182: callers marked `add_later` are rebuilt once their window is due, every
    change inside it merged into that one rebuild; the window is not extended by them."""
    dirty = DirtySet()
    assert dirty.add_later(A, due=10.0)
    assert not dirty.add_later(B, due=15.0)  # inside the window: its due time stays
    assert dirty.due == 10.0
    assert dirty.take([A, B], now=9.9) == set()
    assert dirty.take([A, B], now=10.0) == {A, B}
    assert dirty.due is None and dirty.take([A, B], now=99.0) == set()


def test_a_waiting_proxy_rebuilt_now_for_another_reason_waits_no_more() -> None:
    dirty = DirtySet()
    dirty.add_later(A, due=10.0)
    dirty.add_later(GONE, due=10.0)
    dirty.add(A)  # it registers again, a policy changed...: built now, with the newest services
    assert dirty.take([A, B], now=1.0) == {A}
    assert dirty.due == 10.0  # GONE still waits (and is dropped when due: not connected)
    assert dirty.take([A, B], now=10.0) == set()
    assert dirty.due is None


def test_everyone_dirty_takes_the_waiting_too() -> None:
    dirty = DirtySet()
    dirty.add_later(A, due=10.0)
    dirty.add(None)
    assert dirty.take([A, B], now=1.0) == {A, B}
    assert dirty.due is None


def rotate_at(times: dict[str, dt.datetime]) -> RotateAt:
    return lambda mesh, name: times.get(name)


def test_the_next_rotation_is_the_earliest_sidecar_certificate() -> None:
    sessions = [sidecar("a"), sidecar("b"), ingress("a")]
    due = rotate_at({"a": NOW + dt.timedelta(seconds=30), "b": NOW + dt.timedelta(seconds=5)})
    assert next_rotation(sessions, due, NOW) == 5.0
    overdue = rotate_at({"a": NOW - dt.timedelta(seconds=1)})
    assert next_rotation(sessions, overdue, NOW) == 0.0
    assert next_rotation(sessions, rotate_at({}), NOW) is None
    assert next_rotation([ingress("a")], due, NOW) is None  # ingresses have no certificate


def test_due_certificates_are_those_of_sidecars_at_or_past_their_time() -> None:
    a, b, zi = sidecar("a"), sidecar("b"), ingress("a")
    sessions = {a.key: a, b.key: b, zi.key: zi}
    due = rotate_at({"a": NOW, "b": NOW + dt.timedelta(seconds=1)})
    assert due_for_rotation(sessions, due, NOW) == {a.key}


class CountingEncoder:
    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.calls = 0

    def encode(self, obj: Any) -> bytes:
        self.calls += 1
        body: bytes = self.encoder.encode(obj)
        return body


def test_a_rebuilt_config_is_encoded_once_and_those_bytes_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = CountingEncoder(model._ENCODER)
    monkeypatch.setattr(model, "_ENCODER", counter)
    built = replace(CONFIG, version="")  # what the builder returns
    changed = message_if_changed(built, sent="")
    assert changed is not None and counter.calls == 1
    version, message = changed
    assert message.config.version == version == model.content_version(message.config.json)
    assert parse_sidecar_config(message) == replace(built, version=version)
    counter.calls = 0
    assert message_if_changed(built, sent=version) is None  # unchanged: encoded, not sent
    assert counter.calls == 1
    assert message_if_changed(replace(built, zone="zone-9"), sent=version) is not None
