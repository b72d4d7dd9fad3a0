"""meshctl's services table and `resolve`: finding the zone's DNS server, asking it for real
(an in-process server on a free port), and naming the zones that serve the answer."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshctl.commands.inspect import services_table
from meshctl.commands.resolve import from_state, mesh_of, served_by
from meshctl.errors import CliError
from meshctl.main import run
from meshctl.up.state import ComponentRecord, UpState, write_state
from meshfed.config import Address
from zone_cp.dns import NameSet
from zone_cp.dns_wiring import ZoneDns

ZONE_BODY: dict[str, Any] = {
    "mesh": "default",
    "zone": "zone-1",
    "total": 1,
    "items": [
        {
            "service": "backend",
            "port": 8080,
            "instances": 3,
            "zones": [{"zone": "zone-1", "instances": 1}, {"zone": "zone-2", "instances": 2}],
            "vip": "127.1.0.1",
            "zoneVips": {"zone-1": "127.1.0.2", "zone-2": "127.1.0.3"},
            "names": ["backend.mesh", "backend.zone-1.mesh", "backend.zone-2.mesh"],
        }
    ],
    "next": None,
}


def test_tables_for_a_zone_and_for_the_global() -> None:
    table = services_table(ZONE_BODY).splitlines()
    assert table[0].split() == ["SERVICE", "PORT", "ZONES", "VIP", "ZONE", "VIPS"]
    assert table[1].split() == [
        "backend",
        "8080",
        "zone-1(1)",
        "zone-2(2)",
        "127.1.0.1",
        "zone-1=127.1.0.2",
        "zone-2=127.1.0.3",
    ]
    global_body = {
        "mesh": "default",
        "items": [
            {
                "service": "backend",
                "instances": 2,
                "zones": [{"zone": "zone-2", "instances": 2}],
                "vips": {"zone-1": "127.1.0.1", "zone-2": "127.2.0.1"},
            },
            {"service": "odd", "zones": "nope", "vips": None},
        ],
    }
    rows = services_table(global_body).splitlines()
    assert rows[0].split()[:3] == ["SERVICE", "INSTANCES", "ZONES"]
    assert rows[1].split() == ["backend", "2", "zone-2(2)", "zone-1=127.1.0.1", "zone-2=127.2.0.1"]
    assert rows[2].split() == ["odd", "0", "-", "-"]


def test_which_zones_serve_an_answer() -> None:
    assert served_by(ZONE_BODY, ["127.1.0.1"]) == ("backend", ZONE_BODY["items"][0]["zones"])
    assert served_by(ZONE_BODY, ["127.1.0.3"]) == ("backend", [{"zone": "zone-2", "instances": 2}])
    assert served_by(ZONE_BODY, ["10.0.0.1"]) == (None, [])
    assert served_by({"items": "junk"}, ["127.1.0.1"]) == (None, [])
    assert mesh_of("backend.mesh") == "default"
    assert mesh_of("backend.zone-2.payments.meshes.mesh.") == "payments"


def state(dns: str | None = "127.0.0.1:7653") -> UpState:
    def zone(name: str) -> ComponentRecord:
        return ComponentRecord(name, "zone", [], f"http://127.0.0.1:1/{name}", "", "", zone=name)

    z1, z2 = zone("zone-1"), zone("zone-2")
    z1.dns, z2.dns = dns, "127.0.0.1:5654"
    glob = ComponentRecord("global", "global", [], "http://127.0.0.1:2", "", "")
    return UpState(1, "/d", "/d/ctl", [glob, z1, z2])


def test_the_state_file_names_each_zones_dns() -> None:
    target = from_state(state(), "zone-2", "state.json")
    assert (target.dns, target.zone) == (Address("127.0.0.1", 5654), "zone-2")
    assert target.api == "http://127.0.0.1:1/zone-2"
    with pytest.raises(CliError, match="which zone"):
        from_state(state(), None, "state.json")
    with pytest.raises(CliError, match="no zone 'zone-9'"):
        from_state(state(), "zone-9", "state.json")
    with pytest.raises(CliError, match="no DNS address"):
        from_state(state(dns=None), "zone-1", "state.json")


@pytest.fixture
async def dns() -> AsyncIterator[Address]:
    names = NameSet(records={"backend.mesh": "127.1.0.1", "backend.zone-2.mesh": "127.1.0.2"})
    server = ZoneDns(Address("127.0.0.1", 0))
    address = await server.start(names)
    yield address
    await server.close()


async def meshctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        run,
        list(argv),
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
        environ={"MESHCTL_CONFIG": os.environ["MESHCTL_CONFIG"]},
    )
    return code, out.getvalue(), err.getvalue()


async def test_resolve_asks_the_server_over_udp_and_tcp(dns: Address, tmp_path: Path) -> None:
    code, out, _ = await meshctl("resolve", "backend.mesh", "--dns", str(dns))
    assert code == 0 and "backend.mesh.\t30\tIN\tA\t127.1.0.1" in out and "(udp)" in out
    code, out, _ = await meshctl("resolve", "backend.mesh", "--dns", str(dns), "--tcp")
    assert code == 0 and "(tcp)" in out
    code, out, _ = await meshctl("resolve", "backend.mesh", "--dns", str(dns), "--type", "aaaa")
    assert code == 0 and "(no AAAA records for backend.mesh)" in out
    code, _, err = await meshctl("resolve", "nosuch.mesh", "--dns", str(dns))
    assert code == 1 and "nosuch.mesh: NXDOMAIN" in err

    up = state(dns=str(dns))
    write_state(tmp_path / "state.json", up)
    code, out, _ = await meshctl(
        "resolve",
        "backend.zone-2.mesh",
        "--zone",
        "zone-1",
        "--data-dir",
        str(tmp_path),
        "-o",
        "json",
    )
    result = json.loads(out)
    assert code == 0 and result["zone"] == "zone-1" and result["rcode"] == "NOERROR"
    assert [a["value"] for a in result["answers"]] == ["127.1.0.2"]
    assert result["service"] is None  # the zone API in this state file is not reachable


async def test_resolve_explains_what_it_needs() -> None:
    code, _, err = await meshctl(
        "resolve", "backend.mesh", "--api", "http://127.0.0.1:1", "--data-dir", "/nonexistent"
    )
    assert code == 1 and "no state file" in err
    code, _, err = await meshctl("resolve", "backend.mesh", "--dns", "nonsense")
    assert code == 2 and "not HOST:PORT" in err
