"""`/gui`: the web GUI's static files, public, with a Content-Security-Policy (meshfed/api/gui)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from meshfed.api.gui import CSP, load_assets
from meshfed.resources.descriptors import Mode
from tests.unit.api.conftest import start_api


async def test_gui_page_and_assets_are_public_and_carry_the_csp() -> None:
    api, client = await start_api(anonymous=True)
    try:
        for path, ctype in (
            ("/gui", "text/html"),
            ("/gui/app.js", "text/javascript"),
            ("/gui/style.css", "text/css"),
        ):
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.content_type == ctype
            assert resp.headers["Content-Security-Policy"] == CSP
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        # A data call from the page still needs the token the user gives it.
        assert (await client.get("/_watch")).status == 401
    finally:
        await client.close()
        await api.store.close()


async def test_gui_serves_only_its_own_files() -> None:
    api, client = await start_api(Mode.ZONE, zone="zone-1", anonymous=True)
    try:
        assert (await client.get("/gui")).status == 200  # zone-cp serves it too
        for path in ("/gui/nope.js", "/gui/..%2f__init__.py", "/gui/__init__.py", "/gui/static"):
            resp = await client.get(path)
            assert resp.status == 404, path
        resp = await client.get("/gui/a/b")
        assert resp.status == 404
    finally:
        await client.close()
        await api.store.close()


def test_csp_allows_this_origin_only_and_no_inline_script() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP and "http" not in CSP


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        self.problems += [f"{tag} {k}=" for k in names if k.startswith("on") or k == "style"]


def test_assets_have_no_inline_code_no_remote_url_and_every_import_exists() -> None:
    assets = load_assets()
    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= assets.keys()
    parser = _Inline()
    parser.feed(assets["index.html"].body.decode())
    assert parser.problems == []
    for name, asset in assets.items():
        body = asset.body.decode().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", body), name  # no CDN
        if name.endswith(".js"):
            for imported in re.findall(r'from "\./([\w.-]+)"', body):
                assert imported in assets, (name, imported)
            assert not re.search(r"\.(inner|outer)HTML\b", body), (
                name
            )  # data is set as text, never parsed as HTML
