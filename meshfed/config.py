"""Program options declared once, in the settings dataclass, and read from flags, `MESHFED_*`
variables and a YAML file.

Each executable (global-cp, zone-cp, zone-ingress, mesh-dp) has one frozen settings dataclass;
each field says in its annotation how it is set, `Annotated[Address, Option(parse_address,
"127.0.0.1:5681", "Where ...")]`, and a field whose type is itself such a dataclass is a group of
options shared by several programs (composition: `etcd: EtcdSettings`). `Config` derives the
argparse flags, environment variable names, YAML keys and `--help` from the fields, so the
sources cannot drift apart and `--help` documents every default in one place (as Kuma's single
defaults file does). Precedence: flag > environment > file > default.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, NamedTuple, TypeVar, get_type_hints

ENV_PREFIX = "MESHFED_"


class ConfigError(Exception):
    """A bad option value or config file; the program prints it and exits with status 2."""


# A parser turns a raw value (a string from a flag or env var, or a YAML scalar) into the
# program's value, raising ValueError with a reason a user can act on.
Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    """How one settings field is set, written in its annotation (`Annotated[T, Option(...)]`);
    its name comes from the field: `api_address` is --api-address, MESHFED_API_ADDRESS and the
    YAML key api-address. A shared option is a type alias declared once and used by each
    program (`log_level: LogLevel`)."""

    parse: Parser
    default: Any  # raw form, shown in --help and run through `parse` like any other value
    help: str
    metavar: str | None = None


@dataclass(frozen=True)
class NamedOption:
    """An `Option` with the name its field gives it, as `Config` lists them."""

    name: str  # "api-address"
    path: tuple[str, ...]  # the field, through its groups: ("etcd", "etcd_endpoints")
    option: Option

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


def settings_options(cls: type, path: tuple[str, ...] = ()) -> tuple[NamedOption, ...]:
    """The options of a settings dataclass in field order, a group's where its field is.
    Every field is an option or a group: a field neither could set is a TypeError."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a settings dataclass")
    hints = get_type_hints(cls, include_extras=True)
    found: list[NamedOption] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        marks = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Option)]
        if len(marks) == 1:
            found.append(NamedOption(f.name.replace("_", "-"), (*path, f.name), marks[0]))
        elif not marks and isinstance(hint, type) and dataclasses.is_dataclass(hint):
            found.extend(settings_options(hint, (*path, f.name)))
        else:
            raise TypeError(
                f"{cls.__name__}.{f.name} needs one Option in its annotation "
                "(Annotated[T, Option(...)]) or a settings dataclass as its type (a group)"
            )
    return tuple(found)


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# ---- value parsers -------------------------------------------------------------------------


def parse_str(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("expected a string")
    return str(value)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def int_parser(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number

    return parse


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(|b|kib|kb|k|mib|mb|m|gib|gb|g)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: Any) -> int:
    """Bytes, with optional binary suffix: 1048576, 1024KiB, 1MiB (KB/MB are read as KiB/MiB)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1048576 or 1MiB")
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError("expected a size such as 1048576 or 1MiB")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()[:1]]
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from Go-style text (500ms, 1s, 2m) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 1s or 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError("expected a duration such as 500ms, 1s or 2m")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def choice_parser(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return parse


def parse_address(value: Any) -> Address:
    """HOST:PORT, with IPv6 hosts in brackets ([::1]:5681)."""
    text = str(value).strip()
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(
        r"^([^:\[\]]*):(\d+)$", text
    )
    if not match:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5681 or [::1]:5681")
    host, port = match.group(1), int(match.group(2))
    if not host:
        raise ValueError("the host is missing (use 0.0.0.0 to listen on every address)")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    if not 0 <= port <= 65535:
        raise ValueError("the port must be between 0 and 65535")
    return Address(host, port)


def parse_path(value: Any) -> Path:
    text = parse_str(value)
    if not text:
        raise ValueError("expected a path")
    return Path(text)


def parse_optional_path(value: Any) -> Path | None:
    """A path, or None for an empty or blank value (an option that is off until set)."""
    text = parse_str(value).strip() if value is not None else ""
    return Path(text) if text else None


LOG_LEVELS = ("debug", "info", "warning", "error")

LogLevel = Annotated[
    str, Option(choice_parser(*LOG_LEVELS), "info", "Log verbosity: " + ", ".join(LOG_LEVELS))
]

LOG_FORMATS = ("text", "json")

LogFormat = Annotated[
    str,
    Option(
        choice_parser(*LOG_FORMATS),
        "text",
        "Log line format: text (one readable line per event) or json (one JSON object per "
        "line: time, level, logger, message and the event's own fields)",
    ),
]


# ---- the option set of one program ---------------------------------------------------------


class LiteralHelpFormatter(argparse.HelpFormatter):
    """Prints help strings as written: argparse %-formats each one (`%(default)s`), so a
    plain `%` ("after 80% of it") crashed `--help` with "TypeError: %o format". Option help
    here already spells out its default, so no help string of a `Config` parser, or of a
    positional a program adds to it, is ever %-formatted."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        # argparse builds a formatter for every add_argument and, without a width, imports
        # shutil for the terminal's (with bz2 and lzma: ~0.5 MiB in every sidecar, decision
        # 184); the same rule as shutil.get_terminal_size: $COLUMNS, stdout's terminal, 80
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)

    def _expand_help(self, action: argparse.Action) -> str:
        return self._get_help_string(action) or ""


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size().columns` gives it."""
    with contextlib.suppress(ValueError):
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class HelpSafeParser(argparse.ArgumentParser):
    """An ArgumentParser printing help with `LiteralHelpFormatter`; its subcommands'
    parsers (argparse makes them of the parent's class) do too. Every program's parser is
    one (`Config.parser`, meshctl's), so no help text can crash `--help`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", LiteralHelpFormatter)
        super().__init__(*args, **kwargs)


S = TypeVar("S")


class Config(Generic[S]):
    """The options of one program, derived from its settings dataclass; builds its parser and
    resolves the settings from every source."""

    def __init__(self, prog: str, description: str, settings: type[S]) -> None:
        self.options = settings_options(settings)
        names = [o.name for o in self.options]
        if len(names) != len(set(names)) or "config" in names:
            raise ValueError("option names must be unique and 'config' is reserved")
        self.prog = prog
        self.description = description
        self.settings = settings

    def parser(self) -> argparse.ArgumentParser:
        """A fresh parser; a program may add positionals (e.g. a `run` command) before use."""
        parser = HelpSafeParser(
            prog=self.prog,
            description=self.description,
            epilog="Every option can also be set with its MESHFED_* environment variable or as "
            "a key (the option name without dashes in front) in the YAML file given by "
            "--config. Precedence: flag, environment, file, default.",
        )
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=None,
            help=f"YAML file of options, e.g. 'api-address: 0.0.0.0:5681' "
            f"(default: none; env: {ENV_PREFIX}CONFIG)",
        )
        for opt in self.options:
            spec, is_bool = opt.option, opt.option.parse is parse_bool
            parser.add_argument(
                f"--{opt.name}",
                dest=opt.dest,
                metavar=spec.metavar or ("BOOL" if is_bool else "VALUE"),
                default=None,
                # A boolean flag alone means true; `--flag=false` turns it off.
                nargs="?" if is_bool else None,
                const="true" if is_bool else None,
                help=f"{spec.help} (default: {_show(spec.default)}; env: {opt.env_var})",
            )
        return parser

    def load(
        self,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        parser: argparse.ArgumentParser | None = None,
    ) -> tuple[argparse.Namespace, S]:
        """Parses argv and resolves the settings; on a bad value prints it and exits 2."""
        parser = parser or self.parser()
        ns = parser.parse_args(argv)
        try:
            return ns, self.resolve(ns, os.environ if env is None else env)
        except ConfigError as exc:
            parser.error(str(exc))

    def resolve(self, ns: argparse.Namespace, env: Mapping[str, str]) -> S:
        """The settings, each option's value from the first source that sets it."""
        config_path = ns.config if ns.config is not None else env.get(ENV_PREFIX + "CONFIG")
        file_values = self._read_file(config_path) if config_path else {}
        values: dict[tuple[str, ...], Any] = {}
        for opt in self.options:
            flag_value = getattr(ns, opt.dest, None)
            if flag_value is not None:
                raw, source = flag_value, f"--{opt.name}"
            elif opt.env_var in env:
                raw, source = env[opt.env_var], f"environment variable {opt.env_var}"
            elif opt.name in file_values:
                raw, source = file_values[opt.name], f"key {opt.name!r} in {config_path}"
            else:
                raw, source = opt.option.default, f"default of --{opt.name}"
            try:
                values[opt.path] = opt.option.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid value {raw!r} for {source}: {exc}") from None
        return self.settings(**_field_values(self.settings, values, ()))

    def _read_file(self, path: str) -> dict[str, Any]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        import yaml  # only for --config files: a proxy without one never loads it

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of option names to values")
        known = {o.name for o in self.options}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} in {path}; "
                f"known: {', '.join(sorted(known))}"
            )
        return {str(k): v for k, v in data.items()}


def _field_values(
    cls: type, values: Mapping[tuple[str, ...], Any], path: tuple[str, ...]
) -> dict[str, Any]:
    """The constructor arguments of `cls` (a settings dataclass or one of its groups) from the
    resolved values by field path, building each group from its own fields."""
    hints = get_type_hints(cls, include_extras=True)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where = (*path, f.name)
        if where in values:
            kwargs[f.name] = values[where]
        else:
            group = hints[f.name]
            kwargs[f.name] = group(**_field_values(group, values, where))
    return kwargs


def _show(default: Any) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# What every LogRecord carries; anything else on a record came from `extra=` (its fields).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`,
    `message`, then the fields the call passed as `extra=` (`zone`, `type`, `reason`, ...),
    and `exception` with the traceback when there is one. Values JSON cannot hold are
    written as their str(); the four fixed keys always win over a field of the same name."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            k: v
            for k, v in record.__dict__.items()
            if k not in _RECORD_ATTRIBUTES and not k.startswith("_")
        }
        when = time.gmtime(record.created)
        millis = int(record.msecs)
        out["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", when) + f".{millis:03d}Z"
        out["level"] = record.levelname.lower()
        out["logger"] = record.name
        out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """One line per event on stderr, for every program: readable text (timestamp, level,
    logger, message), or with `json` one object per line for a log collector."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
