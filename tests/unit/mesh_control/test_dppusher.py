"""The config pusher's pure decisions: which proxies a pass rebuilds, and when certificates
are due."""

from __future__ import annotations

import datetime as dt

from tests.unit.mesh_control.dpsession_factories import ingress, sidecar
from zone_cp.dppusher import DirtySet, RotateAt, due_for_rotation, next_rotation

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
