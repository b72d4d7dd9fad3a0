"""Entry point of `zone-ingress` (`zone-ingress run ...`)."""

from __future__ import annotations

from collections.abc import Sequence

from meshfed.process import load_settings, run_program
from meshfed.proxy.zone_proxy import StartError
from zone_ingress.app import App
from zone_ingress.settings import CONFIG


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the ingress", argv)
    run_program("zone-ingress", lambda: App(settings).run(), start_errors=(StartError,))
