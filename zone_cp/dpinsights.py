"""The DataplaneInsight / ZoneIngressInsight of each connected proxy, written to the zone store.

Written at once when a proxy connects or disconnects (by the registration; a sidecar's first
connection at its first report, decision 179), and otherwise
every `--dp-insight-flush` for the proxies whose subscription changed meanwhile (ACKs, NACKs,
configs sent, reports): a burst of answers costs one write, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from meshfed.dpconfig.protocol import ProxyType
from meshfed.resources.model import Resource
from meshfed.store.base import StoreError
from zone_cp import dpstate
from zone_cp.certs import CertIssuer
from zone_cp.dprecords import Records, changes
from zone_cp.dpsession import Session

log = logging.getLogger("zone_cp.dpserver")

FLUSH_BATCH = 256  # insights per read and write of a periodic flush


class InsightWriter:
    def __init__(self, records: Records, issuer: CertIssuer) -> None:
        self._records = records
        self._issuer = issuer

    async def write(self, session: Session) -> None:
        """The session's insight as it is now: its subscriptions, certificate and report."""
        insight = self.resource(session)
        await self._records.put(insight, await self._records.get(*insight.key))
        session.insight_written = insight

    def resource(self, session: Session) -> Resource:
        """The session's insight as it is now (what `write` stores); marks it written."""
        session.insight_dirty = False
        mtls = None
        if session.kind is ProxyType.SIDECAR:
            record = self._issuer.record(session.mesh, session.name)
            mtls = None if record is None else record.to_json()
        return dpstate.insight_resource(
            str(session.kind),
            session.mesh,
            session.name,
            self._records.zone,
            [*session.history, session.subscription.to_json()],
            mtls=mtls,
            report=session.report,
        )

    async def flush(self, sessions: Iterable[Session]) -> None:
        """Writes the insights that changed since they were last written, a batch at a time
        (one write for each). Compared with what each session last wrote, not read back from
        the store: a connected proxy's insight is this writer's alone (issue 19)."""
        dirty = [s for s in list(sessions) if s.insight_dirty]
        for start in range(0, len(dirty), FLUSH_BATCH):
            chunk = dirty[start : start + FLUSH_BATCH]
            insights = [self.resource(s) for s in chunk]
            pairs = zip(chunk, insights, strict=True)
            changed = [(s, i) for s, i in pairs if changes(i, s.insight_written)]
            # A sidecar that has not reported yet: its Dataplane too (decision 183); marked
            # before the write, so that a report meanwhile writes its health after this.
            unstored = [s for s in chunk if not s.resource_written]
            dataplanes = [dpstate.with_health(s.resource, s.ready, default=False) for s in unstored]
            for session in unstored:
                session.resource_written = True
            try:
                await self._records.write([*dataplanes, *(i for _, i in changed)])
                for session, insight in changed:
                    session.insight_written = insight
            except StoreError as exc:
                for session in chunk:
                    session.insight_dirty = True
                for session in unstored:
                    session.resource_written = False
                log.warning("%d insights not written: %s", len(chunk), exc)

    async def run(self, sessions: Callable[[], Iterable[Session]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush(sessions())
