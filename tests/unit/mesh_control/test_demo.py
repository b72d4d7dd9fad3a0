"""`meshctl up --demo`: its processes and their command lines, the one-liner it prints, and
its resources accepted by a real API (the enforcement gate included)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh_dp.dataplane import build_dataplane
from meshctl.errors import CliError
from meshctl.up.demo import (
    DemoNet,
    DemoPrograms,
    apply_resources,
    choose_net,
    dataplane,
    demo_components,
    listeners,
    try_commands,
    workloads,
)
from meshctl.up.plan import Programs, plan_components
from meshctl.up.tokens import admin_token_file, proxy_token_file
from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_admin_token, ensure_signing_key
from meshfed.auth.tokens import (
    DataplaneClaims,
    TokenKind,
    ZoneClaims,
    ZoneScope,
    verify,
)
from tests.unit.api.conftest import Api, mesh, start_api

PORTS = {"global.api": 5001, "global.kds": 5002, "zone-1.api": 5003, "zone-2.api": 5004}
PORTS |= {"zone-1.dns": 5005, "zone-2.dns": 5006, "zone-1.dp": 5007, "zone-2.dp": 5008}
PORTS |= {"zone-1.mads": 5009, "zone-2.mads": 5010}
DEMO = DemoPrograms("/bin/python", "/bin/mesh-dp", "/bin/zone-ingress")
NET = DemoNet(200)


def test_the_demo_follows_the_control_planes() -> None:
    comps = plan_components(
        ["zone-1", "zone-2"], Path("/d"), PORTS, Programs("/bin/g", "/bin/z"), DEMO, NET
    )
    assert [c.name for c in comps] == [
        "global",
        "zone-1",
        "zone-2",
        "app-backend-z2-1",
        "backend-z2-1",
        "app-backend-z2-2",
        "backend-z2-2",
        "app-backend-z1-1",
        "backend-z1-1",
        "app-web-1",
        "web-1",
        "ingress-zone-1",
        "ingress-zone-2",
    ]
    demo = {c.name: c for c in comps[3:]}
    assert {c.role for c in demo.values()} == {"demo"}
    web = demo["web-1"]
    assert web.argv[:4] == ["/bin/mesh-dp", "run", "--cp", "grpc://127.0.0.1:5007"]
    assert web.argv[-4:] == [
        "--admin-address",
        "127.200.0.2:9901",
        "--dataplane-token-file",
        "/d/demo/tokens/web-1.token",
    ]
    assert demo["backend-z2-1"].argv[3] == "grpc://127.0.0.1:5008"
    assert demo["app-backend-z2-1"].argv == [
        "/bin/python",
        "-m",
        "mesh_dp.echo",
        "--address",
        "127.200.1.1:8080",
        "--name",
        "backend-z2-1",
        "--zone",
        "zone-2",
    ]
    assert demo["ingress-zone-2"].argv[-8:] == [
        "--address",
        "127.200.1.100",
        "--port",
        "10001",
        "--admin-address",
        "127.200.1.100:9902",
        "--zone-token-file",
        "/d/demo/tokens/ingress-zone-2.token",
    ]
    assert (web.log, web.data_dir) == ("/d/logs/web-1.log", "/d/demo")
    assert (web.admin, demo["app-web-1"].api) == (
        "http://127.200.0.2:9901",
        "http://127.200.0.2:8080",
    )
    # The first two zones' VIPs are in the demo's range too (web's sidecar binds them).
    zone_vips = [c.argv[c.argv.index("--vip-cidr") + 1] for c in comps[1:3]]
    assert zone_vips == ["127.200.128.0/24", "127.200.129.0/24"]


def test_only_web_binds_vips_and_every_dataplane_is_valid() -> None:
    for w in workloads(["zone-1", "zone-2"], NET):
        spec = build_dataplane(document=dataplane(w))  # what mesh-dp checks at start
        assert spec.reachable == (frozenset({"backend"}) if w.name == "web-1" else frozenset())
        assert spec.document["networking"]["inbound"][0]["servicePort"] == 8080
    comps = demo_components(
        ["a", "b"], Path("/d"), {"a": "grpc://x:1", "b": "grpc://y:2"}, DEMO, NET
    )
    inline = json.loads(next(c for c in comps if c.name == "web-1").argv[5])
    assert inline["networking"]["transparentProxying"] == {"reachableServices": ["backend"]}


def test_one_zone_is_not_enough() -> None:
    with pytest.raises(CliError, match="at least 2 zones"):
        workloads(["zone-1"], NET)


def test_the_first_free_unclaimed_range_is_taken() -> None:
    zones = ["zone-1", "zone-2"]
    claimed = {200}  # another demo's claim
    busy = {("127.201.1.2", 18080)}  # something else listens in 127.201/16
    taken: list[int] = []

    def claim(net: DemoNet) -> bool:
        if net.octet in claimed:
            return False
        taken.append(net.octet)
        return True

    def is_free(host: str, port: int) -> bool:
        return (host, port) not in busy

    assert choose_net(zones, None, claim, is_free) == DemoNet(202)
    assert taken == [202]  # a range is claimed only once its ports are free
    assert choose_net(zones, 230, claim, is_free) == DemoNet(230)  # remembered first
    assert ("127.200.128.1", 8080) in listeners(zones, NET)  # zone-1's first VIP
    with pytest.raises(CliError, match="no free range"):
        choose_net(zones, None, lambda net: False, is_free)
    with pytest.raises(ValueError, match="from 200 to 254"):
        DemoNet(1)


def test_the_one_liner() -> None:
    assert try_commands("zone-1", "127.0.0.1:7653") == [
        "curl -s http://$(dig +short @127.0.0.1 -p 7653 backend.mesh):8080/; echo",
        "curl -s http://$(dig +short @127.0.0.1 -p 7653 backend.zone-2.mesh):8080/; echo",
    ]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    a, client = await start_api()
    try:
        yield a
    finally:
        await client.close()
        await a.store.close()


async def up_dir(api: Api, tmp_path: Path) -> Path:
    """An `up` directory where the global wrote its admin token (as --admin-token-file does)."""
    token = await ensure_admin_token(api.store)
    admin_token_file(tmp_path).parent.mkdir(parents=True)
    admin_token_file(tmp_path).write_text(token + "\n")
    return tmp_path


async def test_the_resources_are_accepted_by_the_global(api: Api, tmp_path: Path) -> None:
    data_dir = await up_dir(api, tmp_path)
    await ensure_signing_key(api.store, TokenKind.ZONE)
    headers = {"Authorization": f"Bearer {await ensure_admin_token(api.store)}"}
    assert (await api.put("/meshes/default", mesh("default"), headers=headers)).status == 201
    # The global's leader makes the mesh's key (DataplaneKeyJob); here, by hand.
    await ensure_signing_key(api.store, TokenKind.DATAPLANE, "default")
    notes: list[str] = []
    base = str(api.client.make_url("")).rstrip("/")
    zones = ["zone-1", "zone-2"]
    assert await apply_resources(base, notes.append, timeout=10, data_dir=data_dir, zones=zones)
    stored = await api.store.get("Mesh", "", "default")
    assert stored.spec["mtls"]["enabledBackend"] == "ca-1"
    mtp = await api.store.get("MeshTrafficPermission", "default", "web-to-backend")
    assert mtp.spec["from"][0]["targetRef"] == {"kind": "MeshService", "name": "web"}
    assert any("builtin mTLS" in n for n in notes), notes
    log = await api.store.get("MeshAccessLog", "default", "demo-access-log")
    file = {"type": "File", "file": {"path": str(data_dir / "demo" / "access.log")}}
    assert log.spec["from"][0]["default"]["backends"] == [file]
    assert log.spec["to"][0]["default"]["backends"] == [file]
    metric = await api.store.get("MeshMetric", "default", "demo-metrics")
    assert metric.spec["default"]["backends"][0]["prometheus"]["port"] == 5670
    assert str(data_dir / "demo" / "access.log") in notes[-1] and ":5670/metrics" in notes[-1]

    # Every proxy's token, readable by this user only, naming only its own service.
    secrets = (await api.store.list("Secret", mesh="default")).items
    dp_keys = keyring.trusted_keys(TokenKind.DATAPLANE, secrets, "default")
    for w in workloads(zones, NET):
        path = proxy_token_file(data_dir, w.name)
        assert path.stat().st_mode & 0o777 == 0o600
        claims = verify(path.read_text(), TokenKind.DATAPLANE, dp_keys).claims
        assert claims == DataplaneClaims("default", {"kuma.io/service": (w.service,)}, w.name)
    zone_keys = keyring.trusted_keys(TokenKind.ZONE, (await api.store.list("GlobalSecret")).items)
    for zone in zones:
        text = proxy_token_file(data_dir, f"ingress-{zone}").read_text()
        assert verify(text, TokenKind.ZONE, zone_keys).claims == ZoneClaims(
            zone, (ZoneScope.INGRESS,)
        )


async def test_without_the_admin_token_the_global_refuses(api: Api) -> None:
    notes: list[str] = []
    base = str(api.client.make_url("")).rstrip("/")
    assert not await apply_resources(base, notes.append, timeout=5)
    assert "refused /meshes/default: HTTP 401" in notes[-1]


async def test_a_refusal_is_reported_not_retried(api: Api, tmp_path: Path) -> None:
    data_dir = await up_dir(api, tmp_path)
    notes: list[str] = []
    base = str(api.client.make_url("")).rstrip("/")
    # A 4xx (here: no such path) is an answer, not "not up yet": reported at once.
    assert not await apply_resources(base + "/nope", notes.append, timeout=5, data_dir=data_dir)
    assert "refused /meshes/default: HTTP 404" in notes[-1]


async def test_without_the_admin_token_the_global_refuses_and_nothing_is_stored(api: Api) -> None:
    notes: list[str] = []
    base = str(api.client.make_url("")).rstrip("/")
    assert not await apply_resources(base, notes.append, timeout=5)
    assert "refused /meshes/default: HTTP 401" in notes[-1]
    assert (await api.store.list("Mesh")).items == []
