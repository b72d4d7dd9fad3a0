"""Outlier detection's state machine (mesh_dp/http/outlier.py), without sockets."""

from __future__ import annotations

from typing import Any

from mesh_dp.http.outlier import MAX_EJECTION_TIME, OutlierDetector
from meshfed.dpconfig.model import FailurePercentage, Outlier, SuccessRate

HOSTS = ["a", "b", "c", "d"]


def detector(**fields: Any) -> OutlierDetector:
    fields = {"max_ejection_percent": 50, "base_ejection_time": 10.0, **fields}
    return OutlierDetector(Outlier(**fields), HOSTS)


def test_consecutive_5xx_ejects_and_a_success_resets_the_streak() -> None:
    od = detector(total_failures=3)
    assert not od.response("a", 500, 0) and not od.response("a", 503, 0)
    assert not od.response("a", 200, 0)  # resets
    assert not od.response("a", 500, 0) and not od.response("a", 500, 0)
    assert od.response("a", 500, 1.0)
    assert od.ejected("a", 1.0) and od.ejected("a", 10.9) and not od.ejected("a", 11.0)
    assert not od.ejected("b", 1.0)


def test_gateway_failures_count_only_502_503_504() -> None:
    od = detector(gateway_failures=2)
    assert not od.response("a", 502, 0)
    assert not od.response("a", 500, 0)  # a 5xx that is not a gateway error breaks the streak
    assert not od.response("a", 504, 0)
    assert od.response("a", 503, 0)


def test_local_errors_count_as_5xx_unless_split() -> None:
    od = detector(total_failures=2)
    assert not od.local("a", False, 0)
    assert od.local("a", False, 0)
    od = detector(total_failures=2, local_origin_failures=2, split_external_and_local_errors=True)
    assert not od.local("a", False, 0)
    assert not od.local("a", True, 0)  # a local success resets the local streak
    assert not od.local("a", False, 0)
    assert not od.response("a", 500, 0)  # external and local streaks are apart
    assert od.local("a", False, 0)


def test_local_origin_detector_needs_split_mode() -> None:
    od = detector(local_origin_failures=1)
    assert not od.local("a", False, 0)  # counted as a 5xx, no 5xx detector set


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    od = detector(total_failures=1, interval=1.0)
    assert od.response("a", 500, 0)
    assert od.hosts["a"].ejected_until == 10.0
    assert od.response("a", 500, 10.0)
    assert od.hosts["a"].ejected_until == 30.0  # 2 x base
    od.hosts["a"].ejections = 1000
    assert od.response("a", 500, 30.0)
    assert od.hosts["a"].ejected_until == 30.0 + MAX_EJECTION_TIME


def test_a_host_back_for_an_interval_loses_one_ejection() -> None:
    od = detector(total_failures=1, interval=1.0)
    od.response("a", 500, 0)
    od.tick(5.0)  # still ejected
    assert od.hosts["a"].ejections == 1
    od.tick(11.0)  # back for 1 s
    assert od.hosts["a"].ejections == 0


def test_never_more_than_max_ejection_percent_but_always_one() -> None:
    od = detector(total_failures=1)  # 50 % of 4 hosts: 2
    assert [od.response(h, 500, 0) for h in HOSTS] == [True, True, False, False]
    od = OutlierDetector(Outlier(total_failures=1, max_ejection_percent=0), HOSTS)
    assert [od.response(h, 500, 0) for h in HOSTS] == [True, False, False, False]


def test_success_rate_ejects_hosts_below_mean_minus_factor_stdev() -> None:
    rate = SuccessRate(minimum_hosts=4, request_volume=10, standard_deviation_factor=1.0)
    od = detector(success_rate=rate)
    for h, failures in zip(HOSTS, (0, 0, 1, 8), strict=True):
        for i in range(10):
            od.response(h, 500 if i < failures else 200, 0)
    assert od.tick(1.0) == ["d"]
    assert od.hosts["a"].successes == 0  # a new window


def test_success_rate_needs_minimum_hosts_and_volume() -> None:
    od = detector(success_rate=SuccessRate(minimum_hosts=4, request_volume=10))
    for h in HOSTS[:3]:
        for _ in range(10):
            od.response(h, 200, 0)
    for _ in range(9):
        od.response("d", 500, 0)
    assert od.tick(1.0) == []  # d has too few requests: 3 hosts qualify


def test_failure_percentage_ejects_hosts_at_the_threshold() -> None:
    fp = FailurePercentage(minimum_hosts=2, request_volume=4, threshold=50)
    od = detector(failure_percentage=fp)
    for h, failures in zip(HOSTS, (0, 1, 2, 4), strict=True):
        for i in range(4):
            od.response(h, 503 if i < failures else 200, 0)
    assert od.tick(1.0) == ["c", "d"]


def test_update_keeps_records_of_hosts_that_stay() -> None:
    od = detector(total_failures=1)
    od.response("a", 500, 0)
    od.update(od.config, ["a", "z"])
    assert od.ejected("a", 1.0) and set(od.hosts) == {"a", "z"}
    assert not od.response("gone", 500, 0)
