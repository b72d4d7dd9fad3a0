"""The DataplaneInsight / ZoneIngressInsight of each connected proxy, written to the zone store.

Written at once when a proxy connects or disconnects (by the registration), and otherwise
every `--dp-insight-flush` for the proxies whose subscription changed meanwhile (ACKs, NACKs,
configs sent, reports): a burst of answers costs one write, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from meshfed.dpconfig.protocol import ProxyType
from meshfed.store.base import StoreError
from zone_cp.certs import CertIssuer
from zone_cp.dprecords import Records
from zone_cp.dpsession import Session

log = logging.getLogger("zone_cp.dpserver")


class InsightWriter:
    def __init__(self, records: Records, issuer: CertIssuer) -> None:
        self._records = records
        self._issuer = issuer

    async def write(self, session: Session) -> None:
        """The session's insight as it is now: its subscriptions, certificate and report."""
        session.insight_dirty = False
        mtls = None
        if session.kind is ProxyType.SIDECAR:
            record = self._issuer.record(session.mesh, session.name)
            mtls = None if record is None else record.to_json()
        await self._records.write_insight(
            str(session.kind),
            session.mesh,
            session.name,
            [*session.history, session.subscription.to_json()],
            mtls,
            session.report,
        )

    async def flush(self, sessions: Iterable[Session]) -> None:
        """Writes the insights that changed since they were last written."""
        for session in list(sessions):
            if session.insight_dirty:
                try:
                    await self.write(session)
                except StoreError as exc:
                    session.insight_dirty = True
                    log.warning("%s: insight not written: %s", session.describe(), exc)

    async def run(self, sessions: Callable[[], Iterable[Session]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush(sessions())
