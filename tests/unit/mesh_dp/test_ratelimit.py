"""MeshRateLimit's token buckets (mesh_dp/ratelimit.py): Envoy's fill of `num` per interval."""

from __future__ import annotations

from mesh_dp.ratelimit import Buckets, TokenBucket
from meshfed.dpconfig.traffic import Rate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_num_then_nothing_until_the_fill() -> None:
    clock = Clock()
    bucket = TokenBucket(5, 1.0, clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.99
    assert not bucket.take()
    clock.now += 0.01
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]


def test_fills_do_not_accumulate_beyond_num() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 0.5, clock)
    clock.now += 10.0  # twenty fills missed: still at most 2
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 0.25  # the fills stay on the grid of the first one
    assert not bucket.take()
    clock.now += 0.25
    assert bucket.take()


def test_ten_per_second_over_five_seconds_lets_through_fifty_to_sixty() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 1.0, clock)
    passed = 0
    for _ in range(500):  # 100 requests/s for 5 s
        passed += bucket.take()
        clock.now += 0.01
    assert 50 <= passed <= 60


def test_buckets_keep_state_while_the_rate_holds() -> None:
    clock = Clock()
    buckets = Buckets(clock)
    assert buckets.admit(None) and buckets.limited == 0  # no rate: everything passes
    rate = Rate(1, 60.0)
    assert buckets.admit(rate)
    assert not buckets.admit(Rate(1, 60.0))  # an equal rate (a new push): the same bucket
    assert buckets.limited == 1
    assert buckets.admit(Rate(2, 60.0))  # a new rate: a new bucket
