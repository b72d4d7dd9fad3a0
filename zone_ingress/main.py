"""Entry point of `zone-ingress`."""

from __future__ import annotations

import sys


def main() -> None:
    print("zone-ingress: not implemented yet", file=sys.stderr)
    sys.exit(2)
