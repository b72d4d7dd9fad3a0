"""`meshctl up`: one global and N zone control planes on this machine, supervised together.

`meshctl up restart|stop COMPONENT` and `meshctl up status` act on a running `up`, found
through its state file (`--data-dir` or `--state-file` as given to it).
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meshctl.commands.common import positive_float
from meshctl.context import Context
from meshctl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from meshctl.output import render_table
from meshctl.up import control, procs
from meshctl.up.demo import DEMO_NET_FIRST, DEMO_NET_LAST, DemoNet
from meshctl.up.launch import DEFAULT_DATA_DIR, UpOptions, launch, state_path
from meshctl.up.state import ComponentRecord, StateFileError, UpState, read_state
from meshctl.up.status import ready_url, state_text
from meshctl.up.supervisor import POLL_MARKER

MAX_ZONES = 64
# Every address a component has, so nobody needs to read state.json (an app's API is the
# app itself; a proxy's ADMIN serves its /ready).
STATUS_HEADERS = ["NAME", "ROLE", "STATE", "PID", "API", "KDS", "DNS", "DP SERVER", "ADMIN"]


def zone_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= MAX_ZONES:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_ZONES}, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    if 0 < value < 1024:
        raise argparse.ArgumentTypeError(f"{value} is a privileged port; use 1024 or above")
    return value


def demo_octet(text: str) -> int:
    try:
        return DemoNet(int(text)).octet
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    # SUPPRESS: given before or after the action (`up --data-dir D stop global` or
    # `up stop global --data-dir D`), a later default must not overwrite it.
    locate = argparse.ArgumentParser(add_help=False)
    locate.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"where components keep their stores and logs (default {DEFAULT_DATA_DIR})",
    )
    locate.add_argument(
        "--state-file",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="JSON file listing every component (default DIR/state.json)",
    )
    wait = argparse.ArgumentParser(add_help=False)
    wait.add_argument(
        "--timeout",
        type=positive_float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="how long to wait for the running up to answer (default 30)",
    )
    p = sub.add_parser(
        "up",
        parents=[locate],
        help="run a global and N zone control planes locally",
        description="Start one global control plane and N zone control planes (zone-1..zone-N) "
        "on free loopback ports with SQLite stores under the data directory, print their logs "
        "and a live status line per zone, and stop them all on Ctrl-C or SIGTERM. A component "
        "that dies is reported and the others keep running. With an ACTION, acts on the "
        "`meshctl up` already running on the data directory instead.",
    )
    p.add_argument(
        "--zones", type=zone_count, default=2, metavar="N", help="zone count (default 2)"
    )
    p.add_argument(
        "--base-port",
        type=port_number,
        default=0,
        metavar="P",
        help="global API on P, its KDS on P+1, zone-i API on P+1+i; 0 (default) reuses the "
        "ports of the previous run on this data directory when free, else any free ports",
    )
    for which, default in (("api", 5681), ("kds", 5685)):
        p.add_argument(
            f"--global-{which}-port",
            type=port_number,
            default=default,
            metavar="P",
            help=f"global {which.upper()} port to use when free and none is remembered "
            f"(default {default}, as Kuma; 0 = any free port)",
        )
    p.add_argument("--no-status", action="store_true", help="do not poll or print zone status")
    p.add_argument(
        "--demo",
        action="store_true",
        help="also run a demo mesh: echo `backend` instances with sidecars in zone-1 and zone-2, "
        "a client `web` with a sidecar in zone-1, a zone-ingress per zone, builtin mTLS and a "
        "permission web -> backend; prints a command that calls backend.mesh (needs 2+ zones)",
    )
    p.add_argument(
        "--demo-net",
        type=demo_octet,
        default=None,
        metavar="N",
        help="with --demo: put its workloads, ingresses and VIPs in 127.N.0.0/16 as given "
        f"({DEMO_NET_FIRST}-{DEMO_NET_LAST}; default: the first range no other demo uses and "
        "where none of its ports is bound)",
    )
    p.add_argument(
        "--reset",
        action="store_true",
        help="start from empty data: remove the stores, tokens, logs and remembered ports of "
        "earlier runs on the data directory first (e.g. before following the README's demo)",
    )
    p.add_argument(
        "--stop-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long a component gets to exit after SIGTERM before SIGKILL (default 10)",
    )
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="up_action", metavar="ACTION")
    for action, text in (
        (
            "restart",
            "restart a component of the running up (same argv, ports and data); succeeds once "
            "it is ready, else fails with its exit status and last log lines",
        ),
        ("start", "start a stopped component of the running up; succeeds once it is ready"),
        ("stop", "stop a component of the running up (the others keep running)"),
    ):
        a = actions.add_parser(action, parents=[locate, wait], help=text, description=text)
        a.add_argument("component", metavar="COMPONENT", help="global, zone-1, zone-2, ...")
        a.set_defaults(func=run_action)
    s = actions.add_parser(
        "status",
        parents=[locate],
        help="list the components of the running up with liveness",
        description="List the components from the state file; STATE is checked against the "
        "live processes (gone = the file says running but the process is not).",
    )
    s.set_defaults(func=run_status)


def _locate(args: argparse.Namespace) -> tuple[Path, Path]:
    data_dir = getattr(args, "data_dir", None) or Path(DEFAULT_DATA_DIR)
    return data_dir, state_path(data_dir.absolute(), getattr(args, "state_file", None))


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.demo_net is not None and not args.demo:
        raise CliError("--demo-net is for --demo", EXIT_USAGE)
    data_dir, _ = _locate(args)
    opts = UpOptions(
        zones=args.zones,
        data_dir=data_dir,
        state_file=getattr(args, "state_file", None),
        base_port=args.base_port,
        global_api_port=args.global_api_port,
        global_kds_port=args.global_kds_port,
        show_status=not args.no_status,
        stop_timeout=args.stop_timeout,
        demo=args.demo,
        demo_net=args.demo_net,
        reset=args.reset,
        config_path=ctx.config_path,
    )
    return launch(opts, ctx.stdout)


def _read(args: argparse.Namespace) -> UpState:
    _, path = _locate(args)
    try:
        return read_state(path)
    except StateFileError as exc:
        raise CliError(
            str(exc),
            details=["is meshctl up running? pass the --data-dir or --state-file it was given"],
        ) from None


def run_action(args: argparse.Namespace, ctx: Context) -> int:
    state = _read(args)
    if not procs.is_locked(Path(state.data_dir)):
        raise CliError(f"meshctl up is not running on {state.data_dir}")
    request = control.Request(args.up_action, args.component, ctx.timeout)
    try:
        reply = control.send(state.control, request, ctx.timeout)
    except control.ControlError as exc:
        raise CliError(str(exc)) from None
    if not reply.ok:
        head, *lines = reply.message.splitlines()
        raise CliError(head, EXIT_USAGE if "no component" in head else 1, lines)
    print(reply.message, file=ctx.stdout)
    return 0


def answers_ready(rec: ComponentRecord, timeout: float = 1.0) -> bool:
    """Whether the component's readiness URL answers 200 now (nothing to ask: ready)."""
    url = ready_url(rec)
    if not url:
        return True
    url += ("&" if "?" in url else "?") + POLL_MARKER
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_status(args: argparse.Namespace, ctx: Context) -> int:
    state = _read(args)
    up_running = procs.is_locked(Path(state.data_dir))
    if up_running:
        print(f"meshctl up is running (pid {state.pid}) on {state.data_dir}", file=ctx.stdout)
    else:
        print(
            f"meshctl up is not running (last pid {state.pid}) on {state.data_dir}", file=ctx.stdout
        )
    if state.demo_network:
        print(f"demo addresses and VIPs in {state.demo_network}", file=ctx.stdout)
    rows = []
    lives = [procs.liveness(comp, procs.runs) for comp in state.components]
    asked = [c for c, live in zip(state.components, lives, strict=True) if live == "running"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ready = dict(zip((c.name for c in asked), pool.map(answers_ready, asked), strict=True))
    for comp, live in zip(state.components, lives, strict=True):
        shown = state_text(live, comp.exit_code, ready.get(comp.name, False))
        pid = str(comp.pid) if live in ("running", "gone") and comp.pid is not None else "-"
        addresses = (comp.api, comp.kds, comp.dns, comp.dp, comp.admin)
        rows.append([comp.name, comp.role, shown, pid, *(a or "-" for a in addresses)])
    ctx.stdout.write(render_table(STATUS_HEADERS, rows))
    return 0 if up_running else EXIT_FAILED
