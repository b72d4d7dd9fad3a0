"""Descriptors name their model and load it on first use: the registry (which the proxies
import) never loads pydantic, and every named model exists."""

from __future__ import annotations

import subprocess
import sys

from pydantic import BaseModel

from meshfed.resources.descriptors import load_model
from meshfed.resources.types import default_registry

PROBE = """
import sys
from meshfed.resources.codec import resource_to_dict
from meshfed.resources.types import default_registry
registry = default_registry()
print("pydantic" in sys.modules)
"""


def test_the_registry_does_not_load_pydantic() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_every_descriptor_names_a_model_that_exists() -> None:
    for desc in default_registry():
        assert desc.model, desc.name
        assert issubclass(load_model(desc.model), BaseModel), desc.name


def test_parse_gives_typed_access_with_kuma_defaults() -> None:
    desc = default_registry().get("Zone")
    assert desc.parse({}).enabled is True
    assert desc.parse({"enabled": False}).enabled is False
