"""Reading compose/ for its tests: the compose file's services and command lines, the
bootstrap script's meshctl calls, the Dockerfile's instructions, and the options a program's
`--help` documents (run as a real process)."""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO, VENV_BIN

COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
BOOTSTRAP = COMPOSE_DIR / "bootstrap.sh"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROGRAMS = ("global-cp", "zone-cp", "zone-ingress", "mesh-dp", "meshctl")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(load_compose()["services"])


def argv(service: dict[str, Any]) -> list[str]:
    """A service's command as a list (the compose file writes them all as lists)."""
    command = service["command"]
    assert isinstance(command, list), f"write {command!r} as a list"
    return [str(a) for a in command]


def flag_values(args: list[str]) -> dict[str, str]:
    """`--flag value` pairs of a command line (every option here takes one value)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            name, eq, value = args[i].partition("=")
            if eq:
                out[name] = value
                i += 1
            else:
                out[name] = args[i + 1]
                i += 2
        else:
            i += 1
    return out


def flags_used(args: list[str]) -> list[str]:
    return [a.partition("=")[0] for a in args if a.startswith("-") and len(a) > 1]


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def url_host_port(url: str) -> tuple[str, int]:
    return host_port(url.split("://", 1)[1].rstrip("/"))


def static_ip(service: dict[str, Any], network: str = "mesh") -> str | None:
    nets = service.get("networks") or {}
    if isinstance(nets, dict):
        conf = nets.get(network) or {}
        address = conf.get("ipv4_address")
        return None if address is None else str(ipaddress.IPv4Address(address))
    return None


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only) of a service's volumes (short syntax)."""
    out = {}
    for spec in service.get("volumes") or []:
        parts = str(spec).split(":")
        source, target = parts[0], parts[1]
        out[target] = (source, len(parts) > 2 and "ro" in parts[2].split(","))
    return out


# -- the bootstrap script -------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One credential the bootstrap writes: `issue FILE meshctl ...` (FILE under $OUT)."""

    file: str  # relative to the output directory
    meshctl: list[str]  # the meshctl command line, "meshctl" first


def script_lines(path: Path = BOOTSTRAP) -> list[list[str]]:
    """The script's simple command lines, split as the shell would (comments dropped)."""
    out = []
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def meshctl_calls(path: Path = BOOTSTRAP) -> list[list[str]]:
    return [words[words.index("meshctl") :] for words in script_lines(path) if "meshctl" in words]


def issued(path: Path = BOOTSTRAP) -> dict[str, Issued]:
    """Every credential file the bootstrap issues, by its name under the output directory."""
    out = {}
    for words in script_lines(path):
        if words[0] == "issue":
            file = words[1].removeprefix("$OUT/")
            out[file] = Issued(file, words[2:])
    return out


def script_default(name: str, path: Path = BOOTSTRAP) -> str:
    """The default of `NAME=${BOOTSTRAP_...:-DEFAULT}` in the script."""
    match = re.search(rf"^{name}=\$\{{\w+:-([^}}]*)\}}$", path.read_text(), re.M)
    assert match, f"no default for {name} in {path}"
    return match.group(1)


# -- --help ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Help:
    text: str  # whitespace-normalised
    flags: frozenset[str]
    env: frozenset[str]
    commands: frozenset[str]  # the positional choices ({run}, or meshctl's COMMAND list)


@functools.cache
def program_help(*command: str) -> Help:
    """`command --help`, run for real; `command` starts with a console script of the venv or
    `python`."""
    exe = str(VENV_BIN / "python") if command[0] == "python" else str(VENV_BIN / command[0])
    result = subprocess.run(
        [exe, *command[1:], "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, (command, result.stderr)
    text = " ".join(result.stdout.split())
    flags = frozenset(
        flag
        for line in result.stdout.splitlines()
        if re.match(r"\s{2,}-", line)
        # the option column only: "  -m MESH, --mesh MESH   help text"
        for flag in re.findall(
            r"(?<![\w-])(--?[A-Za-z][\w-]*)", re.split(r"\s{2,}", line.strip())[0]
        )
    )
    env = frozenset(re.findall(r"\benv:? (MESH\w+)", text))
    choices: set[str] = set()
    for group in re.findall(r"\{([\w,-]+)\}", result.stdout):
        choices.update(group.split(","))
    # meshctl lists its commands one per line under "positional arguments"
    choices.update(re.findall(r"^ {4}([a-z][\w-]*) ", result.stdout, re.M))
    return Help(text, flags, env, frozenset(choices))


# -- the Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out
