"""Command lines of the components: the contract's flags, per-component dirs and logs."""

from __future__ import annotations

from pathlib import Path

from meshctl.up.plan import Programs, plan_components

PORTS = {"global.api": 5001, "global.kds": 5002, "zone-1.api": 5003, "zone-2.api": 5004}
PORTS |= {"zone-1.dns": 5005, "zone-2.dns": 5006, "zone-1.dp": 5007, "zone-2.dp": 5008}
PORTS |= {"zone-1.mads": 5009, "zone-2.mads": 5010}


def test_global_then_zones_with_contract_flags() -> None:
    glob, z1, z2 = plan_components(
        ["zone-1", "zone-2"], Path("/d"), PORTS, Programs("/bin/global-cp", "/bin/zone-cp")
    )
    assert glob.name == "global" and glob.role == "global" and glob.zone is None
    assert glob.argv == [
        "/bin/global-cp",
        "run",
        "--api-address",
        "127.0.0.1:5001",
        "--kds-address",
        "127.0.0.1:5002",
        "--store",
        "sqlite",
        "--data-dir",
        "/d/global",
        "--admin-token-file",
        "/d/global/admin-token",
        "--kds-ca-out",
        "/d/global/kds-ca.crt",
    ]
    assert (glob.api, glob.kds) == ("http://127.0.0.1:5001", "grpcs://127.0.0.1:5002")
    assert (glob.data_dir, glob.log) == ("/d/global", "/d/logs/global.log")
    assert z1.argv == [
        "/bin/zone-cp",
        "run",
        "--zone",
        "zone-1",
        "--global-kds",
        "grpcs://127.0.0.1:5002",
        "--api-address",
        "127.0.0.1:5003",
        "--store",
        "sqlite",
        "--data-dir",
        "/d/zone-1",
        "--dns-address",
        "127.0.0.1:5005",
        "--vip-cidr",
        "127.1.0.0/16",
        "--dp-server-address",
        "127.0.0.1:5007",
        # KDS over TLS pinned to the global's CA, with the token `up` issues the zone.
        "--zone-token-file",
        "/d/zone-1/zone-token",
        "--kds-ca-file",
        "/d/global/kds-ca.crt",
        # Prometheus's kuma_sd discovery of the zone's sidecars (public, as the zone's DNS)
        "--mads-address",
        "127.0.0.1:5009",
    ]
    assert (z1.role, z1.zone, z1.api, z1.kds) == ("zone", "zone-1", "http://127.0.0.1:5003", None)
    assert (z2.name, z2.data_dir, z2.log) == ("zone-2", "/d/zone-2", "/d/logs/zone-2.log")
    # Zones sharing the machine never share a DNS port or a VIP range.
    assert (z1.dns, z2.dns) == ("127.0.0.1:5005", "127.0.0.1:5006")
    assert z2.argv[-12:-8] == ["--dns-address", "127.0.0.1:5006", "--vip-cidr", "127.2.0.0/16"]
    # Nor a dataplane config server port, nor a token, nor a discovery port.
    assert z2.argv[-8:-6] == ["--dp-server-address", "127.0.0.1:5008"]
    assert z2.argv[-6:-4] == ["--zone-token-file", "/d/zone-2/zone-token"]
    assert z2.argv[-2:] == ["--mads-address", "127.0.0.1:5010"]
    assert (z1.dp, z2.dp) == ("grpc://127.0.0.1:5007", "grpc://127.0.0.1:5008")
    assert (z1.mads, z2.mads) == ("http://127.0.0.1:5009", "http://127.0.0.1:5010")
    assert z1.to_dict()["mads"] == z1.mads and "mads" not in glob.to_dict()
    assert z1.to_dict()["dpServer"] == z1.dp and "dpServer" not in glob.to_dict()
    assert glob.dns is None and "dns" not in glob.to_dict() and z1.to_dict()["dns"] == z1.dns
    assert all(c.pid is None and c.state == "exited" for c in (glob, z1, z2))
