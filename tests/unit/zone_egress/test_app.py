"""zone-egress refuses settings it cannot start with, before anything listens."""

from __future__ import annotations

import pytest

from zone_egress.app import App, StartError
from zone_egress.settings import CONFIG, EgressSettings


def settings(*argv: str) -> EgressSettings:
    return CONFIG.load(list(argv), env={})[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "give --cp"),
        (("--cp", "grpc://127.0.0.1:5678"), "give --zone-token-file"),
        (("--cp", "grpc://127.0.0.1:5678", "--config-file", "x.json"), "give --cp"),
        (("--config-file", "x.json", "--zone-token-file", "t"), "--zone-token-file is for --cp"),
        (("--config-file", "x.json", "--name", "Not A Name!"), "not a valid ZoneEgress"),
    ],
)
def test_start_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(StartError, match=message):
        App(settings(*argv, "--admin-address", "127.0.0.1:0"))
