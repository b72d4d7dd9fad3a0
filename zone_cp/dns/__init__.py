"""Zone DNS: `<service>.mesh` and `<service>.<zone>.mesh` answered with the service's VIP.

How zone-cp wires it (VIPs come from `zone_cp.vipbook`):

    names = mesh_names(ServiceVip(service, zone_or_none, vip) for ... in catalog)
    server = DnsServer(DnsTable(names.pairs(), forwarding=upstream is not None),
                       upstream=upstream)
    await server.start(host, port)
    ...
    server.table = DnsTable(new_names.pairs(), forwarding=...)   # on every catalog change

`python -m zone_cp.dns` runs the same server over a static JSON table (tests, benchmarks).
"""

from zone_cp.dns.answers import DROP, Action, DnsTable, Drop, Forward
from zone_cp.dns.names import NameSet, ServiceVip, mesh_names
from zone_cp.dns.server import DEFAULT_PORT, DnsServer, DnsStatsCollector
from zone_cp.dns.stats import DnsStats
from zone_cp.dns.upstream import Upstream, parse_address

__all__ = [
    "DEFAULT_PORT",
    "DROP",
    "Action",
    "DnsServer",
    "DnsStats",
    "DnsStatsCollector",
    "DnsTable",
    "Drop",
    "Forward",
    "NameSet",
    "ServiceVip",
    "Upstream",
    "mesh_names",
    "parse_address",
]
