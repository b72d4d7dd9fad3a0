"""Steady traffic for the chaos suites: callers through real sidecars and a DNS prober, each in
threads, recording every outcome with its time (this module has no tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.integration.test_cross_zone_support import Zone, try_get


@dataclass
class Outcome:
    at: float  # time.monotonic() when it finished
    ok: bool
    detail: str


@dataclass
class Traffic:
    """`threads` callers of `vip:port`, each making one request per new connection as fast as
    the mesh answers (at most `rate_per_thread` a second), plus one DNS query of `name` to
    `zone`'s DNS every 50 ms."""

    vip: str
    port: int
    zone: Zone
    name: str
    expect_zone: str
    threads: int = 4
    rate_per_thread: float = 40.0
    requests: list[Outcome] = field(default_factory=list)
    dns: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        for _ in range(self.threads):
            self._workers.append(threading.Thread(target=self._call, daemon=True))
        self._workers.append(threading.Thread(target=self._resolve, daemon=True))
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def _call(self) -> None:
        gap = 1.0 / self.rate_per_thread
        while not self._stop.is_set():
            began = time.monotonic()
            answer = try_get(self.vip, self.port, timeout=5)
            ok = answer is not None and answer.get("zone") == self.expect_zone
            self.requests.append(Outcome(time.monotonic(), ok, repr(answer)[:200]))
            time.sleep(max(0.0, gap - (time.monotonic() - began)))

    def _resolve(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.zone.resolve(self.name)
            except OSError as exc:
                got, err = None, repr(exc)
            else:
                err = ""
            self.dns.append(Outcome(time.monotonic(), got == self.vip, err or str(got)))
            time.sleep(0.05)

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.requests if start <= o.at <= end]

    def failures(self) -> list[Outcome]:
        return [o for o in self.requests if not o.ok]
