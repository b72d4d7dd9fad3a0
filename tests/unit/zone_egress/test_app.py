"""zone-egress refuses settings it cannot start with, before anything listens."""

from __future__ import annotations

import pytest

from meshfed.proxy.zone_proxy import StartError
from tests.support import free_port
from zone_egress.app import App
from zone_egress.settings import CONFIG, EgressSettings

CP = "<the zone-cp's address>"  # replaced by a free port in the test


def settings(*argv: str) -> EgressSettings:
    return CONFIG.load(list(argv), env={})[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "give --cp"),
        (("--cp", CP), "give --zone-token-file"),
        (("--cp", CP, "--config-file", "x.json"), "give --cp"),
        (("--config-file", "x.json", "--zone-token-file", "t"), "--zone-token-file is for --cp"),
        (("--config-file", "x.json", "--name", "Not A Name!"), "not a valid ZoneEgress"),
    ],
)
def test_start_errors(argv: tuple[str, ...], message: str) -> None:
    # a free port, though nothing connects: never a default one another meshfed may hold
    argv = tuple(f"grpc://127.0.0.1:{free_port()}" if a == CP else a for a in argv)
    with pytest.raises(StartError, match=message):
        App(settings(*argv, "--admin-address", "127.0.0.1:0"))
