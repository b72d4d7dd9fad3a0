"""How far behind each zone is, on the global's `/metrics`, read at scrape time (issue 15).

`meshfed_kds_pending_resources{zone,type}`: resources of a type the zone does not hold at the
global's current version (or holds and should drop), for each zone with a stream open to
this replica: the same number ZoneInsight's `pending` shows. `meshfed_kds_zone_connected
{zone}`: 1 while this replica serves a stream of the zone, 0 for a zone it served before
(none once the Zone is deleted).
The counters of what went over the streams are meshfed.kds.metrics'.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from global_cp.zone_book import ZoneBook
from meshfed.resources.model import Key
from meshfed.resources.types.zone import ZONE


class KdsLagCollector(Collector):
    def __init__(self, zones: ZoneBook) -> None:
        self._zones = zones

    def collect(self) -> Iterator[GaugeMetricFamily]:
        zones = self._zones
        pending = GaugeMetricFamily(
            "meshfed_kds_pending_resources",
            "Resources a zone does not hold at the global's current version, by type "
            "(zones connected to this replica).",
            labels=["zone", "type"],
        )
        connected = GaugeMetricFamily(
            "meshfed_kds_zone_connected",
            "1 while this replica serves a KDS stream of the zone.",
            labels=["zone"],
        )
        for zone, session in sorted(zones.sessions.items()):
            if not session.connected and zones.mirror.get(ZONE.name, Key("", zone)) is None:
                continue  # a deleted zone (its session object outlives it in the KdsServer)
            connected.add_metric([zone], 1.0 if session.connected else 0.0)
            down = session.down
            if not session.connected or down is None:
                continue
            view = zones.view(zone)
            for type_name in zones.down_types:
                pending.add_metric(
                    [zone, type_name], view.pending(type_name, down.acked_versions(type_name))
                )
        yield pending
        yield connected
