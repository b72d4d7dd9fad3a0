"""The processes of a local federation and their exact command lines (pure).

Every component gets its own data directory and log file under the `up` data directory, and
its ports on the command line, so `meshctl up restart X` can rerun the very same argv.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshctl.errors import CliError
from meshctl.up.credentials import admin_token_path, kds_ca_path, zone_token_path
from meshctl.up.demo import DemoNet, DemoPrograms, demo_components, python_program
from meshctl.up.ports import (
    GLOBAL_API,
    GLOBAL_KDS,
    HOST,
    zone_api_key,
    zone_dns_key,
    zone_dp_key,
    zone_mads_key,
)
from meshctl.up.state import ROLE_GLOBAL, ROLE_ZONE, ComponentRecord
from meshfed.vip_ranges import zone_vip_cidr

GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Programs:
    global_cp: str
    zone_cp: str


def find_programs() -> Programs:
    """The console scripts next to this interpreter (the same venv), else on PATH."""
    return Programs(global_cp=_find("global-cp"), zone_cp=_find("zone-cp"))


def _find(script: str) -> str:
    beside = Path(sys.executable).parent / script
    if beside.is_file():
        return str(beside)
    found = shutil.which(script)
    if found is None:
        raise CliError(f"cannot find the {script} program (install meshfed, e.g. `make venv`)")
    return found


def find_demo_programs() -> DemoPrograms:
    return DemoPrograms(python_program(), _find("mesh-dp"), _find("zone-ingress"))


def plan_components(
    zones: Sequence[str],
    data_dir: Path,
    ports: Mapping[str, int],
    programs: Programs,
    demo: DemoPrograms | None = None,
    demo_net: DemoNet | None = None,
) -> list[ComponentRecord]:
    """The global first, then the zones: the order they start and are shown in. With `demo`
    (`--demo`), the demo's apps, sidecars and ingresses follow (meshctl/up/demo.py), in
    `demo_net`, which then holds the first two zones' VIP ranges too.

    KDS is TLS: the global writes its KDS CA certificate and admin token into its directory;
    each zone is pinned to that CA and presents the token `up` issues it
    (meshctl/up/credentials.py) in its own directory."""
    kds = f"grpcs://{HOST}:{ports[GLOBAL_KDS]}"
    global_dir = data_dir / GLOBAL
    components = [
        ComponentRecord(
            name=GLOBAL,
            role=ROLE_GLOBAL,
            argv=[
                programs.global_cp,
                "run",
                "--api-address",
                f"{HOST}:{ports[GLOBAL_API]}",
                "--kds-address",
                f"{HOST}:{ports[GLOBAL_KDS]}",
                "--store",
                "sqlite",
                "--data-dir",
                str(global_dir),
                "--admin-token-file",
                str(admin_token_path(global_dir)),
                "--kds-ca-out",
                str(kds_ca_path(global_dir)),
            ],
            api=f"http://{HOST}:{ports[GLOBAL_API]}",
            kds=kds,
            data_dir=str(data_dir / GLOBAL),
            log=str(data_dir / "logs" / f"{GLOBAL}.log"),
        )
    ]
    if demo is not None and demo_net is None:
        raise ValueError("the demo needs its DemoNet")
    for index, zone in enumerate(zones):
        vips = zone_vip_cidr(index)
        if demo_net is not None and index < 2:
            vips = demo_net.vip_cidr(index)
        api_port = ports[zone_api_key(zone)]
        dns = f"{HOST}:{ports[zone_dns_key(zone)]}"
        dp = f"{HOST}:{ports[zone_dp_key(zone)]}"
        mads = f"{HOST}:{ports[zone_mads_key(zone)]}"
        components.append(
            ComponentRecord(
                name=zone,
                role=ROLE_ZONE,
                zone=zone,
                argv=[
                    programs.zone_cp,
                    "run",
                    "--zone",
                    zone,
                    "--global-kds",
                    kds,
                    "--api-address",
                    f"{HOST}:{api_port}",
                    "--store",
                    "sqlite",
                    "--data-dir",
                    str(data_dir / zone),
                    # Zones on one machine: own DNS port, own VIP range (never the same VIP).
                    "--dns-address",
                    dns,
                    "--vip-cidr",
                    str(vips),
                    "--dp-server-address",
                    dp,
                    "--zone-token-file",
                    str(zone_token_path(data_dir / zone)),
                    "--kds-ca-file",
                    str(kds_ca_path(global_dir)),
                    # Prometheus's kuma_sd_configs discover the zone's sidecars here
                    "--mads-address",
                    mads,
                ],
                api=f"http://{HOST}:{api_port}",
                dns=dns,
                dp=f"grpc://{dp}",
                mads=f"http://{mads}",
                data_dir=str(data_dir / zone),
                log=str(data_dir / "logs" / f"{zone}.log"),
            )
        )
    if demo is not None and demo_net is not None:
        dp_servers = {c.zone: c.dp for c in components if c.zone and c.dp}
        components += demo_components(zones, data_dir, dp_servers, demo, demo_net)
    return components
