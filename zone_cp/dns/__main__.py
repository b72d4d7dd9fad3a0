"""Standalone zone DNS server answering from a static JSON table (tests and benchmarks).

    python -m zone_cp.dns --address 127.0.0.1:5653 --table names.json [--upstream 127.0.0.1:53]

The table file maps names to an IPv4 address or a list of them:
`{"backend.mesh": "127.1.0.1", "web.mesh": ["127.1.0.2", "127.1.0.3"]}`.
SIGHUP reloads the file (the new table replaces the old one atomically); SIGTERM stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from zone_cp.dns.answers import DEFAULT_DOMAIN, DnsTable
from zone_cp.dns.server import (
    DEFAULT_PORT,
    DEFAULT_TCP_IDLE_TIMEOUT,
    DnsServer,
    DnsStatsCollector,
)
from zone_cp.dns.upstream import DEFAULT_TIMEOUT, Upstream, parse_address

log = logging.getLogger("zone_cp.dns")


def load_records(path: Path) -> list[tuple[str, str]]:
    """(name, ip) pairs from a table file; ValueError naming what is wrong."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read table {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"table {path}: expected a JSON object of name -> ip or [ip, ...]")
    records: list[tuple[str, str]] = []
    for name, value in raw.items():
        ips = value if isinstance(value, list) else [value]
        for ip in ips:
            if not isinstance(ip, str):
                raise ValueError(f"table {path}: {name!r} must map to IPv4 strings, got {ip!r}")
            records.append((name, ip))
    return records


def build_table(path: Path, domain: str, forwarding: bool) -> DnsTable:
    return DnsTable(load_records(path), domain=domain, forwarding=forwarding)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m zone_cp.dns", description="Zone DNS server over a static JSON table."
    )
    parser.add_argument(
        "--address",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help="host:port to serve UDP and TCP on (default: %(default)s)",
    )
    parser.add_argument("--table", required=True, type=Path, help="JSON file: name -> ip(s)")
    parser.add_argument(
        "--domain", default=DEFAULT_DOMAIN, help="domain answered locally (default: %(default)s)"
    )
    parser.add_argument(
        "--upstream", default=None, help="host[:port] to forward other names to (default: refuse)"
    )
    parser.add_argument(
        "--upstream-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds before a forwarded query gets SERVFAIL (default: %(default)s)",
    )
    parser.add_argument(
        "--tcp-idle-timeout",
        type=float,
        default=DEFAULT_TCP_IDLE_TIMEOUT,
        help="seconds an idle TCP connection is kept (default: %(default)s)",
    )
    parser.add_argument(
        "--udp-io",
        choices=["auto", "batch", "asyncio"],
        default="auto",
        help="UDP receive path: recvmmsg batches (Linux), the asyncio transport, or auto "
        "(batches where available; default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT (default: %(default)s)",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--metrics-address", default=None, help="host:port for Prometheus /metrics (default: off)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        args.host, args.port = parse_address(args.address, DEFAULT_PORT)
        args.upstream_addr = parse_address(args.upstream, 53) if args.upstream else None
        args.metrics_addr = (
            parse_address(args.metrics_address, 9153) if args.metrics_address else None
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers > 1 and args.port == 0:
        parser.error("--workers needs a fixed port")
    return args


def _use_uvloop() -> None:
    """uvloop (the `speed` extra) makes the UDP path markedly cheaper when installed."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(args: argparse.Namespace) -> None:
    forwarding = args.upstream_addr is not None
    table = build_table(args.table, args.domain, forwarding)
    upstream = None
    if args.upstream_addr is not None:
        upstream_host, upstream_port = args.upstream_addr
        upstream = Upstream(upstream_host, upstream_port, timeout=args.upstream_timeout)
    batching = {"auto": None, "batch": True, "asyncio": False}[args.udp_io]
    server = DnsServer(
        table, upstream=upstream, tcp_idle_timeout=args.tcp_idle_timeout, udp_batching=batching
    )
    host, port = await server.start(args.host, args.port, reuse_port=args.reuse_port)
    if args.metrics_addr is not None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(DnsStatsCollector(server))
        start_http_server(args.metrics_addr[1], args.metrics_addr[0], registry=registry)
    print(f"zone dns: serving {table.size} names on {host}:{port} (pid {os.getpid()})", flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def reload() -> None:
        try:
            server.table = build_table(args.table, args.domain, forwarding)
            log.info("reloaded %d names from %s", server.table.size, args.table)
        except ValueError as exc:
            log.error("table not reloaded, keeping the previous one: %s", exc)

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.close()


def run_workers(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Starts `--workers` copies of this server sharing one port (SO_REUSEPORT).

    Signals are relayed to every worker. When one worker exits the others are stopped too: a
    port served by only some of its workers would fail a share of queries silently.
    """
    child_argv = [sys.executable, "-m", "zone_cp.dns", *argv, "--workers", "1", "--reuse-port"]
    children = {
        child.pid: child for child in (subprocess.Popen(child_argv) for _ in range(args.workers))
    }

    stopping = False

    def relay(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        for child in children.values():
            if child.returncode is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, relay)
    pid, status = os.wait()
    codes = [os.waitstatus_to_exitcode(status)]
    children.pop(pid).returncode = codes[0]
    for child in children.values():
        # A second SIGTERM could hit a worker mid-shutdown, after it restored default handlers.
        if not stopping and child.poll() is None:
            child.terminate()
        codes.append(child.wait())
    return max((1 if code < 0 else code) for code in codes)


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.workers > 1:
        return run_workers(args, raw_argv)
    try:
        _use_uvloop()
        asyncio.run(serve(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot serve on {args.address}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
