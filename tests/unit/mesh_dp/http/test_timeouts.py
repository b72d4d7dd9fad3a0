"""MeshTimeout http deadlines of one request: which one bounds the next wait."""

from __future__ import annotations

from mesh_dp.http.timeouts import Deadlines, Expiry, HttpTimeouts


def test_nothing_set_means_unbounded_waits() -> None:
    d = Deadlines(HttpTimeouts(), per_try=0.0, started=0.0)
    d.request_complete(1.0)
    d.new_try(1.0)
    assert d.next_wait(5.0) == (None, None)
    assert d.retry_time_left(5.0) is None


def test_request_timeout_starts_when_the_request_is_complete() -> None:
    d = Deadlines(HttpTimeouts(request=2.0, stream_idle=10.0), per_try=0.0, started=0.0)
    assert d.next_wait(0.5) == (10.0, Expiry.STREAM_IDLE)  # body still coming
    d.request_complete(1.0)
    d.request_complete(5.0)  # only the first completion counts
    assert d.next_wait(1.5) == (1.5, Expiry.REQUEST)
    assert d.next_wait(4.0) == (0.0, Expiry.REQUEST)
    assert d.retry_time_left(2.0) == 1.0


def test_the_nearest_deadline_wins() -> None:
    t = HttpTimeouts(request=5.0, stream_idle=3.0, max_stream=4.0)
    d = Deadlines(t, per_try=1.0, started=0.0)
    d.request_complete(0.0)
    d.new_try(0.0)
    assert d.next_wait(0.0) == (1.0, Expiry.TRY)
    d.new_try(2.0)  # the next attempt gets a fresh perTryTimeout
    assert d.next_wait(2.0) == (1.0, Expiry.TRY)
    assert d.next_wait(2.5) == (0.5, Expiry.TRY)
    d.new_try(3.5)
    assert d.next_wait(3.5) == (0.5, Expiry.STREAM_DURATION)


def test_a_tie_is_the_request_timeout_which_is_not_retried() -> None:
    d = Deadlines(HttpTimeouts(request=1.0), per_try=1.0, started=0.0)
    d.request_complete(0.0)
    d.new_try(0.0)
    assert d.next_wait(0.0) == (1.0, Expiry.REQUEST)
