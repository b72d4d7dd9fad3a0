"""An in-process global for the tests of zone deletion and zone instances
(tests/inprocess_federation.py has the helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.inprocess_federation import Global, start_global, stop_global


@pytest.fixture
async def glob(tmp_path: Path) -> AsyncIterator[Global]:
    g = await start_global(tmp_path / "global")
    try:
        yield g
    finally:
        await stop_global(g)
