"""From a ClientHello's SNI to the local endpoints to try, in round-robin order. Pure.

The routing table is the zone-cp's IngressConfig: SNI -> the local sidecar inbounds of one
service of one mesh (only healthy ones: zone-cp leaves out instances that are not ready).
The SNI must be one of ours (`meshfed.dpconfig.sni`: `<service>.<mesh>.sni.mesh`) and name a
service the table has; anything else is refused before a byte goes anywhere.

Each connection gets every endpoint of its service, starting one further along than the
previous connection (round robin), so the server can fall over to the next endpoint when a
connect fails without another lookup.
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

    def update(self, config: IngressConfig) -> None:
        """A new table; round-robin positions of services that stay are kept."""
        self.config = config
        self._table = config.by_sni()
        self._turn = {k: v for k, v in self._turn.items() if k in self._table}

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
        return Route(service, endpoints[turn:] + endpoints[:turn])
