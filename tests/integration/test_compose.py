"""compose/: the container deployment, checked without a Docker engine (none runs here).

`docker-compose config` validates the file; the rest checks that it agrees with the programs
(every command, subcommand, flag and variable exists in their `--help`, every value parses with
the program's own settings), with itself (addresses, ports, DNS, tokens, mounts), with
`meshctl up --demo` (the same workloads and resources) and that the Dockerfile's sources build
the package. The bootstrap script runs for real against a global, and a zone connects with
what it wrote."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from global_cp.settings import CONFIG as GLOBAL_CONFIG
from global_cp.settings import check_settings as check_global
from mesh_dp.dataplane import build_dataplane
from mesh_dp.settings import CONFIG as SIDECAR_CONFIG
from meshctl.client import API_ENV, TOKEN_ENV
from meshctl.up.demo import (
    APP_PORT,
    DEMO_NET_FIRST,
    DEMO_RESOURCES,
    INBOUND_PORT,
    INGRESS_PORT,
    DemoNet,
    workloads,
)
from meshfed.config import Config
from tests.integration.compose_support import (
    BOOTSTRAP,
    COMPOSE_DIR,
    COMPOSE_FILE,
    DOCKERIGNORE,
    argv,
    dockerfile_instructions,
    flag_values,
    flags_used,
    host_port,
    issued,
    load_compose,
    meshctl_calls,
    mounts,
    program_help,
    script_default,
    services,
    static_ip,
    url_host_port,
)
from tests.support import REPO, VENV_BIN, free_port, wait_until
from zone_cp.settings import CONFIG as ZONE_CONFIG
from zone_cp.settings import check_settings as check_zone
from zone_ingress.settings import CONFIG as INGRESS_CONFIG

CONFIGS: dict[str, Config[Any]] = {
    "global-cp": GLOBAL_CONFIG,
    "zone-cp": ZONE_CONFIG,
    "zone-ingress": INGRESS_CONFIG,
    "mesh-dp": SIDECAR_CONFIG,
}
# The checks a program runs on its settings at start, beyond each value's own parser.
CHECKS: dict[str, Callable[[Any], None]] = {"global-cp": check_global, "zone-cp": check_zone}
ZONES = ("zone-1", "zone-2")
DNS_PORT = 53  # Docker's `dns:` takes an address, and resolvers ask port 53


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is missing: run `make system-deps` (Debian's docker-compose)")
    return found


def _by_program(program: str) -> dict[str, list[str]]:
    return {name: argv(s) for name, s in services().items() if argv(s)[0] == program}


def _apps() -> dict[str, list[str]]:
    """Workload containers: the demo's echo app."""
    return {n: a for n, a in _by_program("python").items() if a[1:3] == ["-m", "mesh_dp.echo"]}


def _sidecars() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if argv(s)[0] == "mesh-dp"}


def _dataplane(service: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(flag_values(argv(service))["--dataplane"])
    assert isinstance(doc, dict)
    return doc


def _zone_cps() -> dict[str, str]:
    """zone name -> its zone-cp service."""
    return {flag_values(a)["--zone"]: n for n, a in _by_program("zone-cp").items()}


# -- the file is valid ----------------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    """The validation above can fail: a misspelt key is refused."""
    broken = tmp_path / "docker-compose.yaml"
    data = load_compose()
    data["services"]["web"]["networkz"] = data["services"]["web"].pop("networks")
    broken.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [_docker_compose(), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "networkz" in result.stderr


# -- every program, flag and variable exists ------------------------------------------------


def test_every_command_flag_and_variable_exists_in_the_programs_help() -> None:
    seen = set()
    for name, service in services().items():
        args = argv(service)
        program = args[0]
        env = {str(k): str(v) for k, v in (service.get("environment") or {}).items()}
        if program in CONFIGS:
            assert args[1] in program_help(program).commands, (name, args[1])
            help_ = program_help(program, args[1])
            unknown = set(flags_used(args[2:])) - help_.flags
            assert not unknown, f"{name}: {program} {args[1]} has no {sorted(unknown)}"
            assert set(env) <= help_.env, f"{name}: {sorted(set(env) - help_.env)}"
            # The values parse with the program's own settings (addresses, CIDRs, durations).
            config = CONFIGS[program]
            settings = config.resolve(config.parser().parse_args(args[2:]), env)
            if program in CHECKS:
                CHECKS[program](settings)
        elif program == "python":
            assert args[1] == "-m"
            help_ = program_help("python", "-m", args[2])
            unknown = set(flags_used(args[3:])) - help_.flags
            assert not unknown, f"{name}: {args[2]} has no {sorted(unknown)}"
        elif program == "sh":
            assert args[1] == "/compose/bootstrap.sh", name
            assert mounts(service)["/compose/bootstrap.sh"] == ("./bootstrap.sh", True)
            assert set(env) - {"MESHFED_LOG_LEVEL"} <= program_help("meshctl").env, name
        else:
            pytest.fail(f"{name}: unexpected program {program}")
        seen.add(program)
    assert seen == {*CONFIGS, "python", "sh"}


def test_every_meshctl_call_of_the_bootstrap_exists() -> None:
    calls = meshctl_calls()
    assert len(calls) >= 9
    for call in calls:
        words = [w for w in call[1:] if not w.startswith("-")]
        path = ["meshctl"]
        # the (sub)commands: each must be listed by its parent's --help
        for word in words:
            if word not in program_help(*path).commands:
                break
            path.append(word)
        assert len(path) >= 2, call
        help_ = program_help(*path)
        unknown = set(flags_used(call)) - help_.flags
        assert not unknown, f"{' '.join(path)} has no {sorted(unknown)}"
    text = BOOTSTRAP.read_text()
    assert f"export {TOKEN_ENV}" in text and API_ENV in program_help("meshctl").env


# -- addresses, ports, DNS ------------------------------------------------------------------


def test_static_addresses_are_unique_and_outside_the_dynamic_range() -> None:
    (ipam,) = load_compose()["networks"]["mesh"]["ipam"]["config"]
    subnet = ipaddress.IPv4Network(ipam["subnet"])
    dynamic = ipaddress.IPv4Network(ipam["ip_range"])
    assert dynamic.subnet_of(subnet)
    ips = {n: static_ip(s) for n, s in services().items() if static_ip(s)}
    assert len(set(ips.values())) == len(ips), ips
    for name, ip in ips.items():
        address = ipaddress.IPv4Address(ip)
        assert address in subnet and address not in dynamic, (name, ip)
    for name, service in services().items():
        if static_ip(service) is None:  # shares another's namespace, or takes a dynamic one
            target = str(service.get("network_mode", "")).removeprefix("service:")
            assert target in ips or service.get("networks") == ["mesh"], name


def test_workloads_resolve_with_their_zones_dns() -> None:
    """`dns:` of every workload is where its zone-cp's DNS listens (port 53)."""
    zone_cps = _zone_cps()
    svc = services()
    for cp in zone_cps.values():
        host, port = host_port(flag_values(argv(svc[cp]))["--dns-address"])
        assert host == static_ip(svc[cp]) and port == DNS_PORT, cp
        # a non-root DNS server on port 53
        assert svc[cp]["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == 0
    for name, args in _apps().items():
        zone = flag_values(args)["--zone"]
        assert svc[name]["dns"] == [static_ip(svc[zone_cps[zone]])], name


def test_proxies_dial_their_zones_config_server() -> None:
    svc = services()
    zone_cps = _zone_cps()
    dp_port = {
        z: host_port(flag_values(argv(svc[c]))["--dp-server-address"])[1]
        for z, c in zone_cps.items()
    }
    apps = _apps()
    for name, service in svc.items():
        args = argv(service)
        if args[0] == "mesh-dp":
            app = service["network_mode"].removeprefix("service:")
            zone = flag_values(apps[app])["--zone"]
        elif args[0] == "zone-ingress":
            zone = next(z for z in ZONES if flag_values(args)["--name"].endswith(z))
        else:
            continue
        host, port = url_host_port(flag_values(args)["--cp"])
        assert (host, port) == (zone_cps[zone], dp_port[zone]), name
        assert service["depends_on"][zone_cps[zone]]["condition"] == "service_healthy"


def test_zones_reach_the_global_over_tls_with_its_name_in_the_certificate() -> None:
    svc = services()
    (glob,) = _by_program("global-cp").items()
    gflags = flag_values(glob[1])
    _, kds_port = host_port(gflags["--kds-address"])
    sans = gflags["--kds-tls-san"].split(",")
    for cp in _zone_cps().values():
        flags = flag_values(argv(svc[cp]))
        assert flags["--global-kds"].startswith("grpcs://")
        host, port = url_host_port(flags["--global-kds"])
        assert host == glob[0] and port == kds_port and host in sans
        assert "--kds-tls-skip-verify" not in flags and "--kds-insecure" not in flags


def test_published_ports_and_healthchecks_hit_the_apis() -> None:
    for name, service in services().items():
        flags = flag_values(argv(service))
        listening = {
            host_port(v)[1] for k, v in flags.items() if k.endswith("-address") and ":" in v
        }
        for spec in service.get("ports") or []:
            container_port = int(str(spec).rsplit(":", 1)[1])
            assert container_port in listening, (name, spec)
            api_host, api_port = host_port(flags["--api-address"])
            assert api_port == container_port and api_host == "0.0.0.0", name
        check = service.get("healthcheck")
        if check:
            url = check["test"][-1]
            assert url.endswith("/ready"), name
            host, port = url_host_port(url.removesuffix("/ready"))
            assert host == "127.0.0.1" and port == host_port(flags["--api-address"])[1], name


def test_ingresses_listen_on_their_container_address() -> None:
    for name, args in _by_program("zone-ingress").items():
        flags = flag_values(args)
        assert flags["--address"] == static_ip(services()[name]), name
        assert int(flags["--port"]) == INGRESS_PORT


def test_each_sidecar_announces_its_workload() -> None:
    """The Dataplane is valid for mesh-dp, names its container's address, forwards to the app
    next to it, and its token is the one the bootstrap issues for that name and service."""
    svc = services()
    apps = _apps()
    creds = issued()
    for name, service in _sidecars().items():
        app = service["network_mode"].removeprefix("service:")
        doc = _dataplane(service)
        build_dataplane(document=doc)  # raises on a Dataplane mesh-dp would refuse
        net = doc["networking"]
        assert net["address"] == static_ip(svc[app]), name
        (inbound,) = net["inbound"]
        app_host, app_port = host_port(flag_values(apps[app])["--address"])
        assert (inbound["serviceAddress"], inbound["servicePort"]) == (app_host, app_port)
        assert inbound["port"] == INBOUND_PORT
        assert flag_values(apps[app])["--name"] == doc["name"]
        token = flag_values(argv(service))["--dataplane-token-file"]
        call = flag_values(creds[token.removeprefix("/creds/")].meshctl)
        assert call["--name"] == doc["name"], name
        assert call["--tag"] == f"kuma.io/service={inbound['tags']['kuma.io/service']}"
        assert call["--mesh"] == doc["mesh"]
        # VIPs bound on port 80 too, by a non-root user, in the app's namespace
        if net["transparentProxying"]["reachableServices"]:
            assert svc[app]["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == 0


def test_credentials_come_from_the_bootstrap() -> None:
    svc = services()
    creds = issued()
    out = script_default("OUT")
    global_dir = script_default("GLOBAL_DIR")
    (glob_name, glob_args) = next(iter(_by_program("global-cp").items()))
    gflags = flag_values(glob_args)
    data_source, _ = mounts(svc[glob_name])[gflags["--data-dir"]]
    for flag in ("--admin-token-file", "--kds-ca-out"):
        assert Path(gflags[flag]).parent == Path(gflags["--data-dir"]) == Path(global_dir)
    boot = mounts(svc["bootstrap"])
    assert boot[global_dir] == (data_source, True) and boot[out] == ("creds", False)
    assert svc["bootstrap"]["depends_on"][glob_name]["condition"] == "service_healthy"
    for zone, cp in _zone_cps().items():
        flags = flag_values(argv(svc[cp]))
        assert flags["--kds-ca-file"] == f"{out}/kds-ca.crt"
        call = flag_values(creds[flags["--zone-token-file"].removeprefix(f"{out}/")].meshctl)
        assert (call["--zone"], call["--scope"]) == (zone, "kds"), cp
        assert svc[cp]["depends_on"]["bootstrap"]["condition"] == ("service_completed_successfully")
    for name, args in _by_program("zone-ingress").items():
        flags = flag_values(args)
        call = flag_values(creds[flags["--zone-token-file"].removeprefix(f"{out}/")].meshctl)
        assert call["--scope"] == "ingress" and flags["--name"].endswith(call["--zone"]), name
    # every consumer reads the volume, only the bootstrap writes it
    for name, service in svc.items():
        if "creds" in {src for src, _ in mounts(service).values()} and name != "bootstrap":
            assert mounts(service)[out] == ("creds", True), name


# -- the same demo as `meshctl up --demo` ---------------------------------------------------


def test_it_deploys_the_demo_of_meshctl_up() -> None:
    want = {
        (w.name, w.service, w.zone, w.reachable)
        for w in workloads(list(ZONES), DemoNet(DEMO_NET_FIRST))
    }
    got = set()
    for service in _sidecars().values():
        doc = _dataplane(service)
        app = service["network_mode"].removeprefix("service:")
        zone = flag_values(_apps()[app])["--zone"]
        (inbound,) = doc["networking"]["inbound"]
        reachable = tuple(doc["networking"]["transparentProxying"]["reachableServices"])
        got.add((doc["name"], inbound["tags"]["kuma.io/service"], zone, reachable))
        assert inbound["tags"]["kuma.io/protocol"] == "http"
        assert inbound["servicePort"] == APP_PORT
    assert got == want
    assert {flag_values(a)["--name"] for a in _by_program("zone-ingress").values()} == {
        f"ingress-{z}" for z in ZONES
    }
    resources = list(yaml.safe_load_all((COMPOSE_DIR / "demo-resources.yaml").read_text()))
    assert resources == [body for _, body in DEMO_RESOURCES]
    assert services()["bootstrap"]["volumes"][-1].startswith("./demo-resources.yaml:")


# -- the Dockerfile -------------------------------------------------------------------------


def test_the_dockerfile_is_pinned_unprivileged_and_installs_from_the_lock() -> None:
    steps = dockerfile_instructions()
    (base,) = [args for kw, args in steps if kw == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    users = [args for kw, args in steps if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    runs = [args for kw, args in steps if kw == "RUN"]
    lock = [r for r in runs if "-r /src/requirements/main.txt" in r]
    assert len(lock) == 1 and "--require-hashes" in lock[0] and "--no-deps" in lock[0]
    package = [r for r in runs if re.search(r"pip install .*/src(\s|$)", r)]
    assert len(package) == 1 and "--no-deps" in package[0] and "--no-build-isolation" in package[0]
    assert not any("dev.txt" in r for r in runs)
    cmd = json.loads(next(args for kw, args in reversed(steps) if kw == "CMD"))
    assert cmd[0] in _pyproject()["project"]["scripts"], cmd


def _copy_sources() -> list[tuple[list[str], str]]:
    out = []
    for kw, args in dockerfile_instructions():
        if kw == "COPY":
            *sources, dest = args.split()
            out.append((sources, dest))
    return out


def test_the_dockerfile_copies_files_that_exist_and_are_in_the_context() -> None:
    allowed = {
        line.removeprefix("!")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for sources, _ in _copy_sources():
        for source in sources:
            assert (REPO / source).exists(), source
            assert source in allowed, f"{source} is excluded by .dockerignore"
            copied.add(source)
    assert copied == allowed, "the .dockerignore lets in exactly what is copied"
    # every package setuptools installs is copied
    packages = {
        p.split("*")[0] for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= copied


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_copied_sources_build_a_working_package(tmp_path: Path) -> None:
    """What the image builds from: the copied files alone make the wheel, and its programs
    and the GUI's static files are in it."""
    src = tmp_path / "src"
    for sources, dest in _copy_sources():
        for source in sources:
            # Docker's rules: into a directory when DEST ends with "/", else DEST itself
            # (a directory's contents go to DEST).
            rel = dest.removeprefix("/src").strip("/")
            target = src / rel / Path(source).name if dest.endswith("/") else src / rel
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, target)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("meshfed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("meshfed/api/gui/static/") for n in names)
    assert "mesh_dp/echo.py" in names
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for program in (*CONFIGS, "meshctl"):
        assert f"{program} = " in scripts


# -- the bootstrap against a real global ----------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_bootstrap_issues_what_the_compose_file_reads(procs: Any, tmp_path: Path) -> None:
    """bootstrap.sh against a real global: every token file (0600) with the right claims,
    the KDS CA, the demo's resources; then zone-1 starts with the compose file's credential
    flags on what it wrote, and comes online."""
    svc = services()
    api_port, kds_port = free_port(), free_port()
    global_dir, out = tmp_path / "global", tmp_path / "creds"
    out.mkdir()
    gflags = flag_values(argv(svc["global-cp"]))
    glob = procs.start(
        "global",
        [
            procs.script("global-cp"),
            "run",
            "--api-address",
            f"127.0.0.1:{api_port}",
            "--kds-address",
            f"127.0.0.1:{kds_port}",
            "--kds-tls-san",
            gflags["--kds-tls-san"],
            "--data-dir",
            str(global_dir),
            "--admin-token-file",
            str(global_dir / Path(gflags["--admin-token-file"]).name),
            "--kds-ca-out",
            str(global_dir / Path(gflags["--kds-ca-out"]).name),
        ],
    )
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "MESHFED_API": f"http://127.0.0.1:{api_port}",
        "MESHCTL_CONFIG": str(tmp_path / "meshctl.yaml"),
        "BOOTSTRAP_GLOBAL_DIR": str(global_dir),
        "BOOTSTRAP_OUT": str(out),
        "BOOTSTRAP_RESOURCES": str(COMPOSE_DIR / "demo-resources.yaml"),
        "BOOTSTRAP_WAIT_SECONDS": "60",
    }
    result = subprocess.run(
        ["sh", str(BOOTSTRAP)], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr + glob.log()[-3000:]
    assert "bootstrap: done" in result.stdout
    ca = out / "kds-ca.crt"
    assert ca.read_text() == (global_dir / "kds-ca.crt").read_text()
    for file, what in issued().items():
        path = out / file
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, file
        claims = _claims(path.read_text().strip())
        flags = flag_values(what.meshctl)
        if "zone-token" in what.meshctl:
            assert claims["zone"] == flags["--zone"]
            assert claims["scope"] == [flags["--scope"]], claims
        else:
            assert claims["name"] == flags["--name"]
            key, _, value = flags["--tag"].partition("=")
            assert claims["tags"] == {key: [value]}, claims
    req = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/meshes/default/meshtrafficpermissions/web-to-backend"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.load(resp)["spec"]["from"][0]["targetRef"]["name"] == "web"

    # zone-1 with the compose file's credential flags, pointed at this global
    zflags = flag_values(argv(svc["zone-1-cp"]))
    zone = procs.start(
        "zone-1",
        [
            procs.script("zone-cp"),
            "run",
            "--zone",
            zflags["--zone"],
            "--global-kds",
            f"grpcs://127.0.0.1:{kds_port}",
            "--zone-token-file",
            str(out / Path(zflags["--zone-token-file"]).name),
            "--kds-ca-file",
            str(out / Path(zflags["--kds-ca-file"]).name),
            "--api-address",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path / "zone-1"),
            "--vip-cidr",
            zflags["--vip-cidr"],
        ],
    )

    def online() -> bool:
        assert zone.alive(), zone.log()[-3000:]
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{api_port}/zones/zone-1/_overview", timeout=5
            ) as resp:
                return bool(json.load(resp)["zoneInsight"]["state"] == "online")
        except OSError:
            return False

    wait_until(online, timeout=30, what="zone-1 online with the bootstrap's token and CA")
