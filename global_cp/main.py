"""Entry point of `global-cp`."""

from __future__ import annotations

import sys


def main() -> None:
    print("global-cp: not implemented yet", file=sys.stderr)
    sys.exit(2)
