"""Entry point of `meshctl`."""

from __future__ import annotations

import sys


def main() -> None:
    print("meshctl: not implemented yet", file=sys.stderr)
    sys.exit(2)
