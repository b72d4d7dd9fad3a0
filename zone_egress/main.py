"""Entry point of `zone-egress` (`zone-egress run ...`)."""

from __future__ import annotations

from collections.abc import Sequence

from meshfed.process import load_settings, run_program
from meshfed.proxy.zone_proxy import StartError
from zone_egress.app import App
from zone_egress.settings import CONFIG


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the egress", argv)
    run_program("zone-egress", lambda: App(settings).run(), start_errors=(StartError,))


if __name__ == "__main__":
    main()
