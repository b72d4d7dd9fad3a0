"""`meshctl inspect zones|services|dataplanes|meshes|dataplane NAME`: live state beyond stored
resources (`dataplane NAME`: meshctl/commands/inspect_rules.py).

`zones`: each zone's connection and sync lag, from `/zones+insights`.

The table condenses a ZoneOverview: online/offline, whether the zone holds the global's
current version of everything (else how many resources are pending), when its newest KDS
subscription connected and, for an offline zone, when it disconnected, response totals, and
the most recent NACK. Zones are listed by the global only: asked of a zone's API, it says so.
`-o json|yaml` prints the overviews as the API returned them.

`services`: the services of a mesh from `GET /meshes/{mesh}/services`. Against a zone: the
zones that have each service, its VIP in this zone and its zone-pinned VIPs; against the
global: instances per zone and each zone's VIP for it.

`dataplanes`: kumactl's columns from `GET /meshes/{mesh}/dataplanes+insights`, plus the zone
(the global lists every zone's) and the state the API computed (online, offline,
partiallyDegraded). `meshes`: each mesh's mTLS backend, dataplanes and services
online/total and policies per type, from the global's `GET /global-insight`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from meshctl.client import ApiError
from meshctl.commands.common import DEFAULT_MESH
from meshctl.commands.inspect_rules import register_dataplane
from meshctl.context import Context
from meshctl.errors import CliError
from meshctl.output import (
    OUTPUT_FORMATS,
    dump_json,
    dump_yaml,
    format_age,
    parse_time,
    render_table,
)

T = TypeVar("T")
ZONES_PATH = "/zones+insights"
ZONE_HEADERS = [
    "NAME",
    "STATUS",
    "SYNC",
    "LAST CONNECTED",
    "DISCONNECTED",
    "SENT/ACKED/NACKED",
    "LAST ERROR",
]
ERROR_CHARS = 60
_NEVER = datetime.min.replace(tzinfo=UTC)
_TOTAL_KEYS = ("responsesSent", "responsesAcknowledged", "responsesRejected")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show live state: zones and their sync, services and their VIPs",
        description="Show what the control plane knows beyond stored resources.",
    )
    what = p.add_subparsers(dest="subject", metavar="SUBJECT", required=True)
    zones = what.add_parser(
        "zones",
        parents=[common],
        help="each zone's status and sync lag (at the global)",
        description="Each zone's status (online/offline), sync (in sync / N pending), last "
        "connection, KDS responses sent/acknowledged/rejected in total, and last error.",
    )
    zones.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    zones.set_defaults(func=run_zones)
    services = what.add_parser(
        "services",
        parents=[common],
        help="the services of a mesh: zones, instances, VIPs",
        description="Each service of the mesh with the zones that have it (instances per "
        "zone) and its VIPs: at a zone, the zone's VIP and zone-pinned VIPs; at the global, "
        "every zone's VIP.",
    )
    services.add_argument("-m", "--mesh", default=DEFAULT_MESH, help="mesh (default: default)")
    services.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    services.set_defaults(func=run_services)
    dataplanes = what.add_parser(
        "dataplanes",
        parents=[common],
        help="the dataplanes of a mesh: zone, state, config updates, certificate",
        description="Each Dataplane of the mesh with its zone, tags, state (online, offline, "
        "partiallyDegraded), connection and config-update ages and counts, certificate "
        "regeneration and expiry, and proxy version (kumactl's columns).",
    )
    dataplanes.add_argument("-m", "--mesh", default=DEFAULT_MESH, help="mesh (default: default)")
    dataplanes.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    dataplanes.set_defaults(func=run_dataplanes)
    register_dataplane(what, common)  # inspect dataplane NAME: the rules view
    meshes = what.add_parser(
        "meshes",
        parents=[common],
        help="each mesh's mTLS, dataplanes and services online/total, policies (at the global)",
        description="Each mesh with its mTLS backend, dataplanes and services online/total, "
        "and its policies in total and per type, from the global's /global-insight.",
    )
    meshes.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    meshes.set_defaults(func=run_meshes)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _subscriptions(insight: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    subs = insight.get("subscriptions")
    return [s for s in subs if isinstance(s, Mapping)] if isinstance(subs, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def status_cell(insight: Mapping[str, Any]) -> str:
    return "online" if insight.get("state") == "online" else "offline"


def sync_cell(insight: Mapping[str, Any]) -> str:
    if insight.get("inSync") is True:
        return "in sync"
    pending = insight.get("pending")
    if isinstance(pending, int) and not isinstance(pending, bool):
        return f"{pending} pending"
    return "-"


def last_connected_cell(insight: Mapping[str, Any], now: datetime) -> str:
    """Age of the newest subscription's connect time (the API lists the newest last)."""
    subs = _subscriptions(insight)
    if not subs:
        return "never"
    age = format_age(subs[-1].get("connectTime"), now)
    return "-" if age == "-" else f"{age} ago"


def disconnected_cell(insight: Mapping[str, Any], now: datetime) -> str:
    """An offline zone: how long ago its newest subscription ended ("-" while online)."""
    subs = _subscriptions(insight)
    if status_cell(insight) == "online" or not subs:
        return "-"
    age = format_age(subs[-1].get("disconnectTime"), now)
    return "-" if age == "-" else f"{age} ago"


def totals_cell(insight: Mapping[str, Any]) -> str:
    """Sent/ACKed/NACKed summed over every subscription the global still remembers."""
    sums = [0, 0, 0]
    for sub in _subscriptions(insight):
        total = _dict(_dict(sub.get("status")).get("total"))
        for i, key in enumerate(_TOTAL_KEYS):
            sums[i] += _int(total.get(key))
    return "/".join(str(n) for n in sums)


def last_error_cell(insight: Mapping[str, Any], limit: int = ERROR_CHARS) -> str:
    """The newest per-type error of any subscription, as `Type: message`, truncated."""
    best: tuple[tuple[datetime, int], str] | None = None  # ((time, subscription), text)
    for order, sub in enumerate(_subscriptions(insight)):
        for type_name, stat in _dict(_dict(sub.get("status")).get("stat")).items():
            error = _dict(stat).get("lastError")
            if not error:
                continue
            # A later subscription wins a tie (or when times are missing).
            when = (parse_time(_dict(stat).get("lastErrorTime")) or _NEVER, order)
            if best is None or when >= best[0]:
                best = (when, f"{type_name}: {error}")
    if best is None:
        return "-"
    text = " ".join(best[1].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def zones_table(items: list[dict[str, Any]], now: datetime) -> str:
    rows = []
    for item in items:
        insight = _dict(item.get("zoneInsight"))
        rows.append(
            [
                str(item.get("name", "")),
                status_cell(insight),
                sync_cell(insight),
                last_connected_cell(insight, now),
                disconnected_cell(insight, now),
                totals_cell(insight),
                last_error_cell(insight),
            ]
        )
    return render_table(ZONE_HEADERS, rows)


def _at_global(ctx: Context, path: str, what: str, read: Callable[[str], T]) -> T:
    """Reads `path`, which only the global serves: a zone's 404 says where to ask instead."""
    try:
        return read(path)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise CliError(
            f"{what} by the global; {ctx.api_url} has no {path} (a zone's API)",
            details=["leave out --api (meshctl up makes the global current), or --api GLOBAL"],
        ) from None


def run_zones(args: argparse.Namespace, ctx: Context) -> int:
    items = _at_global(ctx, ZONES_PATH, "zones are listed", ctx.client().list_all)
    if args.output == "json":
        ctx.stdout.write(dump_json(items))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(items))
    elif items:
        ctx.stdout.write(zones_table(items, ctx.now()))
    else:
        print("No zones found (no zone control plane has connected yet).", file=ctx.stderr)
    return 0


# -- services ---------------------------------------------------------------------------------

ZONE_SERVICE_HEADERS = ["SERVICE", "PORT", "ZONES", "VIP", "ZONE VIPS"]
GLOBAL_SERVICE_HEADERS = ["SERVICE", "INSTANCES", "ZONES", "VIPS (PER ZONE)"]


def _pairs(value: Any) -> str:
    items = _dict(value)
    return " ".join(f"{k}={v}" for k, v in sorted(items.items())) or "-"


def zones_cell(item: Mapping[str, Any]) -> str:
    zones = item.get("zones")
    cells = [
        f"{z.get('zone')}({_int(z.get('instances'))})"
        for z in (zones if isinstance(zones, list) else [])
        if isinstance(z, Mapping)
    ]
    return " ".join(cells) or "-"


def services_table(body: Mapping[str, Any]) -> str:
    items = [i for i in body.get("items") or [] if isinstance(i, Mapping)]
    if "zone" in body:  # a zone's answer
        rows = [
            [
                str(i.get("service", "")),
                str(i.get("port") or "-"),
                zones_cell(i),
                str(i.get("vip") or "-"),
                _pairs(i.get("zoneVips")),
            ]
            for i in items
        ]
        return render_table(ZONE_SERVICE_HEADERS, rows)
    rows = [
        [
            str(i.get("service", "")),
            str(_int(i.get("instances"))),
            zones_cell(i),
            _pairs(i.get("vips")),
        ]
        for i in items
    ]
    return render_table(GLOBAL_SERVICE_HEADERS, rows)


def run_services(args: argparse.Namespace, ctx: Context) -> int:
    body = ctx.client().get(f"/meshes/{args.mesh}/services")
    if not isinstance(body, dict):
        raise CliError("unexpected answer from the services endpoint: not an object")
    if args.output == "json":
        ctx.stdout.write(dump_json(body))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(body))
    elif body.get("items"):
        ctx.stdout.write(services_table(body))
    else:
        where = f" in zone {body['zone']}" if body.get("zone") else ""
        print(f"No services in mesh {args.mesh}{where}.", file=ctx.stderr)
    return 0


# -- dataplanes -------------------------------------------------------------------------------

DATAPLANE_HEADERS = [
    "MESH",
    "NAME",
    "ZONE",
    "TAGS",
    "STATUS",
    "LAST CONNECTED AGO",
    "LAST UPDATED AGO",
    "TOTAL UPDATES",
    "TOTAL ERRORS",
    "CERT REGENERATED AGO",
    "CERT EXPIRATION",
    "CERT REGENERATIONS",
    "CERT BACKEND",
    "DP VERSION",
]
ZONE_LABEL = "kuma.io/zone"


def tags_cell(dataplane: Mapping[str, Any]) -> str:
    """Every inbound's tags, `key=value` sorted and without repeats (as kumactl)."""
    pairs: set[str] = set()
    inbound = _dict(dataplane.get("networking")).get("inbound")
    for item in inbound if isinstance(inbound, list) else []:
        pairs.update(f"{k}={v}" for k, v in _dict(_dict(item).get("tags")).items())
    return " ".join(sorted(pairs)) or "-"


def _ago(value: Any, now: datetime, never: str = "never") -> str:
    age = format_age(value, now)
    return never if age == "-" else age


def dataplane_row(item: Mapping[str, Any], now: datetime) -> list[str]:
    insight = _dict(item.get("dataplaneInsight"))
    subs = _subscriptions(insight)
    last = subs[-1] if subs else {}
    status = _dict(last.get("status"))
    updates = errors = 0
    for sub in subs:
        total = _dict(_dict(sub.get("status")).get("total"))
        updates += _int(total.get("responsesSent"))
        errors += _int(total.get("responsesRejected"))
    mtls = _dict(insight.get("mTLS"))
    expiry = parse_time(mtls.get("certificateExpirationTime"))
    version = _dict(_dict(_dict(last.get("version")).get("meshfedDp"))).get("version")
    return [
        str(item.get("mesh", "")),
        str(item.get("name", "")),
        str(_dict(item.get("labels")).get(ZONE_LABEL) or "-"),
        tags_cell(_dict(item.get("dataplane"))),
        str(item.get("state") or "-"),
        _ago(last.get("connectTime"), now),
        _ago(status.get("lastUpdateTime"), now),
        str(updates),
        str(errors),
        _ago(mtls.get("lastCertificateRegeneration"), now),
        expiry.strftime("%Y-%m-%d %H:%M:%S") if expiry is not None else "-",
        str(_int(mtls.get("certificateRegenerations"))),
        str(mtls.get("issuedBackend") or "-"),
        str(version or "-"),
    ]


def dataplanes_table(items: list[dict[str, Any]], now: datetime) -> str:
    return render_table(DATAPLANE_HEADERS, [dataplane_row(i, now) for i in items])


def run_dataplanes(args: argparse.Namespace, ctx: Context) -> int:
    items = ctx.client().list_all(f"/meshes/{args.mesh}/dataplanes+insights")
    if args.output == "json":
        ctx.stdout.write(dump_json(items))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(items))
    elif items:
        ctx.stdout.write(dataplanes_table(items, ctx.now()))
    else:
        print(f"No dataplanes in mesh {args.mesh}.", file=ctx.stderr)
    return 0


# -- meshes -----------------------------------------------------------------------------------

GLOBAL_INSIGHT_PATH = "/global-insight"
MESH_HEADERS = ["MESH", "MTLS", "DATAPLANES", "SERVICES", "POLICIES"]


def _online_total(value: Any) -> str:
    counts = _dict(value)
    return f"{_int(counts.get('online'))}/{_int(counts.get('total'))}"


def meshes_table(insight: Mapping[str, Any]) -> str:
    """One row per mesh; then one column per policy type some mesh has (kumactl shows a
    column per type; the types no mesh uses would only be zeros)."""
    by_mesh = {k: _dict(v) for k, v in _dict(_dict(insight.get("meshes")).get("byMesh")).items()}
    types = sorted(
        {t for m in by_mesh.values() for t in _dict(_dict(m.get("policies")).get("byType"))}
    )
    rows = []
    for name, mesh in sorted(by_mesh.items()):
        policies = _dict(mesh.get("policies"))
        per_type = _dict(policies.get("byType"))
        rows.append(
            [
                name,
                str(mesh.get("mtls") or "off"),
                _online_total(mesh.get("dataplanes")),
                _online_total(mesh.get("services")),
                str(_int(policies.get("total"))),
                *(str(_int(per_type.get(t))) for t in types),
            ]
        )
    return render_table([*MESH_HEADERS, *(t.upper() for t in types)], rows)


def run_meshes(args: argparse.Namespace, ctx: Context) -> int:
    insight = _at_global(ctx, GLOBAL_INSIGHT_PATH, "meshes are counted", ctx.client().get)
    if not isinstance(insight, dict):
        raise CliError("unexpected answer from /global-insight: not an object")
    if args.output == "json":
        ctx.stdout.write(dump_json(insight))
    elif args.output == "yaml":
        ctx.stdout.write(dump_yaml(insight))
    elif _dict(_dict(insight.get("meshes")).get("byMesh")):
        ctx.stdout.write(meshes_table(insight))
    else:
        print("No meshes found.", file=ctx.stderr)
    return 0
