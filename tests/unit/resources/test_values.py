"""Value rules without pydantic: Go durations, addresses, host names, base64."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.resources.values import is_address, is_base64, is_hostname, parse_duration

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("10s", 10 * SECOND),
        ("1m30s", 90 * SECOND),
        ("500ms", SECOND // 2),
        ("1.5h", 5400 * SECOND),
        (".5s", SECOND // 2),
        ("0", 0),
        ("0s", 0),
        ("+5s", 5 * SECOND),
        ("-1s", -SECOND),
        ("1h2m3s4ms5us6ns", 3723 * SECOND + 4_005_006),
        ("2µs", 2000),
        ("2μs", 2000),
    ],
)
def test_parse_go_durations(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize(
    "text", ["", "10", "s", "1x", "1h30", "abc", "1 s", "--1s", "+", "1d", "1y", "1.2.3s", "1S"]
)
def test_parse_rejects_what_go_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_long_units_for_certificates() -> None:
    assert parse_duration("1d", long_units=True) == 86400 * SECOND
    assert parse_duration("10y", long_units=True) == 10 * 365 * 86400 * SECOND
    assert parse_duration("1d12h", long_units=True) == 36 * 3600 * SECOND


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
        min_size=1,
        max_size=6,
    )
)
def test_parse_duration_sums_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600 * SECOND, "m": 60 * SECOND, "s": SECOND, "ms": 10**6, "us": 10**3, "ns": 1}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("10.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("backend.mesh", True),
        ("my-host", True),
        ("host.example.com.", True),
        ("300.1.1.1", False),
        ("-bad.com", False),
        ("bad-.com", False),
        ("a..b", False),
        ("", False),
        ("under_score", False),
        ("a" * 64, False),
        ("10.0.0.1:80", False),
    ],
)
def test_addresses(text: str, ok: bool) -> None:
    assert is_address(text) is ok


def test_hostname_length_and_base64() -> None:
    assert is_hostname(".".join(["a" * 60] * 4))
    assert not is_hostname(".".join(["a" * 63] * 5))
    assert is_base64("dGVzdAo=")
    assert is_base64("")
    assert not is_base64("dGVzdAo")  # missing padding
    assert not is_base64("not base64!")
