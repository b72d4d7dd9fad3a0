"""The web GUI in headless Chromium against a real global and two zones (issue 15).

The federation runs real sidecars (web in zone-1, backend in zone-2) and zone-2's ingress, so
the pages show connected proxies, certificate expiry and a service reached across zones. It
signs in with the admin token (after an invalid one is refused with the sign-in prompt),
visits every page of the global's GUI and of a zone's, checks each shows live data, applies
a policy through the API and waits until the zone x version matrix shows both zones holding
it, without a reload; no console error, exception or CSP violation on the way. Screenshots of
every page go to the test's tmp folder (printed at the end).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.federation_support import timeout_policy
from tests.integration.gui.cdp import Page, browser, chromium_or_skip
from tests.integration.test_cross_zone_support import Mesh
from tests.support import Procs

pytestmark = pytest.mark.integration

PAGES = ("overview", "zones", "services", "policies", "dataplanes")


@pytest.fixture
def mesh(procs: Procs, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh.start(procs, tmp_path / "federation")
    m.glob.put("/meshes/default/meshtimeouts/gui-t1", timeout_policy("gui-t1"))
    m.workload("zone-1", "web-1", "web", reachable=("backend",))
    m.workload("zone-2", "backend-1", "backend")
    m.ingress("zone-2")
    yield m


def js(value: str) -> str:
    return json.dumps(value)


def user_token(api: str, admin: str, name: str, groups: list[str]) -> str:
    """`POST /tokens/user` with the admin token: a token of `groups` (not admin)."""
    body = json.dumps({"name": name, "groups": groups, "validFor": "1h"}).encode()
    req = urllib.request.Request(f"{api}/tokens/user", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {admin}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode()).strip()


async def sign_in(page: Page, url: str, token: str, live: str = "live") -> None:
    """Signs in at `url`'s GUI (the page shown, when "") and waits for the watch state."""
    if url:
        await page.goto(f"{url}/gui")
    await page.wait("document.getElementById('main')?.dataset.page === 'login'", "login prompt")
    await page.eval(
        f"document.getElementById('token').value = {js(token)};"
        "document.getElementById('login').requestSubmit(); true"
    )
    await page.wait(f"document.body.dataset.live === {js(live)}", f"the watch stream {live}")


async def show(page: Page, name: str) -> None:
    """Goes to a page through the router (no reload) and waits until it has rendered."""
    before = await page.eval("Number(document.getElementById('main').dataset.renders || 0)")
    await page.eval(f"window.location.hash = '#/{name}'; true")
    await page.wait(
        f"document.getElementById('main').dataset.page === {js(name)} && "
        f"Number(document.getElementById('main').dataset.renders) > {before}",
        f"page {name} rendered",
    )


def cell(selector: str) -> str:
    return f"(document.querySelector({js(selector)})?.textContent ?? '')"


async def test_gui_shows_live_federation_state_and_a_new_policy_reaches_the_matrix(
    mesh: Mesh, procs: Procs, tmp_path: Path
) -> None:
    chromium = chromium_or_skip()
    started = time.monotonic()
    cluster, glob = mesh.cluster, mesh.glob
    token = cluster.admin_token()
    shots = tmp_path / "screenshots"

    async with browser(procs, chromium, tmp_path / "chromium-profile") as page:
        # No token yet: the sign-in prompt. A refused token: the prompt again, saying why.
        await page.goto(f"{cluster.glob.url}/gui")
        await page.wait("document.getElementById('main')?.dataset.page === 'login'", "login")
        await page.eval(
            "document.getElementById('token').value = 'not-a-token';"
            "document.getElementById('login').requestSubmit(); true"
        )
        await page.wait(
            "!document.getElementById('login-error').hidden && "
            "document.getElementById('login-error').textContent.includes('refused')",
            "the refusal on the sign-in prompt",
        )
        assert await page.eval("sessionStorage.getItem('meshfed.token')") is None
        await page.screenshot(shots / "global-0-login-refused.png")
        page.errors.clear()  # the browser logs the 401 it was just given

        await sign_in(page, cluster.glob.url, token)
        await page.eval("window.guiMarker = 'no reload'; true")

        await show(page, "overview")
        await page.wait(f"{cell('[data-tile=zones] .value')} === '2 / 2'", "2 of 2 zones online")
        await page.wait(f"{cell('[data-tile=dataplanes] .value')} === '2 / 2'", "2 sidecars")
        assert await page.eval(cell("#policy-types [data-type=MeshTimeout] td.num")) == "1"
        await page.screenshot(shots / "global-1-overview.png")

        await show(page, "zones")
        for zone in ("zone-1", "zone-2"):
            row = f"#zones tr[data-zone={js(zone)}]"
            assert "online" in await page.eval(cell(row))
            # per-type counters of the current connection: MeshTimeout sent and ACKed
            stats = await page.eval(
                f'[...document.querySelectorAll(\'details[data-key="zone/{zone}"] '
                "tr[data-type=MeshTimeout] td')].map(td => td.textContent)"
            )
            assert stats[0] == "global \u2192 zone" and int(stats[3]) >= 1, stats
        await page.screenshot(shots / "global-2-zones.png")

        await show(page, "services")
        # zone-1 gives web a VIP and syncs it up: the page updates when it lands (live).
        web_z1 = "#services tr[data-service='default/web'] td[data-zone='zone-1']"
        await page.wait(
            f"/1\\/1 ready/.test({cell(web_z1)}) && /VIP \\d+\\./.test({cell(web_z1)})",
            "web in zone-1: 1 instance ready, with a VIP",
        )
        backend = "#services tr[data-service='default/backend'] td[data-zone='zone-2']"
        assert "1/1 ready" in await page.eval(cell(backend))
        # zone-1 reaches backend through zone-2's ingress: it gave backend a VIP of its own.
        backend_z1 = "#services tr[data-service='default/backend'] td[data-zone='zone-1']"
        await page.wait(f"/VIP \\d+\\./.test({cell(backend_z1)})", "backend's VIP in zone-1")
        await page.screenshot(shots / "global-3-services.png")

        await show(page, "dataplanes")
        for name in ("web-1", "backend-1"):
            row = f"#dataplanes tr[data-dataplane^='default/{name}.']"
            # The sidecar is connected and its certificate's expiry is known (a <time>).
            await page.wait(
                f"/online/.test({cell(row)}) && "
                f"document.querySelector({js(row + ' td.expiry time')}) !== null",
                f"{name} online with its certificate expiry",
            )
            assert "MeshTimeout gui-t1" in await page.eval(cell(row)), name
        await page.screenshot(shots / "global-4-dataplanes.png")

        await show(page, "policies")
        await page.wait(
            "document.querySelectorAll(\"#matrix tr[data-policy='MeshTimeout/default/gui-t1'] "
            'td[data-state=in-sync]").length === 2',
            "gui-t1 held by both zones",
        )
        # The YAML shown is the resource the API serves, read back by a YAML parser.
        shown = await page.eval(cell("details[data-policy='MeshTimeout/default/gui-t1'] pre"))
        assert yaml.safe_load(shown) == glob.get("/meshes/default/meshtimeouts/gui-t1")
        assert "idleTimeout: 20s" in shown

        # A policy applied through the API appears in the matrix, in both zones, live.
        renders = await page.eval("Number(document.getElementById('main').dataset.renders)")
        glob.put("/meshes/default/meshtimeouts/gui-live", timeout_policy("gui-live", idle="7s"))
        version = glob.get("/meshes/default/meshtimeouts/gui-live/_sync")["version"]
        row = "#matrix tr[data-policy='MeshTimeout/default/gui-live']"
        held = f"{row} td[data-state=in-sync][data-version='{version}']"
        await page.wait(
            f"document.querySelectorAll({js(held)}).length === 2",
            "gui-live in the matrix, held by both zones",
            timeout=20,
        )
        assert await page.eval("window.guiMarker") == "no reload"
        assert await page.eval("Number(document.getElementById('main').dataset.renders)") > renders
        await page.eval(
            "document.querySelector(\"details[data-policy='MeshTimeout/default/gui-live']\")"
            ".open = true; true"
        )
        await page.screenshot(shots / "global-5-policies.png")

        # zone-1's own GUI (another origin: its own sign-in), every page.
        await sign_in(page, cluster.zones["zone-1"].url, token)
        for n, name in enumerate(PAGES, start=1):
            await show(page, name)
            assert await page.eval("document.querySelector('[role=alert]') === null"), name
            await page.screenshot(shots / f"zone-1-{n}-{name}.png")
            if name == "zones":
                assert "connected" in await page.eval(cell("#zones tr[data-zone='zone-1']"))
        assert "MeshTimeout gui-live" in await page.eval(
            cell("#dataplanes tr[data-dataplane='default/web-1']")
        )

        assert page.errors == []

        # A read-only user token: every page, not live (the watch is admin only).
        viewer = user_token(glob.base, token, "viewer", ["team-a"])
        await page.goto(f"{cluster.glob.url}/gui")  # this tab's global session: still admin
        await page.wait("document.body.dataset.live === 'live'", "signed in from sessionStorage")
        await page.eval("document.getElementById('logout').click(); true")
        await sign_in(page, "", viewer, live="forbidden")
        for name in PAGES:
            await show(page, name)
            assert await page.eval("document.querySelector('[role=alert]') === null"), name
        assert "admin" in await page.eval(cell("#live"))
        await page.screenshot(shots / "global-6-read-only.png")
        # The browser logs the 403 of /_watch; nothing else went wrong.
        assert [e for e in page.errors if "403" not in e] == [], page.errors
    print(f"GUI screenshots in {shots} ({time.monotonic() - started:.1f}s in the browser test)")
