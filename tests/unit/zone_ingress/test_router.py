"""SNI -> endpoints in round-robin order, and the refusals, on the pure Router."""

from __future__ import annotations

import pytest

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService
from meshfed.dpconfig.sni import encode_sni
from zone_ingress.router import RouteError, Router

SNI = encode_sni("backend", "default")
E1, E2, E3 = (Endpoint(f"127.0.0.{i}", 18080, "zone-2") for i in (1, 2, 3))


def table(*endpoints: Endpoint, extra: tuple[IngressService, ...] = ()) -> IngressConfig:
    service = IngressService("default", "backend", SNI, tuple(endpoints))
    return IngressConfig("zone-2", "ingress-1", (service, *extra)).stamped()


def test_round_robin_start_with_the_rest_as_fallbacks() -> None:
    r = Router(table(E1, E2, E3))
    orders = [r.route(SNI).endpoints for _ in range(4)]
    assert orders == [(E1, E2, E3), (E2, E3, E1), (E3, E1, E2), (E1, E2, E3)]
    assert r.route(SNI.upper() + ".").service.service == "backend"  # case and root dot


def test_unknown_names_and_empty_services_are_refused() -> None:
    r = Router(table(E1))
    with pytest.raises(RouteError, match="no service 'payments' of mesh 'default'") as exc:
        r.route(encode_sni("payments", "default"))
    assert exc.value.reason == "unknown_sni"
    with pytest.raises(RouteError, match="is not a mesh name") as exc:
        r.route("example.com")
    assert exc.value.reason == "unknown_sni"
    r.update(table())
    with pytest.raises(RouteError, match="no healthy local instance") as exc:
        r.route(SNI)
    assert exc.value.reason == "no_endpoint"


def test_update_keeps_positions_of_services_that_stay() -> None:
    other_sni = encode_sni("web", "default")
    web = IngressService("default", "web", other_sni, (E3,))
    r = Router(table(E1, E2, extra=(web,)))
    r.route(SNI)
    r.update(table(E1, E2))
    assert r.route(SNI).endpoints[0] == E2
    with pytest.raises(RouteError):
        r.route(other_sni)
