"""Errors in Kuma's REST shape, and the middleware that guarantees no handler leaks a traceback.

Every failure a client can see is `{"type": "/std-errors", "status", "title", "detail",
"invalid_parameters": [{"field", "reason"}]}`: meshctl and users' scripts parse one format,
whether the error came from validation, the store, aiohttp's router or a bug.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web

from meshfed.resources.errors import FieldError, ValidationError
from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    InvalidOffsetError,
    NotFoundError,
    StoreError,
)

log = logging.getLogger("meshfed.api")


class ApiError(Exception):
    """Raised by handlers; the middleware renders it. `invalid` names the bad fields."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        invalid: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid = list(invalid)
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return problem_json(self.status, self.title, self.detail, self.invalid)

    def response(self) -> web.Response:
        return web.json_response(self.to_json(), status=self.status, headers=self.headers)


def problem_json(
    status: int, title: str, detail: str, invalid: Sequence[FieldError] = ()
) -> dict[str, Any]:
    return {
        "type": "/std-errors",
        "status": status,
        "title": title,
        "detail": detail,
        "invalid_parameters": [{"field": e.field, "reason": e.reason} for e in invalid],
    }


def bad_request(detail: str, invalid: Sequence[FieldError] = ()) -> ApiError:
    return ApiError(400, "Bad Request", detail, invalid)


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    """aiohttp's own 404/405/413 answers, re-rendered in the common format."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    if isinstance(exc, web.HTTPNotFound):
        detail = f"no such path: {request.path}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"method {exc.method} is not allowed on {request.path}; allowed: {allowed}"
    else:
        detail = exc.text or ""
        # aiohttp's default text is just "404: Not Found"; the title already says that.
        if detail.startswith(f"{exc.status}: "):
            detail = ""
    title = exc.reason or HTTPStatus(exc.status).phrase
    return ApiError(exc.status, title, detail, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return exc.response()
    except ValidationError as exc:
        return ApiError(400, exc.title, "fix the listed fields", exc.errors).response()
    except NotFoundError as exc:
        return ApiError(404, "Not Found", str(exc)).response()
    except (ConflictError, AlreadyExistsError) as exc:
        return ApiError(409, "Conflict", str(exc)).response()
    except InvalidOffsetError as exc:
        reason = str(exc) or "is not an offset returned by this API"
        return bad_request("invalid offset", [FieldError("offset", reason)]).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc, request).response()
    except StoreError as exc:
        # The store is unreachable or failing (an etcd member lost, a leader election in
        # progress): the client may retry; a write may or may not have been applied.
        log.warning("%s %s: store failure: %s", request.method, request.path, exc)
        return ApiError(503, "Service Unavailable", f"the store failed: {exc}").response()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return ApiError(
            500, "Internal Server Error", "the server failed; the error is in its log"
        ).response()
