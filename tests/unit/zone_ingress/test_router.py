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


def test_fewest_open_connections_first_then_round_robin() -> None:
    """A caller that pools a connection per instance gets a different instance on each, even
    when another caller's connection took the round-robin turn in between."""
    r = Router(table(E1, E2))
    first = r.route(SNI).endpoints[0]
    r.opened(first)
    r.route(SNI)  # another caller's turn, never connected
    second = r.route(SNI).endpoints[0]  # round robin alone would give `first` again
    assert second != first
    r.opened(second)
    r.opened(second)
    assert r.route(SNI).endpoints == (first, second)  # fewest first, the rest to fall back on
    r.closed(second)
    r.closed(second)
    r.update(table(E1, E2))  # counts survive a new table
    assert r.route(SNI).endpoints[0] == second


def test_an_endpoint_that_failed_goes_last_until_a_connect_succeeds() -> None:
    r = Router(table(E1, E2))
    r.opened(E2)
    r.failed(E1)  # no connections, but refused: not first
    assert [r.route(SNI).endpoints for _ in range(2)] == [(E2, E1), (E2, E1)]
    r.opened(E1)
    r.closed(E1)
    assert r.route(SNI).endpoints == (E1, E2)
