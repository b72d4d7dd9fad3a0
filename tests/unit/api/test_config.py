"""Options declared once, in a settings dataclass: flags, MESHFED_* variables and a YAML file,
in that precedence."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest

from meshfed.config import (
    Address,
    Config,
    LogLevel,
    Option,
    choice_parser,
    int_parser,
    parse_address,
    parse_bool,
    parse_optional_path,
    parse_size,
    settings_options,
)


@dataclass(frozen=True)
class Store:
    """A group of options, as programs share them."""

    store: Annotated[str, Option(choice_parser("sqlite", "memory"), "sqlite", "Store backend")]
    default_mesh: Annotated[bool, Option(parse_bool, True, "Create Mesh 'default' on first start")]


@dataclass(frozen=True)
class Settings:
    api_address: Annotated[
        Address, Option(parse_address, "127.0.0.1:7681", "Where the API listens")
    ]
    storage: Store
    max_body_bytes: Annotated[int, Option(parse_size, "1MiB", "Largest request body")]
    workers: Annotated[int, Option(int_parser(1, 64), 4, "Worker count")]
    log_level: LogLevel


CONFIG = Config("test-cp", "A test program.", Settings)


def load(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings as a flat dict by option name, groups' options included."""
    settings = CONFIG.load(argv, env or {})[1]
    flat: dict[str, Any] = {}
    for name, value in asdict(settings).items():
        flat.update(value if isinstance(value, dict) else {name: value})
    return flat


def test_defaults() -> None:
    settings = CONFIG.load([], {})[1]
    assert settings == Settings(
        api_address=Address("127.0.0.1", 7681),
        storage=Store(store="sqlite", default_mesh=True),
        max_body_bytes=1024 * 1024,
        workers=4,
        log_level="info",
    )


def test_options_are_derived_from_the_fields_in_order() -> None:
    assert [(o.name, o.path, o.env_var) for o in CONFIG.options] == [
        ("api-address", ("api_address",), "MESHFED_API_ADDRESS"),
        ("store", ("storage", "store"), "MESHFED_STORE"),
        ("default-mesh", ("storage", "default_mesh"), "MESHFED_DEFAULT_MESH"),
        ("max-body-bytes", ("max_body_bytes",), "MESHFED_MAX_BODY_BYTES"),
        ("workers", ("workers",), "MESHFED_WORKERS"),
        ("log-level", ("log_level",), "MESHFED_LOG_LEVEL"),
    ]


def test_a_field_without_an_option_is_refused() -> None:
    @dataclass(frozen=True)
    class Unset:
        workers: int

    with pytest.raises(TypeError, match=r"Unset\.workers needs one Option"):
        settings_options(Unset)


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api-address: 127.0.0.3:3\nstore: memory\nworkers: 7\ndefault-mesh: false\n")
    env = {"MESHFED_API_ADDRESS": "127.0.0.2:2", "MESHFED_STORE": "sqlite"}
    got = load(["--config", str(cfg), "--api-address", "127.0.0.1:1"], env)
    assert got["api_address"] == Address("127.0.0.1", 1)  # flag beats env and file
    assert got["store"] == "sqlite"  # env beats file
    assert got["workers"] == 7 and got["default_mesh"] is False  # file beats default
    assert got["log_level"] == "info"  # default
    # The file can also come from the environment.
    assert load([], {"MESHFED_CONFIG": str(cfg)})["store"] == "memory"


def test_bool_flag_forms() -> None:
    assert load(["--default-mesh"])["default_mesh"] is True
    assert load(["--default-mesh=false"])["default_mesh"] is False
    assert load([], {"MESHFED_DEFAULT_MESH": "no"})["default_mesh"] is False


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--api-address", "nonsense"], {}, "expected HOST:PORT"),
        (["--api-address", "127.0.0.1:99999"], {}, "between 0 and 65535"),
        ([], {"MESHFED_STORE": "etcd"}, "environment variable MESHFED_STORE"),
        (["--workers", "0"], {}, "at least 1"),
        (["--workers", "two"], {}, "expected an integer"),
        (["--max-body-bytes", "lots"], {}, "expected a size"),
        (["--default-mesh=perhaps"], {}, "expected true or false"),
        (["--config", "/nonexistent/meshfed.yaml"], {}, "cannot read config file"),
        (["--no-such-flag"], {}, "unrecognized arguments"),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        load(argv, env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown option(s) colour"),
        ("- a\n- b\n", "must be a mapping"),
        ("api-address: [unclosed\n", "not valid YAML"),
        ("workers: many\n", "key 'workers'"),
    ],
)
def test_bad_config_files(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as exc:
        load(["--config", str(cfg)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("")
    assert load(["--config", str(cfg)]) == load([])


def test_help_shows_defaults_and_env_vars(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for opt in CONFIG.options:
        assert f"--{opt.name}" in out
        assert opt.env_var in out
    assert "(default: 127.0.0.1:7681; env: MESHFED_API_ADDRESS)" in out
    assert "(default: true; env: MESHFED_DEFAULT_MESH)" in out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:7681", Address("127.0.0.1", 7681)),
        ("localhost:0", Address("localhost", 0)),
        ("[::1]:7681", Address("::1", 7681)),
    ],
)
def test_address(raw: str, expected: Address) -> None:
    assert parse_address(raw) == expected
    assert parse_address(str(expected)) == expected


@pytest.mark.parametrize("raw", [":7681", "::1:7681", "[zz]:1", "host", "host:port"])
def test_bad_address(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_address(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(1024, 1024), ("2048", 2048), ("4KiB", 4096), ("1 MiB", 1048576)]
)
def test_size(raw: Any, expected: int) -> None:
    assert parse_size(raw) == expected


def test_option_names_are_unique() -> None:
    @dataclass(frozen=True)
    class Twice:
        store: Annotated[str, Option(choice_parser("sqlite"), "sqlite", "Again")]
        storage: Store

    @dataclass(frozen=True)
    class Reserved:
        config: Annotated[str, Option(choice_parser("a"), "a", "The --config flag's own name")]

    for settings in (Twice, Reserved):
        with pytest.raises(ValueError):
            Config("x", "", settings)


@dataclass(frozen=True)
class Share:
    share: Annotated[int, Option(parse_size, "1%", "After 80% of")]


def test_a_percent_sign_in_any_help_text_cannot_crash_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = Config("pct", "Takes 100% of it.", Share)
    parser = config.parser()
    parser.add_argument("command", nargs="?", help="run: 100%o sure")
    sub = parser.add_subparsers().add_parser("child")  # subcommands get the same formatter
    sub.add_argument("--x", help="%(nonsense)s 5%")
    for argv in (["--help"], ["child", "--help"]):
        with pytest.raises(SystemExit) as exc:
            config.load(argv, {}, parser=parser)
        assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "After 80% of (default: 1%; env: MESHFED_SHARE)" in out
    assert "run: 100%o sure" in out
    assert "%(nonsense)s 5%" in out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("  ", None), ("a.crt", Path("a.crt")), (" a.crt\n", Path("a.crt"))],
)
def test_optional_path(raw: Any, expected: Path | None) -> None:
    """One parser for every program's optional file options: blank means off."""
    assert parse_optional_path(raw) == expected
