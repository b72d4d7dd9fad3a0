"""One module per subcommand; each has `register(subparsers, common)` and a `run(args, ctx)`.

Later subcommands (up, inspect, resolve) slot in by adding a module to COMMANDS.
"""

from __future__ import annotations

from types import ModuleType

from meshctl.commands import (
    apply,
    config,
    delete,
    explain,
    export,
    generate,
    get,
    inspect,
    resolve,
    up,
    version,
)

COMMANDS: tuple[ModuleType, ...] = (
    apply,
    get,
    delete,
    export,
    generate,
    inspect,
    explain,
    resolve,
    up,
    config,
    version,
)
