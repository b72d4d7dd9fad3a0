"""Entry point of `zone-cp`."""

from __future__ import annotations

import sys


def main() -> None:
    print("zone-cp: not implemented yet", file=sys.stderr)
    sys.exit(2)
