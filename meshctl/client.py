"""The only module that speaks HTTP: a small blocking client of the global/zone REST API.

A CLI makes a handful of requests per run, so stdlib urllib is enough and keeps meshctl free
of an event loop. Every failure becomes a CliError subclass with a message a user can act on.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from meshctl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from meshfed.resources.descriptors import Scope, TypeDescriptor

DEFAULT_API = "http://127.0.0.1:5681"
API_ENV = "MESHFED_API"
TOKEN_ENV = "MESHFED_API_TOKEN"  # a user token, sent as `Authorization: Bearer`
AUTH_HINT = (
    "no user token was sent: add one with `meshctl config control-planes add --name NAME "
    f"--address URL --auth-type tokens --auth-conf token=TOKEN`, or set {TOKEN_ENV}"
)
BAD_TOKEN_HINT = "the user token sent was refused: get a valid one from an admin"
DEFAULT_TIMEOUT = 30.0
_LOOPBACK_HOSTS = ("localhost", "::1")


@dataclass(frozen=True, slots=True)
class InvalidParameter:
    field: str
    reason: str


class ApiError(CliError):
    """The server answered with an error (Kuma's `/std-errors` body, or anything else)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        invalid_parameters: tuple[InvalidParameter, ...] = (),
    ) -> None:
        message = f"{title}: {detail}" if detail and detail != title else title
        super().__init__(
            message,
            EXIT_FAILED,
            [f"{p.field}: {p.reason}" if p.field else p.reason for p in invalid_parameters],
        )
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_parameters = invalid_parameters

    @classmethod
    def from_body(cls, status: int, reason: str, body: bytes) -> ApiError:
        """Parses Kuma's error shape; anything else is shown as status plus the body's start."""
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("title"), str):
            params: list[InvalidParameter] = []
            for p in data.get("invalid_parameters") or []:
                if isinstance(p, dict):
                    params.append(InvalidParameter(str(p.get("field", "")), str(p.get("reason"))))
            detail = data.get("detail")
            return cls(status, data["title"], str(detail) if detail else "", tuple(params))
        text = body.decode("utf-8", errors="replace").strip().splitlines()
        return cls(status, f"HTTP {status} {reason}".strip(), text[0][:200] if text else "")


class ApiUnreachable(CliError):
    """No HTTP answer at all: refused, timed out, name not resolved, connection dropped."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the meshfed API at {url}: {reason}", EXIT_FAILED)
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any  # parsed JSON, or None for an empty body


def normalize_base_url(url: str) -> str:
    """Accepts `host:port` for convenience; rejects what urllib could not use."""
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"invalid API URL {url!r}: expected http(s)://HOST[:PORT]", EXIT_USAGE)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise CliError(f"invalid API URL {url!r}: bad port", EXIT_USAGE) from None
    return url.rstrip("/")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies the server (with `ca_file`, else the system's CAs); TLS 1.2 or later."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot use the CA file {ca_file}: {exc}", EXIT_USAGE) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def resource_path(desc: TypeDescriptor, name: str, mesh: str) -> str:
    """Kuma's path of one resource: /meshes/{mesh}/{plural}/{name} or /{plural}/{name}."""
    quoted = urllib.parse.quote(name, safe="")
    return f"{collection_path(desc, mesh)}/{quoted}"


def collection_path(desc: TypeDescriptor, mesh: str | None) -> str:
    """The list path: within one mesh, or across all meshes when `mesh` is None."""
    if desc.scope is Scope.MESH and mesh is not None:
        return f"/meshes/{urllib.parse.quote(mesh, safe='')}/{desc.plural}"
    return f"/{desc.plural}"


class ApiClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self._token = token.strip() if token else None
        base = urllib.parse.urlsplit(self.base_url)
        self._scheme, self._netloc, self._prefix = base.scheme, base.netloc, base.path
        # A proxy set in the environment must not swallow requests to a local control plane.
        handlers: list[urllib.request.BaseHandler] = []
        if _is_loopback(base.hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))
        if base.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=tls_context(ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _rebase(self, absolute: str) -> str:
        """Follows a server-made URL (`next`) through the address we reached the server at.

        The server builds it from the Host it saw, which behind a proxy or port-forward is not
        an address this client can use; only path and query carry the paging state.
        """
        parts = urllib.parse.urlsplit(absolute)
        path = parts.path
        if self._prefix and not path.startswith(self._prefix + "/"):
            path = self._prefix + path
        return urllib.parse.urlunsplit((self._scheme, self._netloc, path, parts.query, ""))

    def request(self, method: str, url: str, body: Any = None) -> Response:
        status, raw = self.send(method, url, body)
        if not raw.strip():
            return Response(status, None)
        try:
            return Response(status, json.loads(raw))
        except ValueError:
            raise CliError(
                f"unexpected answer from {url} (HTTP {status}): the body is not JSON"
            ) from None

    def send(
        self, method: str, url: str, body: Any = None, accept: str = "application/json"
    ) -> tuple[int, bytes]:
        """One request: (status, raw body) of a 2xx answer; CliError for anything else."""
        data = None
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp is not None else b""
            error = ApiError.from_body(exc.code, str(exc.reason or ""), raw)
            if exc.code == 401:
                error.details.append(AUTH_HINT if self._token is None else BAD_TOKEN_HINT)
            raise error from None
        except urllib.error.URLError as exc:
            raise ApiUnreachable(self.base_url, _describe(exc.reason)) from None
        except TimeoutError:
            raise ApiUnreachable(self.base_url, f"timed out after {self.timeout:g}s") from None
        except http.client.HTTPException as exc:
            raise ApiUnreachable(
                self.base_url, f"the server did not answer with valid HTTP ({exc!r})"
            ) from None
        except OSError as exc:
            raise ApiUnreachable(self.base_url, _describe(exc)) from None
        return status, raw

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self.request("GET", self.url(path, query)).body

    def get_or_none(self, path: str) -> Any:
        """The resource at `path`, or None when the server says 404."""
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def put(self, path: str, body: Any, dry_run: bool = False) -> int:
        query = {"dryRun": "true"} if dry_run else None
        return self.request("PUT", self.url(path, query), body).status

    def post_text(self, path: str, body: Any) -> str:
        """POST whose answer is text/plain (an issued token): the text, stripped."""
        _, raw = self.send("POST", self.url(path), body, accept="text/plain")
        return raw.decode("utf-8", errors="replace").strip()

    def delete(self, path: str) -> None:
        self.request("DELETE", self.url(path))

    def list_page(self, path: str, size: int) -> tuple[list[dict[str, Any]], int, bool]:
        """One page: (items, total, more pages exist)."""
        body = self.get(path, {"size": str(size)})
        items, _next = _page(body, path)
        total = body.get("total")
        return items, total if isinstance(total, int) else len(items), _next is not None

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list, following `next` until the server says there is no more."""
        url = self.url(path)
        seen: set[str] = set()
        items: list[dict[str, Any]] = []
        while True:
            seen.add(url)
            page, nxt = _page(self.request("GET", url).body, url)
            items += page
            if nxt is None:
                return items
            url = self._rebase(nxt)
            if url in seen:
                raise CliError(f"the server's paging loops: {nxt} was already fetched")


def _page(body: Any, where: str) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise CliError(f"unexpected answer from {where}: not a list of resources")
    nxt = body.get("next")
    items = [item for item in body["items"] if isinstance(item, dict)]
    return items, nxt if isinstance(nxt, str) and nxt else None


def _describe(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"the server's TLS certificate is not trusted ({reason.verify_message}); give the "
            "control plane's CA with `meshctl config control-planes add ... --ca-cert-file`"
        )
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed: {reason.reason or reason}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the control plane running?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
