"""From a ClientHello's SNI to the local endpoints to try, in round-robin order. Pure.

The routing table is the zone-cp's IngressConfig: SNI -> the local sidecar inbounds of one
service of one mesh (only healthy ones: zone-cp leaves out instances that are not ready).
The SNI must be one of ours (`meshfed.dpconfig.sni`: `<service>.<mesh>.sni.mesh`) and name a
service the table has; anything else is refused before a byte goes anywhere.

Each connection gets every endpoint of its service, fewest open connections first and, among
equals, starting one further along than the previous connection (round robin), so the server
can fall over to the next endpoint when a connect fails without another lookup. Fewest first
because callers keep connections alive: a caller's sidecar pools one connection per instance
behind this ingress (mesh_dp/http/pool.py) and must get a different instance on each, which
round robin alone does not give when other callers' connections interleave. An endpoint
whose last connect failed goes last until a connect to it succeeds again (with no
connections it would otherwise always come first).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService
from meshfed.dpconfig.sni import SniError, decode_sni


class RouteError(Exception):
    """No route for this SNI; `reason` is the metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Route:
    service: IngressService
    endpoints: tuple[Endpoint, ...]  # in the order to try them


class Router:
    def __init__(self, config: IngressConfig) -> None:
        self.config = config
        self._table = config.by_sni()
        self._turn: dict[str, int] = {}
        self._open: dict[tuple[str, int], int] = {}  # open connections per endpoint
        self._failing: set[tuple[str, int]] = set()  # last connect failed

    def update(self, config: IngressConfig) -> None:
        """A new table; round-robin positions of services that stay are kept."""
        self.config = config
        self._table = config.by_sni()
        self._turn = {k: v for k, v in self._turn.items() if k in self._table}
        listed = {(e.address, e.port) for s in self._table.values() for e in s.endpoints}
        self._failing &= listed  # an endpoint that leaves and comes back starts afresh

    def route(self, sni: str) -> Route:
        key = sni.lower().removesuffix(".")
        service = self._table.get(key)
        if service is None:
            try:
                target = decode_sni(sni)
            except SniError as exc:
                raise RouteError("unknown_sni", f"SNI {sni!r} is not a mesh name: {exc}") from None
            raise RouteError(
                "unknown_sni",
                f"no service {target.service!r} of mesh {target.mesh!r} in zone "
                f"{self.config.zone!r}",
            )
        endpoints = service.endpoints
        if not endpoints:
            raise RouteError(
                "no_endpoint", f"service {service.service!r} has no healthy local instance"
            )
        turn = self._turn.get(key, 0)
        self._turn[key] = (turn + 1) % len(endpoints)
        turned = endpoints[turn:] + endpoints[:turn]
        # sorted() is stable: round robin among the endpoints with as few connections
        ordered = sorted(turned, key=self._load)
        return Route(service, tuple(ordered))

    def _load(self, endpoint: Endpoint) -> tuple[bool, int]:
        key = (endpoint.address, endpoint.port)
        return key in self._failing, self._open.get(key, 0)

    def opened(self, endpoint: Endpoint) -> None:
        """A connection to `endpoint` is open (counted until `closed`)."""
        key = (endpoint.address, endpoint.port)
        self._open[key] = self._open.get(key, 0) + 1
        self._failing.discard(key)

    def failed(self, endpoint: Endpoint) -> None:
        """A connect to `endpoint` failed: it goes last until one succeeds."""
        self._failing.add((endpoint.address, endpoint.port))

    def closed(self, endpoint: Endpoint) -> None:
        key = (endpoint.address, endpoint.port)
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)
