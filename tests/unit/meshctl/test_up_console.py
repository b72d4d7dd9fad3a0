"""What `meshctl up` prints: line splitting, prefixes, and the status block on a terminal
(redrawn below the logs) versus a pipe (a line only when something changes)."""

from __future__ import annotations

import io

from meshctl.up.console import Console, LineBuffer, colors_for, erase_lines, prefix, truncate


def test_line_buffer_joins_partial_chunks_and_keeps_utf8_whole() -> None:
    buf = LineBuffer()
    snow = "☃".encode()
    assert buf.feed(b"one\ntw") == ["one"]
    assert buf.feed(b"o\r\nthree " + snow[:1]) == ["two"]
    assert buf.feed(snow[1:] + b"\n") == ["three ☃"]
    assert buf.feed(b"tail") == []
    assert buf.flush() == ["tail"]
    assert buf.flush() == []


def test_line_buffer_cuts_endless_lines_and_replaces_bad_bytes() -> None:
    buf = LineBuffer(max_line=4)
    assert buf.feed(b"abcdefghij") == ["abcd", "efgh"]
    assert buf.feed(b"\n\xff\n") == ["ij", "\ufffd"]


def test_prefix_pads_and_colours() -> None:
    assert prefix("zone-1", 7, None) == "zone-1  | "
    assert prefix("up", 4, "1") == "\x1b[1mup  \x1b[0m | "
    colors = colors_for(["global", "zone-1"])
    assert colors["global"] != colors["zone-1"]
    assert colors["up"] == colors["status"] == "1"


def test_erase_and_truncate() -> None:
    assert erase_lines(0) == ""
    assert erase_lines(3) == "\x1b[3F\x1b[J"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    assert truncate("abcdef", 0) == "abcdef"


def test_pipe_output_is_a_plain_log_with_status_changes_only() -> None:
    out = io.StringIO()
    con = Console(out, ["global", "zone-1"], tty=False, color=False)
    con.log("global", ["listening"])
    con.notice("started")
    con.status([("global", "global  up"), ("zone-1", "zone-1  syncing")])
    con.status([("global", "global  up"), ("zone-1", "zone-1  syncing")])  # unchanged
    con.status([("global", "global  up"), ("zone-1", "zone-1  connected")])
    con.log("zone-1", [])  # nothing to print
    con.close()
    assert out.getvalue().splitlines() == [
        "global | listening",
        "up     | started",
        "status | global  up",
        "status | zone-1  syncing",
        "status | zone-1  connected",
    ]
    assert "\x1b" not in out.getvalue()


def test_terminal_keeps_the_status_block_below_the_logs() -> None:
    out = io.StringIO()
    con = Console(out, ["global"], tty=True, color=False, columns=lambda: 30)
    con.status([("global", "global  up"), ("zone-1", "zone-1  offline (global down; long text)")])
    first = out.getvalue()
    # Drawn without erasing anything (nothing was drawn before); long lines cut to the width.
    assert first == "status | global  up\nstatus | zone-1  offline (gl…\n"
    con.log("global", ["a", "b"])
    second = out.getvalue()[len(first) :]
    assert second == (
        "\x1b[2F\x1b[Jglobal | a\nglobal | b\nstatus | global  up\nstatus | zone-1  offline (gl…\n"
    )
    con.status([("global", "global  up")])
    third = out.getvalue()[len(first) + len(second) :]
    assert third == "\x1b[2F\x1b[Jstatus | global  up\n"
    con.close()
    assert out.getvalue().endswith("\x1b[1F\x1b[J")


def test_a_closed_stream_does_not_stop_the_supervisor() -> None:
    out = io.StringIO()
    con = Console(out, ["global"], tty=False, color=False)
    out.close()
    con.log("global", ["still fine"])  # no exception
