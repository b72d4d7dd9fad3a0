"""Validation errors that name every bad field at once, with its path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # e.g. "spec.from[0].default.action"
    reason: str


class ValidationError(Exception):
    """Raised with the complete list of problems, so a user fixes them in one pass."""

    def __init__(self, errors: list[FieldError], title: str = "Resource is not valid") -> None:
        super().__init__(title + ": " + "; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.title = title
        self.errors = errors


class DeleteRefusedError(Exception):
    """A delete that something still depends on (a zone that is connected): the message says
    what to do first. The API answers 409 Conflict; the caller's logic knows nothing of HTTP."""


# --- field paths: `spec` + `to` -> `spec.to`, then `[0]`, then `['kuma.io/service']` -----


def join(path: str, name: str) -> str:
    """`spec` + `to` -> `spec.to`; the root path is the empty string."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k!r}]"
