"""Fails when the locks in requirements/ are stale against pyproject.toml.

A lock is stale when pyproject.toml asks for a package the lock does not pin, or pins it at a
version outside the range pyproject.toml allows, or when main.txt and dev.txt disagree on a
version (installing dev on top of main must change nothing). `make lock` fixes all of these.
Usage: python scripts/check_lock.py [REPO_DIR]
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")


def read_pins(text: str) -> tuple[dict[str, Version], list[str]]:
    """Pins of a lock (name -> version) and the problems found reading it."""
    pins: dict[str, Version] = {}
    problems: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line or line[0] in " #\t":
            continue
        m = _PIN.match(line)
        if m is None:
            problems.append(f"line {i + 1} is not an exact pin: {line!r}")
            continue
        name, version = canonicalize_name(m.group(1)), Version(m.group(2))
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if "--hash=sha256:" not in nxt:
            problems.append(f"{name}=={version} has no hash")
        if m.group(3) is not None:
            Marker(m.group(3))  # a pin with a marker applies to some platforms only
        pins[name] = version
    return pins, problems


def wanted(pyproject: dict[str, object], extras: list[str]) -> list[Requirement]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        reqs += optional.get(extra, [])
    build = pyproject.get("build-system", {})
    assert isinstance(build, dict)
    reqs += build.get("requires", [])
    return [Requirement(r) for r in reqs]


def check(repo: Path) -> list[str]:
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    problems: list[str] = []
    locks = {"main.txt": ["speed"], "dev.txt": ["dev", "speed"]}
    pinned: dict[str, dict[str, Version]] = {}
    for lock, extras in locks.items():
        path = repo / "requirements" / lock
        if not path.exists():
            problems.append(f"requirements/{lock} is missing")
            continue
        pins, bad = read_pins(path.read_text())
        pinned[lock] = pins
        problems += [f"requirements/{lock}: {p}" for p in bad]
        for req in wanted(pyproject, extras):
            if req.marker is not None and not req.marker.evaluate():
                continue
            name = canonicalize_name(req.name)
            if name not in pins:
                problems.append(f"requirements/{lock} does not pin {req.name} ({req})")
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append(
                    f"requirements/{lock} pins {name}=={pins[name]}, outside pyproject's {req}"
                )
    main, dev = pinned.get("main.txt", {}), pinned.get("dev.txt", {})
    for pin, version in main.items():
        if pin in dev and dev[pin] != version:
            problems.append(f"{pin} is {version} in main.txt but {dev[pin]} in dev.txt")
    return problems


def main() -> int:
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(repo)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print("the locks are stale against pyproject.toml: run 'make lock'", file=sys.stderr)
        return 1
    print("requirements/*.txt agree with pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
