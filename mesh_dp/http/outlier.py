"""Passive outlier detection (MeshCircuitBreaker `outlierDetection`) with Envoy's semantics.
Pure: no sockets, no clock of its own (callers pass `now`).

Results come in per host (an endpoint: a local sidecar, or another zone's ingress, which is
one host however many instances it hides):

- `response(host, status)`: an HTTP answer (external origin). 5xx counts for `totalFailures`
  (consecutive 5xx), 502/503/504 for `gatewayFailures`; anything else resets both.
- `local(host, ok)`: a connect attempt, or a reset/timeout before an answer (local origin).
  Without `splitExternalAndLocalErrors` a local failure counts as a 5xx and a gateway error
  (Envoy maps it to 503), and a local success resets nothing. With split, local failures
  count only for `localOriginFailures` and a local success resets that streak.
- `tick(now)`, every `interval`: `successRate` (hosts with at least `requestVolume` results;
  when there are `minimumHosts` of them, eject those below mean - factor * stdev of their
  success rates) and `failurePercentage` (eject hosts failing at least `threshold` %); the
  window starts again. A host out of ejection for a whole interval has its ejection count
  lowered by one.

An ejected host stays out for `baseEjectionTime * times ejected`, capped at
max(`baseEjectionTime`, 300 s). Never more than `maxEjectionPercent` of the hosts are out at
once, except that one host may always be ejected (Envoy's rule). Detectors left unset are off.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from meshfed.dpconfig.model import Outlier

MAX_EJECTION_TIME = 300.0  # Envoy's max_ejection_time default
GATEWAY = (502, 503, 504)


@dataclass(slots=True)
class HostRecord:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    consecutive_local: int = 0
    ejected_until: float = 0.0
    ejections: int = 0  # the multiplier of the ejection time
    ejected_total: int = 0  # for metrics
    # this interval's results, for successRate and failurePercentage
    successes: int = 0
    failures: int = 0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until


class OutlierDetector:
    def __init__(self, config: Outlier, hosts: Iterable[Hashable] = ()) -> None:
        self.config = config
        self.hosts: dict[Hashable, HostRecord] = {h: HostRecord() for h in hosts}

    def update(self, config: Outlier, hosts: Iterable[Hashable]) -> None:
        """New settings or hosts: hosts that stay keep their record."""
        self.config = config
        old = self.hosts
        self.hosts = {h: old.get(h) or HostRecord() for h in hosts}

    def ejected(self, host: Hashable, now: float) -> bool:
        record = self.hosts.get(host)
        return record is not None and record.ejected(now)

    # --- results --------------------------------------------------------------------------

    def response(self, host: Hashable, status: int, now: float) -> bool:
        """An upstream answer; True when it ejected the host."""
        record = self.hosts.get(host)
        if record is None:
            return False
        if status >= 500:
            record.failures += 1
            return self._failed(host, record, status, now)
        record.successes += 1
        record.consecutive_5xx = record.consecutive_gateway = 0
        return False

    def local(self, host: Hashable, ok: bool, now: float) -> bool:
        """A local-origin result (connect, reset, timeout); True when it ejected the host."""
        record = self.hosts.get(host)
        if record is None:
            return False
        c = self.config
        if c.split_external_and_local_errors:
            if ok:
                record.consecutive_local = 0
                return False
            record.consecutive_local += 1
            limit = c.local_origin_failures
            return (
                limit is not None
                and record.consecutive_local >= limit
                and self._eject(host, record, now)
            )
        if ok:
            return False
        record.failures += 1
        return self._failed(host, record, 503, now)

    def _failed(self, host: Hashable, record: HostRecord, status: int, now: float) -> bool:
        c = self.config
        record.consecutive_5xx += 1
        if status in GATEWAY:
            record.consecutive_gateway += 1
        else:
            record.consecutive_gateway = 0
        hit = (c.total_failures is not None and record.consecutive_5xx >= c.total_failures) or (
            c.gateway_failures is not None and record.consecutive_gateway >= c.gateway_failures
        )
        return hit and self._eject(host, record, now)

    # --- ejection ---------------------------------------------------------------------------

    def _eject(self, host: Hashable, record: HostRecord, now: float) -> bool:
        if record.ejected(now):
            return False
        out = sum(1 for r in self.hosts.values() if r.ejected(now))
        if out > 0 and 100.0 * (out + 1) / len(self.hosts) > self.config.max_ejection_percent:
            return False
        base = self.config.base_ejection_time
        record.ejections += 1
        record.ejected_total += 1
        record.ejected_until = now + min(base * record.ejections, max(base, MAX_EJECTION_TIME))
        record.consecutive_5xx = record.consecutive_gateway = record.consecutive_local = 0
        return True

    def tick(self, now: float) -> list[Hashable]:
        """The interval's work; returns the hosts it ejected."""
        c = self.config
        ejected: list[Hashable] = []
        if c.success_rate is not None:
            ejected += self._success_rate(now)
        if c.failure_percentage is not None:
            ejected += self._failure_percentage(now)
        for record in self.hosts.values():
            record.successes = record.failures = 0
            if not record.ejected(now) and record.ejections > 0 and host_was_back(record, now, c):
                record.ejections -= 1
        return ejected

    def _volume(self, minimum: int) -> list[tuple[Hashable, HostRecord, float]]:
        """Hosts (not ejected) with at least `minimum` results: their success rate in %."""
        out = []
        for host, r in self.hosts.items():
            total = r.successes + r.failures
            if total >= minimum and total > 0:
                out.append((host, r, 100.0 * r.successes / total))
        return out

    def _success_rate(self, now: float) -> list[Hashable]:
        sr = self.config.success_rate
        assert sr is not None
        hosts = self._volume(sr.request_volume)
        if len(hosts) < sr.minimum_hosts or not hosts:
            return []
        rates = [rate for _, _, rate in hosts]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((x - mean) ** 2 for x in rates) / len(rates))
        floor = mean - sr.standard_deviation_factor * stdev
        return [h for h, r, rate in hosts if rate < floor and self._eject(h, r, now)]

    def _failure_percentage(self, now: float) -> list[Hashable]:
        fp = self.config.failure_percentage
        assert fp is not None
        hosts = self._volume(fp.request_volume)
        if len(hosts) < fp.minimum_hosts:
            return []
        return [
            h for h, r, rate in hosts if 100.0 - rate >= fp.threshold and self._eject(h, r, now)
        ]


def host_was_back(record: HostRecord, now: float, config: Outlier) -> bool:
    """The host has been out of ejection for at least one interval."""
    return now - record.ejected_until >= config.interval
