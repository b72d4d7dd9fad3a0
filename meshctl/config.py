"""meshctl's configuration file, like kumactl's: control planes and the current one.

The file (default `~/.meshfed/meshctl.yaml`; env `MESHCTL_CONFIG`; flag `--config-file`)
holds each control plane's name, API address, user token and optional CA file (for https),
and which control plane is current. It holds tokens, so it is written readable by its owner
only, through a temporary file and a rename (a reader never sees half a file).

Which API a command talks to: `--api`, else `MESHFED_API`, else the current control plane's
address, else the default. Which token it sends: `MESHFED_API_TOKEN`, else the token of the
configured control plane whose address is the one talked to (so a token is only ever sent
to the address it was configured for, never to whatever `--api` names), else none.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from meshctl.client import normalize_base_url
from meshctl.errors import EXIT_USAGE, CliError

CONFIG_ENV = "MESHCTL_CONFIG"
DEFAULT_CONFIG = Path("~/.meshfed/meshctl.yaml")
AUTH_TYPES = ("tokens",)  # Kuma's user-token authentication; the only one meshfed has
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ControlPlane:
    name: str
    address: str  # normalized: scheme://host[:port][/prefix]
    token: str | None = None
    ca_cert_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "address": self.address}
        if self.ca_cert_file:
            out["caCertFile"] = self.ca_cert_file
        if self.token:
            out["auth"] = {"type": "tokens", "conf": {"token": self.token}}
        return out


@dataclass(frozen=True)
class MeshctlConfig:
    control_planes: tuple[ControlPlane, ...] = ()
    current: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys of later versions, kept

    def get(self, name: str) -> ControlPlane | None:
        return next((cp for cp in self.control_planes if cp.name == name), None)

    def current_plane(self) -> ControlPlane | None:
        return self.get(self.current) if self.current else None

    def for_address(self, url: str) -> ControlPlane | None:
        """The control plane configured for exactly this address (the current one first)."""
        url = normalize_base_url(url)
        current = self.current_plane()
        if current is not None and current.address == url:
            return current
        return next((cp for cp in self.control_planes if cp.address == url), None)

    def with_plane(self, cp: ControlPlane, *, overwrite: bool, make_current: bool) -> MeshctlConfig:
        if self.get(cp.name) is not None and not overwrite:
            raise CliError(
                f"control plane {cp.name!r} already exists",
                EXIT_USAGE,
                ["pass --overwrite to replace it"],
            )
        planes = [p for p in self.control_planes if p.name != cp.name]
        index = next((i for i, p in enumerate(self.control_planes) if p.name == cp.name), None)
        planes.insert(len(planes) if index is None else index, cp)
        return replace(
            self, control_planes=tuple(planes), current=cp.name if make_current else self.current
        )

    def without(self, name: str) -> MeshctlConfig:
        if self.get(name) is None:
            raise CliError(f"no control plane {name!r} in the configuration", EXIT_USAGE)
        planes = tuple(p for p in self.control_planes if p.name != name)
        return replace(
            self, control_planes=planes, current=None if self.current == name else self.current
        )

    def using(self, name: str) -> MeshctlConfig:
        if self.get(name) is None:
            known = ", ".join(p.name for p in self.control_planes) or "none"
            raise CliError(
                f"no control plane {name!r} in the configuration (known: {known})", EXIT_USAGE
            )
        return replace(self, current=name)

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        planes = []
        for cp in self.control_planes:
            item = cp.to_dict()
            if redact and "auth" in item:
                item["auth"] = {"type": "tokens", "conf": {"token": "REDACTED"}}
            planes.append(item)
        out: dict[str, Any] = {"controlPlanes": planes}
        if self.current:
            out["currentControlPlane"] = self.current
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}


def config_path(flag: str | None, environ: Mapping[str, str]) -> Path:
    """`--config-file`, else `MESHCTL_CONFIG`, else `~/.meshfed/meshctl.yaml`."""
    chosen = flag or environ.get(CONFIG_ENV) or ""
    return Path(chosen).expanduser() if chosen else DEFAULT_CONFIG.expanduser()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise CliError(
            f"invalid control plane name {name!r}: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (at most 63)",
            EXIT_USAGE,
        )
    return name


def parse_config(data: Any, where: str) -> MeshctlConfig:
    """The configuration in `data` (parsed YAML); CliError naming the bad field."""
    if data is None:
        return MeshctlConfig()
    if not isinstance(data, dict):
        raise CliError(f"{where}: the configuration must be a mapping")
    raw_planes = data.get("controlPlanes")
    raw_planes = [] if raw_planes is None else raw_planes
    if not isinstance(raw_planes, list):
        raise CliError(f"{where}: controlPlanes must be a list")
    planes: list[ControlPlane] = []
    for i, item in enumerate(raw_planes):
        at = f"{where}: controlPlanes[{i}]"
        if not isinstance(item, dict):
            raise CliError(f"{at} must be a mapping")
        name, address = item.get("name"), item.get("address")
        if not isinstance(name, str) or not isinstance(address, str):
            raise CliError(f"{at} needs a name and an address (strings)")
        ca = item.get("caCertFile")
        if ca is not None and not isinstance(ca, str):
            raise CliError(f"{at}.caCertFile must be a string")
        try:
            address = normalize_base_url(address)
        except CliError as exc:
            raise CliError(f"{at}.address: {exc.message}") from None
        planes.append(ControlPlane(name, address, _token(item, at), ca))
    current = data.get("currentControlPlane")
    if current is not None and not isinstance(current, str):
        raise CliError(f"{where}: currentControlPlane must be a string")
    extra = {k: v for k, v in data.items() if k not in ("controlPlanes", "currentControlPlane")}
    return MeshctlConfig(tuple(planes), current, extra)


def _token(item: dict[str, Any], at: str) -> str | None:
    auth = item.get("auth")
    if auth is None:
        return None
    if not isinstance(auth, dict) or auth.get("type") not in AUTH_TYPES:
        raise CliError(f"{at}.auth.type must be one of {', '.join(AUTH_TYPES)}")
    conf = auth.get("conf")
    token = conf.get("token") if isinstance(conf, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise CliError(f"{at}.auth.conf.token must be a non-empty string")
    return token.strip()


def load(path: Path) -> MeshctlConfig:
    """The configuration at `path`; an absent file is an empty configuration."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MeshctlConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the meshctl configuration {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"the meshctl configuration {path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def save(path: Path, config: MeshctlConfig) -> None:
    """Writes the configuration readable by its owner only (it holds tokens), atomically."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise CliError(f"cannot write the meshctl configuration {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp creates it 0600
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CliError(f"cannot write the meshctl configuration {path}: {exc}") from None


@dataclass(frozen=True)
class Target:
    """Where a command talks to and with what credentials."""

    url: str
    token: str | None
    ca_file: str | None


def resolve_target(
    api_flag: str | None,
    environ: Mapping[str, str],
    config: MeshctlConfig,
    *,
    api_env: str,
    token_env: str,
    default_api: str,
) -> Target:
    """Address: flag > env > current control plane > default. Token: env > the control plane
    configured for that address. CA file: that control plane's."""
    current = config.current_plane()
    url = api_flag or environ.get(api_env) or (current.address if current else default_api)
    cp = config.for_address(url)
    token = environ.get(token_env) or (cp.token if cp else None)
    return Target(url, token or None, cp.ca_cert_file if cp else None)
