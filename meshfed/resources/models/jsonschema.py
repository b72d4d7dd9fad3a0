"""JSON Schemas of resource bodies, generated from the models, for `/openapi.json`.

All models are generated together so that a class name used twice gets one distinct name
each, and their `$defs` are hoisted to shared component schemas (`#/components/schemas/...`),
prefixed so that none can collide with a resource type's own component.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from meshfed.resources.descriptors import TypeDescriptor, load_model
from meshfed.resources.models.base import go_duration

DEF_PREFIX = "Spec."  # components/schemas/Spec.TimeoutConf, ...
REF_ROOT = "#/components/schemas/"


class _KumaDefaults(GenerateJsonSchema):
    """Defaults as a document writes them: durations as "5s", not ISO 8601."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return go_duration(dft)
        return super().encode_default(dft)


def spec_schemas(
    descriptors: Iterable[TypeDescriptor],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(type name -> the schema of its body, component name -> shared definition)."""
    typed = [d for d in descriptors if d.model]
    models: list[type[BaseModel]] = []
    for d in typed:
        model = load_model(d.model)
        if model not in models:
            models.append(model)
    keys, top = models_json_schema(
        [(m, "validation") for m in models],
        ref_template=REF_ROOT + DEF_PREFIX + "{model}",
        schema_generator=_KumaDefaults,
    )
    defs: dict[str, dict[str, Any]] = {
        DEF_PREFIX + name: schema for name, schema in top.get("$defs", {}).items()
    }
    bodies: dict[str, dict[str, Any]] = {}
    for d in typed:
        ref = keys[(load_model(d.model), "validation")]
        name = ref["$ref"].removeprefix(REF_ROOT)
        body = dict(defs[name])
        body.pop("title", None)
        bodies[d.name] = body
    return bodies, defs
