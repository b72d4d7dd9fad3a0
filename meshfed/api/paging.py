"""List paging in Kuma's style: `size` (default 100, max 1000), opaque `offset`, `name` filter,
and a `next` link that is an absolute URL so a client can follow it blindly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from meshfed.api.errors import bad_request
from meshfed.resources.errors import FieldError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PageParams:
    size: int
    offset: str | None
    name: str | None


def page_params(query: Mapping[str, str]) -> PageParams:
    raw_size = query.get("size")
    size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        try:
            size = int(raw_size)
        except ValueError:
            size = -1
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise bad_request(
                "invalid page size",
                [FieldError("size", f"must be an integer from 1 to {MAX_PAGE_SIZE}")],
            )
    return PageParams(size=size, offset=query.get("offset") or None, name=query.get("name") or None)


def next_url(request: web.Request, next_offset: str | None) -> str | None:
    """The current URL (same filters and size) at the next offset; None on the last page."""
    if next_offset is None:
        return None
    return str(request.url.update_query(offset=next_offset))
