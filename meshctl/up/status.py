"""Status lines of a local federation, from one poll of the APIs (pure).

The global's `/zones+insights` is the authority while it answers: a zone is `connected`
(online and in sync), `syncing` (online, resources still pending) or `offline`. When the global
is down, that is said first and each zone is described from its own `/_kds` view (what its
KDS client sees), since zones keep serving their last known state through an outage. Lines
hold no clocks or ages, so a line changes only when the situation does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshctl.up.state import ROLE_GLOBAL, ROLE_ZONE, ComponentRecord

CONNECTED = "connected"
SYNCING = "syncing"
OFFLINE = "offline"
_ERROR_CHARS = 80
_KDS_ERROR_CHARS = 60


@dataclass(frozen=True, slots=True)
class ComponentProbe:
    name: str
    running: bool
    exit_code: int | None = None
    api_error: str | None = None  # set when the process runs but its API did not answer
    starting: bool = False  # just (re)started and its API has not answered yet
    view: Any = None  # the global: its /zones+insights items; a zone: its /_kds body


def exit_text(code: int | None) -> str:
    """`stopped` for a clean exit, else the code or the signal that ended the process."""
    if code is None:
        return "not running"
    if code == 0:
        return "stopped"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def state_text(live: str, exit_code: int | None, ready: bool) -> str:
    """The STATE column of `meshctl up status`: a live process is `running` only once its
    readiness URL answers, `starting` before (a zone still opening its store or a proxy
    without its first config must not look usable)."""
    if live == "exited":
        return exit_text(exit_code)
    if live == "running" and not ready:
        return "starting"
    return live


def ready_url(rec: ComponentRecord) -> str:
    """What says a component is ready: a control plane's API `/ready` (store open, defaults
    created), a proxy's admin `/ready` (it holds a config from its zone), an app's own answer.
    Empty when it has nothing to ask (then running is all there is)."""
    if rec.role in (ROLE_GLOBAL, ROLE_ZONE) and rec.api:
        return f"{rec.api}/ready"
    if rec.admin:
        return f"{rec.admin}/ready"
    return f"{rec.api}/" if rec.api else ""


def last_line(lines: Iterable[str]) -> str:
    """The last non-blank line a process printed (usually why it exited)."""
    found = ""
    for line in lines:
        if line.strip():
            found = line.strip()
    return found


def short(text: Any, limit: int = _ERROR_CHARS) -> str:
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


def overviews_by_zone(items: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {
        str(item["name"]): item
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    }


def zone_state(overview: Mapping[str, Any]) -> tuple[str, str]:
    """(connected|syncing|offline, detail) of one ZoneOverview."""
    insight = overview.get("zoneInsight")
    if not isinstance(insight, Mapping) or insight.get("state") != "online":
        return OFFLINE, ""
    if insight.get("inSync") is True:
        return CONNECTED, ""
    pending = insight.get("pending")
    detail = f"{pending} pending" if isinstance(pending, int) else "catching up"
    return SYNCING, detail


def kds_view_text(view: Any) -> str:
    """What a zone's `/_kds` says, e.g. `zone sees: connecting, last error: ...`."""
    if not isinstance(view, Mapping):
        return "zone sees: ?"
    text = f"zone sees: {view.get('state', '?')}"
    if view.get("lastError"):
        # gRPC errors chain details after ';': the head says enough for a status line.
        head = str(view["lastError"]).split(";", 1)[0]
        text += f", last error: {short(head, _KDS_ERROR_CHARS)}"
    return text


def global_line(probe: ComponentProbe) -> str:
    if not probe.running:
        return f"DOWN ({exit_text(probe.exit_code)}); zones keep serving what they have"
    if probe.api_error is not None:
        return "starting" if probe.starting else f"API not answering ({short(probe.api_error)})"
    return "up"


def zone_line(zone: ComponentProbe, global_probe: ComponentProbe) -> str:
    if not zone.running:
        return exit_text(zone.exit_code)
    if zone.starting and zone.api_error is not None:
        return "starting"
    global_up = global_probe.running and global_probe.api_error is None
    if global_up:
        overview = overviews_by_zone(global_probe.view).get(zone.name)
        if overview is not None:
            state, detail = zone_state(overview)
            if state != OFFLINE:
                return state + (f" ({detail})" if detail else "")
        where = "not connected yet" if overview is None else "per the global"
    else:
        where = "global down" if not global_probe.running else "global not answering"
        if global_probe.running and global_probe.starting:
            where = "global starting"
    if zone.api_error is not None:
        return f"{OFFLINE} ({where}; zone API not answering)"
    return f"{OFFLINE} ({where}; {kds_view_text(zone.view)})"


def status_lines(
    global_probe: ComponentProbe, zones: Sequence[ComponentProbe]
) -> list[tuple[str, str]]:
    """(component name, line) for the global, then each zone in order; names aligned."""
    texts = [(global_probe.name, global_line(global_probe))]
    texts += [(z.name, zone_line(z, global_probe)) for z in zones]
    width = max(len(name) for name, _ in texts)
    return [(name, f"{name.ljust(width)}  {text}") for name, text in texts]
