"""meshctl's configuration: control planes, the current one, which address and token a
command uses, the `meshctl config` commands, and what `meshctl up` records."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
import yaml

from meshctl import config
from meshctl.errors import CliError
from meshctl.main import run
from meshctl.up.config_record import plane_name, record
from meshctl.up.state import ROLE_GLOBAL, ROLE_ZONE, ComponentRecord

ENVS = {"api_env": "MESHFED_API", "token_env": "MESHFED_API_TOKEN", "default_api": "http://d:1"}


def meshctl(cfg: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    environ = {"MESHCTL_CONFIG": str(cfg), **(env or {})}
    code = run(argv, stdin=io.StringIO(), stdout=out, stderr=err, environ=environ)
    return code, out.getvalue(), err.getvalue()


def two_planes() -> config.MeshctlConfig:
    cfg = config.MeshctlConfig()
    cfg = cfg.with_plane(
        config.ControlPlane("prod", "https://prod:5682", "tok-prod", "/ca.pem"),
        overwrite=False,
        make_current=True,
    )
    return cfg.with_plane(
        config.ControlPlane("dev", "http://127.0.0.1:7681", "tok-dev"),
        overwrite=False,
        make_current=False,
    )


def test_address_precedence_flag_then_env_then_current_then_default() -> None:
    cfg = two_planes()
    t = config.resolve_target(None, {}, cfg, **ENVS)
    assert (t.url, t.token, t.ca_file) == ("https://prod:5682", "tok-prod", "/ca.pem")
    t = config.resolve_target(None, {"MESHFED_API": "127.0.0.1:7681"}, cfg, **ENVS)
    assert (t.url, t.token, t.ca_file) == ("127.0.0.1:7681", "tok-dev", None)
    t = config.resolve_target("http://127.0.0.1:7681/", {"MESHFED_API": "x:1"}, cfg, **ENVS)
    assert t.token == "tok-dev"
    t = config.resolve_target(None, {}, config.MeshctlConfig(), **ENVS)
    assert (t.url, t.token) == ("http://d:1", None)


def test_a_token_goes_only_to_the_address_it_was_configured_for() -> None:
    t = config.resolve_target("http://elsewhere:5681", {}, two_planes(), **ENVS)
    assert (t.url, t.token, t.ca_file) == ("http://elsewhere:5681", None, None)
    # The environment's token is the user's explicit choice for this call.
    env = {"MESHFED_API_TOKEN": "explicit"}
    assert config.resolve_target("http://elsewhere:5681", env, two_planes(), **ENVS).token == (
        "explicit"
    )


def test_saved_owner_only_and_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "meshctl.yaml"
    config.save(path, two_planes())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds tokens
    assert config.load(path) == two_planes()
    data = yaml.safe_load(path.read_text())
    assert data["currentControlPlane"] == "prod"
    assert data["controlPlanes"][0]["auth"] == {"type": "tokens", "conf": {"token": "tok-prod"}}
    assert config.load(tmp_path / "absent.yaml") == config.MeshctlConfig()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1, 2]", "must be a mapping"),
        ("controlPlanes: {}", "controlPlanes must be a list"),
        ("controlPlanes: [{name: a}]", "needs a name and an address"),
        ("controlPlanes: [{name: a, address: 'ftp://x'}]", "invalid API URL"),
        ("controlPlanes: [{name: a, address: h:1, auth: {type: basic}}]", "auth.type"),
        ("controlPlanes: [{name: a, address: h:1, auth: {type: tokens}}]", "conf.token"),
        ("currentControlPlane: [x]", "currentControlPlane must be a string"),
        ("a: [", "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "meshctl.yaml"
    path.write_text(text)
    with pytest.raises(CliError) as err:
        config.load(path)
    assert says in err.value.message
    code, _, stderr = meshctl(path, "get", "meshes")
    assert code == 1 and says in stderr


def test_config_commands_add_list_use_view_remove(tmp_path: Path) -> None:
    cfg = tmp_path / "meshctl.yaml"
    code, out, err = meshctl(
        cfg,
        "config",
        "control-planes",
        "add",
        "--name",
        "prod",
        "--address",
        "prod.example:5681",
        "--auth-type",
        "tokens",
        "--auth-conf",
        "token=secret-token",
    )
    assert code == 0, err
    assert "'prod' (http://prod.example:5681); it is now current" in out
    code, _, _ = meshctl(
        cfg, "config", "control-planes", "add", "--name", "dev", "--address", "h:1"
    )
    assert code == 0
    code, out, _ = meshctl(cfg, "config", "control-planes", "list")
    assert [line.split() for line in out.splitlines()] == [
        ["ACTIVE", "NAME", "ADDRESS", "AUTH"],
        ["prod", "http://prod.example:5681", "token"],
        ["*", "dev", "http://h:1", "none"],
    ]
    assert meshctl(cfg, "config", "control-planes", "use", "prod")[0] == 0
    code, out, _ = meshctl(cfg, "config", "view")
    assert "secret-token" not in out and "REDACTED" in out
    assert yaml.safe_load(out)["currentControlPlane"] == "prod"
    assert meshctl(cfg, "config", "control-planes", "remove", "prod")[0] == 0
    assert config.load(cfg).current is None
    assert [cp.name for cp in config.load(cfg).control_planes] == ["dev"]


def test_config_file_flag_wins_over_the_environment(tmp_path: Path) -> None:
    chosen, env_file = tmp_path / "chosen.yaml", tmp_path / "env.yaml"
    argv = ("config", "control-planes", "add", "--name", "a", "--address", "h:1")
    assert meshctl(env_file, *argv, "--config-file", str(chosen))[0] == 0
    assert chosen.exists() and not env_file.exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--name", "Bad_Name"], "invalid control plane name"),
        (["--name", "a", "--auth-type", "tokens"], "needs --auth-conf token="),
        (["--name", "a", "--auth-conf", "token=x"], "--auth-conf needs --auth-type tokens"),
        (["--name", "a", "--auth-type", "tokens", "--auth-conf", "user=x"], "unknown key"),
        (["--name", "a", "--auth-type", "tokens", "--auth-conf", "nonsense"], "KEY=VALUE"),
        (["--name", "a", "--ca-cert-file", "/nonexistent/ca.pem"], "no such file"),
        (["--name", "taken"], "already exists"),
    ],
)
def test_add_refusals_change_nothing(tmp_path: Path, extra: list[str], says: str) -> None:
    cfg = tmp_path / "meshctl.yaml"
    base = ("config", "control-planes", "add", "--address", "h:1")
    assert meshctl(cfg, *base, "--name", "taken")[0] == 0
    before = cfg.read_bytes()
    code, _, err = meshctl(cfg, *base, *extra)
    assert code == 2 and says in err
    assert cfg.read_bytes() == before


def test_use_or_remove_of_an_unknown_plane_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "meshctl.yaml"
    for action in ("use", "remove"):
        code, _, err = meshctl(cfg, "config", "control-planes", action, "ghost")
        assert code == 2 and "no control plane 'ghost'" in err
    assert not cfg.exists()


def _comp(name: str, role: str, api: str, zone: str | None = None) -> ComponentRecord:
    return ComponentRecord(name, role, [], api, "/d", "/l", zone=zone)


def test_up_records_the_global_current_and_each_zone(tmp_path: Path) -> None:
    cfg = tmp_path / "meshctl.yaml"
    config.save(cfg, two_planes())
    comps = [
        _comp("global", ROLE_GLOBAL, "http://127.0.0.1:7001"),
        _comp("zone-1", ROLE_ZONE, "http://127.0.0.1:7002", "zone-1"),
        _comp("zone-2", ROLE_ZONE, "http://127.0.0.1:7003", "zone-2"),
    ]
    assert record(cfg, Path("/x/.meshfed/up"), comps, "T") == "up"
    got = config.load(cfg)
    assert got.current == "up"
    assert [(cp.name, cp.address, cp.token) for cp in got.control_planes] == [
        ("prod", "https://prod:5682", "tok-prod"),
        ("dev", "http://127.0.0.1:7681", "tok-dev"),
        ("up", "http://127.0.0.1:7001", "T"),
        ("up-zone-1", "http://127.0.0.1:7002", "T"),
        ("up-zone-2", "http://127.0.0.1:7003", "T"),
    ]
    # Another data directory is another set of control planes; the same one is replaced.
    record(cfg, Path("/y/Other Dir"), comps[:1], "U")
    record(cfg, Path("/x/.meshfed/up"), comps[:1], "T2")
    got = config.load(cfg)
    assert got.current == "up" and got.get("up") == config.ControlPlane("up", comps[0].api, "T2")
    assert got.get("other-dir") is not None
    assert plane_name(Path("/")) == "up"
