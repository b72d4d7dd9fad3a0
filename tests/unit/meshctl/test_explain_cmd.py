"""`meshctl explain`'s table: one row per hop with its mark, and the first broken hop named."""

from __future__ import annotations

from meshctl.commands.explain import render
from meshctl.main import build_parser


def body(broken: str | None) -> dict[str, object]:
    return {
        "mesh": "default",
        "from": "web",
        "to": "backend",
        "zone": "zone-1",
        "ok": broken is None,
        "brokenHop": broken,
        "hops": [
            {"hop": "caller", "verdict": "ok", "detail": "web-1 in zone-1"},
            {"hop": "sidecar", "verdict": "warn", "detail": "config sent, not ACKed yet"},
            {"hop": "permission", "verdict": "fail" if broken else "ok", "detail": "by x"},
            {"hop": "policies", "verdict": "skip", "detail": "no caller"},
        ],
    }


def test_each_hop_is_a_row_with_its_mark() -> None:
    out = render(body("permission")).splitlines()

    assert out[0] == "web (zone-1) -> backend.mesh, mesh default"
    assert out[1].split() == ["HOP", "OK", "DETAIL"]
    assert out[2].split()[:2] == ["caller", "✓"]
    assert out[3].split()[:2] == ["sidecar", "!"]
    assert out[4].split()[:2] == ["permission", "✗"]
    assert out[5].split()[:2] == ["policies", "-"]
    assert out[-1] == "broken at: permission"


def test_a_path_without_a_broken_hop_says_so() -> None:
    assert render(body(None)).endswith("every hop passes\n")


def test_from_and_to_are_required() -> None:
    args = build_parser().parse_args(["explain", "--from", "web", "--to", "backend"])
    assert (args.source, args.destination, args.mesh, args.zone) == (
        "web",
        "backend",
        "default",
        None,
    )
