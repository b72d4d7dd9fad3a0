"""The web GUI at `/gui`: static files served from this package, read once at start.

The page is public (it holds no data); everything it shows comes from the REST API and the
`/_watch` stream, called from the browser with the user token the user pastes at its login
prompt (kept in sessionStorage, sent as `Authorization: Bearer`, never in a URL). Every
response carries a Content-Security-Policy that allows only this origin's scripts, styles and
API calls: no inline script, no CDN, no framing (docs/security.md).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from meshfed.api.errors import ApiError
from meshfed.api.routes import Access, Operation, RouteTable

GUI_PATH = "/gui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every file of `static/` by name (one flat folder: a name can never be a path)."""
    out: dict[str, Asset] = {}
    for entry in (resources.files(__package__) / "static").iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        ctype = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
        out[entry.name] = Asset(entry.read_bytes(), ctype or "application/octet-stream")
    return out


def add_gui_routes(routes: RouteTable) -> None:
    assets = load_assets()

    def serve(name: str) -> web.Response:
        asset = assets.get(name)
        if asset is None:
            raise ApiError(404, "Not Found", f"no GUI file {name!r}")
        return web.Response(
            body=asset.body, content_type=asset.content_type, headers=SECURITY_HEADERS
        )

    async def index(_: web.Request) -> web.StreamResponse:
        return serve("index.html")

    async def asset(request: web.Request) -> web.StreamResponse:
        return serve(request.match_info["file"])

    routes.add(
        Operation(
            "GET",
            GUI_PATH,
            "getGui",
            "The web GUI (static page; its data calls need a user token)",
            "GUI",
            responses={200: ("HTML page", None)},
            access=Access.PUBLIC,
        ),
        index,
    )
    routes.add(
        Operation(
            "GET",
            GUI_PATH + "/{file}",
            "getGuiAsset",
            "A static file of the web GUI (scripts, styles)",
            "GUI",
            responses={200: ("The file", None), 404: ("No such file", None)},
            access=Access.PUBLIC,
        ),
        asset,
    )
