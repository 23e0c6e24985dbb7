"""Structured output: a ``generation_schema`` class as the JSON schema providers take.

:func:`schema_of` turns a msgspec Struct or pydantic model class into a :class:`Schema` (root
inlined, cached per class); :func:`json_schema_format` is OpenAI's strict ``response_format``
for it (:func:`strict_schema` tightens a copy: every property required, no extra ones).

Separate from the builders: the tightening is JSON-schema work that knows nothing of calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from msgflux.models.request.canonical import Schema

__all__ = ["json_schema_format", "schema_and_decoder", "schema_of", "strict_schema"]


def schema_and_decoder(
    generation_schema: Any,
) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """A new JSON schema of a msgspec Struct or pydantic model class, and its JSON decoder."""
    schema = generation_schema
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        return msgspec.json.schema(schema), msgspec.json.Decoder(schema).decode
    if (
        isinstance(schema, type)
        and callable(getattr(schema, "model_json_schema", None))
        and callable(getattr(schema, "model_validate_json", None))
    ):
        model: Any = schema
        return model.model_json_schema(), model.model_validate_json
    raise TypeError(
        f"generation_schema must be a msgspec.Struct or pydantic.BaseModel subclass, got {schema!r}"
    )


_schemas: dict[type, Schema] = {}


def schema_of(generation_schema: Any) -> Schema:
    """The :class:`Schema` of a msgspec Struct or pydantic model class (cached per class)."""
    cached = _schemas.get(generation_schema) if isinstance(generation_schema, type) else None
    if cached is not None:
        return cached
    json_schema, decode = schema_and_decoder(generation_schema)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", generation_schema.__name__)[:64]
    result = Schema(name, _inline_root(json_schema), decode)
    _schemas[generation_schema] = result
    return result


def _inline_root(schema: dict[str, Any]) -> dict[str, Any]:
    """Providers want an object at the root, not msgspec's ``{"$ref": ...}``."""
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and isinstance(defs, dict) and ref.startswith("#/$defs/"):
        root = dict(defs[ref[len("#/$defs/") :]])
        rest = {k: v for k, v in defs.items() if k != ref[len("#/$defs/") :]}
        if rest or _refers(root, ref):
            root["$defs"] = defs
        return root
    return schema


def _refers(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers(v, ref) for v in node)
    return False


def strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A copy made OpenAI-strict (every property required, no extra ones), and whether that
    was possible (open dicts cannot be strict)."""
    node = _copy(schema)
    return node, _strictify(node)


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _strictify(node: Any) -> bool:
    ok = True
    if isinstance(node, dict):
        node.pop("default", None)
        if node.get("type") == "object":
            properties = node.get("properties")
            extra = node.get("additionalProperties")
            if isinstance(properties, dict) and extra in (None, False):
                node["additionalProperties"] = False
                node["required"] = list(properties)
            else:
                ok = False
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for sub in value.values():
                    ok = _strictify(sub) and ok
            elif key in ("items", "additionalProperties", "not"):
                ok = _strictify(value) and ok
            elif key in ("anyOf", "allOf", "oneOf", "prefixItems") and isinstance(value, list):
                for sub in value:
                    ok = _strictify(sub) and ok
    return ok


_strict_formats: dict[int, dict[str, Any]] = {}


def json_schema_format(schema: Schema) -> dict[str, Any]:
    """OpenAI's ``response_format`` for ``schema`` (strict when the schema allows it)."""
    key = id(schema)
    cached = _strict_formats.get(key)
    if cached is None:
        strict, ok = strict_schema(schema.json_schema)
        cached = {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": strict, "strict": ok},
        }
        _strict_formats[key] = cached
    return cached
