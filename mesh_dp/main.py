"""Entry point of `mesh-dp`."""

from __future__ import annotations

import sys


def main() -> None:
    print("mesh-dp: not implemented yet", file=sys.stderr)
    sys.exit(2)
