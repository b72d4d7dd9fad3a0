"""How long the chaos, load and fuzz suites run: short in `make test`, long in `make soak` /
`make fuzz` (issue 16). The Makefile targets set the environment variables read here.

- MESHFED_SOAK=1: chaos and load suites take their long bounds (`bound(short, long)`).
- MESHFED_FUZZ_EXAMPLES=N: every fuzz property runs N examples instead of its own bound.
"""

from __future__ import annotations

import os
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

SOAK = os.environ.get("MESHFED_SOAK", "") not in ("", "0")


def bound(short: T, long: T) -> T:
    """`short` in `make test`, `long` under `make soak`."""
    return long if SOAK else short


def run_timeout(short_seconds: float, long_seconds: float) -> float:
    """A pytest-timeout for a chaos/load test: its run plus room for start-up and teardown."""
    return bound(short_seconds, long_seconds)


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz property: `examples` in `make test`, more in `make fuzz`."""
    override = os.environ.get("MESHFED_FUZZ_EXAMPLES", "")
    return settings(
        max_examples=int(override) if override else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
