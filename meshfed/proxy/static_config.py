"""The static config file mode shared by mesh-dp and zone-ingress (their event loop and
signals: meshfed.process).

`--config-file` runs a proxy from a JSON file instead of a control plane (for debugging, and
for tests that need a proxy without a zone-cp). SIGHUP reloads the file; a file that does
not parse or cannot be applied is logged and the running config stays.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from meshfed.dpconfig.model import ConfigFormatError

log = logging.getLogger("meshfed.proxy.static_config")

C = TypeVar("C")


def read_config_file(path: Path, parse: Callable[[bytes], C]) -> C:
    """The parsed file; ConfigFormatError names the file and the problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse(data)
    except ConfigFormatError as exc:
        raise ConfigFormatError(f"{path}: {exc}") from None


class StaticConfig(Generic[C]):
    """Loads a config file into a proxy at start and on every SIGHUP."""

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], C],
        apply: Callable[[C], Awaitable[None]],
        apply_errors: tuple[type[Exception], ...],
    ) -> None:
        self.path = path
        self._parse = parse
        self._apply = apply
        self._errors: tuple[type[Exception], ...] = (ConfigFormatError, *apply_errors)
        self.reloads = 0
        self.failed_reloads = 0
        self.last_error = ""

    async def load(self) -> None:
        """First load: errors propagate (the process should exit and say why)."""
        await self._apply(read_config_file(self.path, self._parse))

    async def reload(self) -> bool:
        try:
            await self._apply(read_config_file(self.path, self._parse))
        except self._errors as exc:
            self.failed_reloads += 1
            self.last_error = str(exc)
            log.error("reload of %s failed, still running the previous config: %s", self.path, exc)
            return False
        self.reloads += 1
        self.last_error = ""
        return True

    def status(self) -> dict[str, object]:
        return {
            "mode": "static",
            "file": str(self.path),
            "reloads": self.reloads,
            "failedReloads": self.failed_reloads,
            "lastError": self.last_error,
        }
