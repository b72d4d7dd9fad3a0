"""The browser test runs wherever Chromium is, and in CI it must (tests/integration/gui/cdp.py)."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.gui import cdp


def test_without_chromium_the_test_is_skipped_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        cdp.chromium_or_skip()


def test_in_ci_a_missing_chromium_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        cdp.chromium_or_skip()


def test_chromium_found_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"bin/{name}")
    assert cdp.chromium_or_skip() == "bin/chromium"
