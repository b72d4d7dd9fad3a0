"""Starting a local federation: lock the data directory, clear leftovers, pick ports, run.

Everything that can be refused (another `up` on this directory, a taken `--base-port`, missing
programs) is checked before the first child starts, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from meshctl.errors import CliError
from meshctl.up import control, procs
from meshctl.up.config_record import record_when_written
from meshctl.up.console import Console
from meshctl.up.credentials import admin_token_path, zone_token_path
from meshctl.up.demo import DemoNet, apply_resources, choose_net, try_commands
from meshctl.up.plan import GLOBAL, find_demo_programs, find_programs, plan_components
from meshctl.up.ports import (
    GLOBAL_API,
    GLOBAL_KDS,
    PortError,
    choose_ports,
    pick_free_port,
    port_keys,
    read_remembered,
    tcp_port_free,
    write_remembered,
    zone_names,
)
from meshctl.up.state import ROLE_ZONE, ComponentRecord, StateFileError, read_state
from meshctl.up.supervisor import Supervisor, SupervisorConfig

DEFAULT_DATA_DIR = ".meshfed/up"
STATE_NAME = "state.json"
PORTS_NAME = "ports.json"
DEMO_NET_KEY = "demo.net"  # in PORTS_NAME: the second octet of the demo's range last time


@dataclass(frozen=True)
class UpOptions:
    zones: int
    data_dir: Path
    state_file: Path | None
    base_port: int
    show_status: bool
    stop_timeout: float
    global_api_port: int = 5681  # preferred when free; 0 = any free port
    global_kds_port: int = 5685
    demo: bool = False  # also run the demo workloads (meshctl/up/demo.py)
    demo_net: int | None = None  # the demo's 127.N.0.0/16 as given (None: the first free one)
    reset: bool = False  # start from empty data: every component's store, logs and tokens go
    # meshctl's configuration, where the global is recorded with its admin token (None: not)
    config_path: Path | None = None


def state_path(data_dir: Path, state_file: Path | None) -> Path:
    return (state_file or data_dir / STATE_NAME).absolute()


def launch(opts: UpOptions, stdout: TextIO) -> int:
    data_dir = opts.data_dir.absolute()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    state_file = state_path(data_dir, opts.state_file)
    lock = procs.DataDirLock(data_dir / procs.LOCK_NAME)
    if not lock.acquire():
        holder = lock.holder()
        who = f" (pid {holder})" if holder else ""
        raise CliError(
            f"meshctl up is already running on {data_dir}{who}",
            details=[
                "stop it first (Ctrl-C in its terminal"
                + (f", or kill {holder})" if holder else ")"),
                "or give this one another --data-dir",
            ],
        )
    claims: list[procs.DataDirLock] = []
    try:
        programs = find_programs()
        demo = find_demo_programs() if opts.demo else None
        stopped = _stop_leftovers(state_file, opts.stop_timeout)
        if opts.reset:
            stopped.append(_reset(data_dir, state_file))
        zones = zone_names(opts.zones)
        ports_file = data_dir / PORTS_NAME
        remembered = read_remembered(ports_file)
        try:
            ports = choose_ports(
                port_keys(zones),
                remembered,
                opts.base_port,
                tcp_port_free,
                pick_free_port,
                preferred={GLOBAL_API: opts.global_api_port, GLOBAL_KDS: opts.global_kds_port},
            )
        except PortError as exc:
            raise CliError(str(exc)) from None
        net = None
        if opts.demo:
            net = _demo_net(zones, opts.demo_net, remembered.get(DEMO_NET_KEY), claims)
        write_remembered(ports_file, ports | ({DEMO_NET_KEY: net.octet} if net else {}))
        components = plan_components(zones, data_dir, ports, programs, demo, net)
        console = _console(stdout, [c.name for c in components])
        console.notice(*stopped)
        console.notice(*_banner(components, data_dir, state_file, opts))
        wanted = opts.global_api_port
        if wanted and opts.base_port == 0 and ports[GLOBAL_API] != wanted:
            console.notice(
                f"port {wanted} is in use: the global's API took {components[0].api} "
                f"(`meshctl` finds it through its configuration; the next `up` takes {wanted} "
                "again once it is free)"
            )
        config = SupervisorConfig(
            state_file=state_file,
            control_path=control.socket_path(data_dir),
            show_status=opts.show_status,
            stop_timeout=opts.stop_timeout,
            admin_token_file=admin_token_path(data_dir / GLOBAL),
            zone_tokens={z: zone_token_path(data_dir / z) for z in zones},
        )
        supervisor = Supervisor(
            config, components, console, data_dir, demo_network=net.cidr if net else None
        )
        demo_job = None
        if opts.demo:
            demo_job = functools.partial(
                apply_resources,
                components[0].api,
                console.notice,
                data_dir=data_dir,
                zones=zones,
                net=net,
            )
        recorder = None
        if opts.config_path is not None:
            recorder = record_when_written(
                opts.config_path,
                data_dir,
                components,
                admin_token_path(data_dir / GLOBAL),
                console.notice,
            )
        return asyncio.run(_supervise(supervisor, demo_job, recorder))
    finally:
        for claim in claims:
            claim.release()
        lock.release()


def _reset(data_dir: Path, state_file: Path) -> str:
    """`--reset`: removes everything a previous run left in the data directory (stores, logs,
    tokens, remembered ports, the state file) but the lock this run holds."""
    for entry in data_dir.iterdir():
        if entry.name == procs.LOCK_NAME:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            raise CliError(f"--reset: cannot remove {entry}: {exc.strerror or exc}") from None
    with contextlib.suppress(FileNotFoundError):
        state_file.unlink()
    return f"--reset: removed the previous data in {data_dir}; starting from empty stores"


def demo_claim_path(net: DemoNet) -> Path:
    """One lock file per range, shared by every `up` of this user on the host."""
    return Path(tempfile.gettempdir()) / f"meshctl-up-demo-127.{net.octet}.lock"


def _demo_net(
    zones: list[str], given: int | None, remembered: int | None, claims: list[procs.DataDirLock]
) -> DemoNet:
    """The demo's range: `given` as is (a busy address then shows as a workload that cannot
    start), else the first free one; claimed (flock) until this `up` ends."""

    def claim(net: DemoNet) -> bool:
        lock = procs.DataDirLock(demo_claim_path(net))
        if not lock.acquire():
            return False
        claims.append(lock)
        return True

    if given is not None:
        net = DemoNet(given)
        if not claim(net):
            raise CliError(
                f"another `meshctl up --demo` uses {net.cidr}",
                details=["leave out --demo-net to take a free range"],
            )
        return net
    return choose_net(zones, remembered, claim, lambda host, port: tcp_port_free(port, host))


async def _supervise(
    supervisor: Supervisor,
    demo: Callable[[], Coroutine[Any, Any, bool]] | None,
    recorder: Coroutine[Any, Any, None] | None,
) -> int:
    """Runs the supervisor; records the global in meshctl's configuration once it wrote its
    admin token; with the demo, applies its resources (and issues its proxies' tokens) once
    the global answers."""
    tasks: list[asyncio.Task[Any]] = []
    if recorder is not None:
        tasks.append(asyncio.create_task(recorder))
    if demo is not None:
        tasks.append(asyncio.create_task(demo()))
    try:
        return await supervisor.run()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _stop_leftovers(state_file: Path, timeout: float) -> list[str]:
    """Stops components a previous `up` on this directory left running when it died: they hold
    the ports and SQLite files this run needs. Only processes still running their recorded argv
    are touched."""
    try:
        previous = read_state(state_file)
    except StateFileError:
        return []
    notes = []
    for comp in procs.leftovers(previous, procs.runs):
        assert comp.pid is not None
        gone = procs.terminate(comp.pid, timeout)
        outcome = "stopped" if gone else "could not be stopped"
        notes.append(f"{comp.name} (pid {comp.pid}) left running by a previous run: {outcome}")
    return notes


def _console(stdout: TextIO, names: list[str]) -> Console:
    tty = stdout.isatty()
    return Console(
        stdout,
        names,
        tty=tty,
        color=tty and not os.environ.get("NO_COLOR"),
        columns=lambda: shutil.get_terminal_size().columns,
    )


def _dig(dns: str) -> str:
    host, _, port = dns.rpartition(":")
    return f"dig @{host} -p {port}"


def _banner(
    components: list[ComponentRecord], data_dir: Path, state_file: Path, opts: UpOptions
) -> list[str]:
    glob = components[0]
    where = "" if opts.data_dir == Path(DEFAULT_DATA_DIR) else f" --data-dir {opts.data_dir}"
    lines = [
        f"1 global and {opts.zones} zone(s) in {data_dir}; state file {state_file}",
        f"global API {glob.api}, KDS {glob.kds}",
    ]
    zones = [c for c in components if c.role == ROLE_ZONE]
    lines += [
        f"{c.name} API {c.api}, DNS {c.dns}"
        + (f", Prometheus discovery {c.mads}" if c.mads else "")
        for c in zones
    ]
    zone = zones[0] if zones else None
    lines += [
        "try: meshctl inspect zones   (meshctl's current control plane once the global runs; "
        f"its admin token is in {admin_token_path(Path(glob.data_dir))})",
        *(
            [
                f"     {_dig(zone.dns)} backend.mesh",
                f"     meshctl resolve backend.mesh --zone {zone.name}{where}",
            ]
            if zone is not None and zone.dns
            else []
        ),
        f"Ctrl-C stops everything; from another terminal: meshctl up status|stop|restart{where}",
    ]
    if opts.demo and zone is not None and zone.dns:
        demo = len(components) - 1 - len(zones)
        lines += [
            f"demo: {demo} more processes (apps, sidecars, ingresses); call backend from "
            f"{zone.name} through web's sidecar (the answer names the zone that served it):",
            *(f"     {line}" for line in try_commands(zone.name, zone.dns)),
        ]
        lines += [
            "demo: Prometheus finds every sidecar's metrics with kuma_sd_configs, one per zone: "
            + ", ".join(f"server: {c.mads}" for c in zones if c.mads)
        ]
    return lines
