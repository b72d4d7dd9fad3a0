"""What `meshctl up` prints: child output prefixed by component, notices, the status block.

On a terminal the status block stays at the bottom: before log lines are written it is erased
(cursor up over its lines, clear to the end of the screen) and drawn again after them, so logs
scroll above it. Elsewhere (a pipe, a file, CI) nothing is redrawn: a status line is printed
only when it changes, so the output stays a readable log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TextIO

UP = "up"
STATUS = "status"
_RESET = "\x1b[0m"
# Distinct, readable foreground colours for components; `up` and `status` are bold.
_PALETTE = ("36", "33", "32", "35", "34", "91", "92", "93", "94", "95", "96")
_BOLD = "1"


class LineBuffer:
    """Bytes from a pipe in, complete text lines out. A line longer than `max_line` is cut
    into pieces so a child that never prints a newline cannot grow our memory."""

    def __init__(self, max_line: int = 16384) -> None:
        self._pending = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[str]:
        self._pending += data
        parts = self._pending.split(b"\n")
        self._pending = parts.pop()
        lines = [_decode(p) for p in parts]
        while len(self._pending) >= self._max:
            lines.append(_decode(self._pending[: self._max]))
            self._pending = self._pending[self._max :]
        return lines

    def flush(self) -> list[str]:
        """Whatever is left without a newline (the child exited mid-line)."""
        rest, self._pending = self._pending, b""
        return [_decode(rest)] if rest else []


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per component (by position), bold for up's own lines."""
    colors = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}
    colors[UP] = colors[STATUS] = _BOLD
    return colors


def prefix(name: str, width: int, color: str | None) -> str:
    """`zone-1  | ` with the name padded to `width`, coloured when `color` is an SGR code."""
    padded = name.ljust(width)
    if color:
        padded = f"\x1b[{color}m{padded}{_RESET}"
    return f"{padded} | "


def erase_lines(count: int) -> str:
    """Moves to the start of the line `count` lines up and clears to the end of the screen."""
    return f"\x1b[{count}F\x1b[J" if count else ""


def truncate(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


class Console:
    def __init__(
        self,
        out: TextIO,
        names: Sequence[str],
        *,
        tty: bool,
        color: bool,
        columns: Callable[[], int] = lambda: 0,
    ) -> None:
        self._out = out
        self._tty = tty
        self._colors = colors_for(names) if color else {}
        self._width = max(len(n) for n in [*names, UP, STATUS])
        self._columns = columns
        self._drawn = 0  # status lines currently on screen (terminal only)
        self._status: dict[str, str] = {}  # key -> text of the status lines, in order

    def log(self, name: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        head = prefix(name, self._width, self._colors.get(name))
        text = "".join(f"{head}{line}\n" for line in lines)
        if self._tty:
            text = erase_lines(self._drawn) + text + self._draw()
        self._write(text)

    def notice(self, *lines: str) -> None:
        self.log(UP, lines)

    def status(self, lines: Sequence[tuple[str, str]]) -> None:
        """Sets the status block: (key, text) per line; keys say which line is which."""
        new = dict(lines)
        if new == self._status:
            return
        changed = [text for key, text in new.items() if self._status.get(key) != text]
        self._status = new
        if self._tty:
            self._write(erase_lines(self._drawn) + self._draw())
        elif changed:
            head = prefix(STATUS, self._width, None)
            self._write("".join(f"{head}{text}\n" for text in changed))

    def close(self) -> None:
        """Leaves the terminal as a plain log: the status block is erased."""
        if self._tty and self._drawn:
            self._write(erase_lines(self._drawn))
            self._drawn = 0

    def _draw(self) -> str:
        head = prefix(STATUS, self._width, self._colors.get(STATUS))
        head_plain = prefix(STATUS, self._width, None)
        # One column spare: writing the last column makes some terminals wrap early.
        limit = self._columns() - len(head_plain) - 1
        self._drawn = len(self._status)
        return "".join(f"{head}{truncate(t, limit)}\n" for t in self._status.values())

    def _write(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # reader or terminal gone, stream closed: keep supervising
            pass
