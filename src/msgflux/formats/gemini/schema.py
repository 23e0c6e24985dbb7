"""JSON Schema <-> the OpenAPI subset Gemini's ``responseSchema`` and function ``parameters``
take, both ways.

:func:`gemini_schema` is what a canonical request's schemas go through on their way to
Gemini (``structured_output="json_schema"`` sends them unchanged as ``responseJsonSchema`` /
``parametersJsonSchema`` instead); :func:`json_schema` is the way back, for a Gemini request
answered by another family. The subset is smaller than JSON Schema, so the way there loses
what it lacks (``additionalProperties``, ``$defs`` once inlined, ``default``) and the way
back gives the JSON Schema of what is left: a schema without those keywords makes the round
trip unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import unsupported

__all__ = ["cached_schema", "gemini_schema", "json_schema"]

NAME = "Gemini"

_SCHEMA_KEYS = (
    "description",
    "title",
    "enum",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
)
_STRING_FORMATS = ("enum", "date-time")


# -- JSON Schema -> Gemini's OpenAPI subset -------------------------------------------------------
def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (JSON Schema) in the OpenAPI subset ``responseSchema`` and function
    ``parameters`` take: ``$ref`` inlined, ``["T", "null"]``/``anyOf [.., null]`` as
    ``nullable``, upper-case types, ``propertyOrdering`` in the schema's order, keywords the
    subset lacks (``additionalProperties``, ``$defs``, ``default``) dropped."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return _convert(schema, defs, ())


def _convert(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise TypeError(f"a JSON schema node must be an object, got {node!r:.60}")
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise unsupported(
                NAME,
                f"take the recursive schema {name!r} as responseSchema "
                "(structured_output='json_schema' sends it as JSON Schema)",
            )
        target = defs.get(name)
        if not isinstance(target, dict):
            raise ValueError(f"the JSON schema refers to {ref!r}, which it does not define")
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, (*seen, name))
    out: dict[str, Any] = {}
    nullable = False
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        nullable = len(kinds) < len(kind)
        if len(kinds) == 1:
            kind = kinds[0]
        else:
            out["anyOf"] = [_convert({**node, "type": k}, defs, seen) for k in kinds]
            kind = None
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list):
        real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = nullable or len(real) < len(options)
        if len(real) == 1:
            out.update(_convert(real[0], defs, seen))
        else:
            out["anyOf"] = [_convert(o, defs, seen) for o in real]
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        out.update(_convert(all_of[0], defs, seen))
    if isinstance(kind, str):
        out["type"] = kind.upper()
    for key in _SCHEMA_KEYS:
        if key in node:
            out[key] = node[key]
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in out:
        if not all(isinstance(v, str) for v in out["enum"]):
            raise unsupported(
                NAME,
                "take a non-string enum in responseSchema "
                "(structured_output='json_schema' sends it as JSON Schema)",
            )
        out.setdefault("type", "STRING")
    fmt = node.get("format")
    if isinstance(fmt, str) and (kind != "string" or fmt in _STRING_FORMATS):
        out["format"] = fmt
    properties = node.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {k: _convert(v, defs, seen) for k, v in properties.items()}
        out["propertyOrdering"] = list(properties)
        if isinstance(node.get("required"), list):
            out["required"] = node["required"]
    items = node.get("items")
    if isinstance(items, dict):
        out["items"] = _convert(items, defs, seen)
    if nullable:
        out["nullable"] = True
    return out


_converted: dict[bytes, dict[str, Any]] = {}


def cached_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """:func:`gemini_schema`, remembered by the schema's JSON text: the same tools and
    ``generation_schema`` come with every call, and a schema changed in place is a new key."""
    try:
        key = orjson.dumps(schema)
    except TypeError:
        return gemini_schema(schema)
    converted = _converted.get(key)
    if converted is None:
        converted = gemini_schema(orjson.loads(key))
        if len(_converted) >= 512:
            _converted.clear()
        _converted[key] = converted
    return converted


# -- Gemini's OpenAPI subset -> JSON Schema -------------------------------------------------------
_KEPT = (*_SCHEMA_KEYS, "format", "required", "default", "example")
_CAMEL = {
    "any_of": "anyOf",
    "property_ordering": "propertyOrdering",
    "min_items": "minItems",
    "max_items": "maxItems",
    "min_length": "minLength",
    "max_length": "maxLength",
    "min_properties": "minProperties",
    "max_properties": "maxProperties",
}
"""The schema keywords Gemini also takes in snake case (its REST API reads both)."""


def json_schema(schema: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of a Gemini ``Schema`` (``where``: its path, for errors): lower-case
    types, ``nullable`` as a ``"null"`` type (or ``anyOf`` member), ``propertyOrdering`` as the
    order of ``properties``; ``TYPE_UNSPECIFIED`` says nothing. A malformed node raises
    ``ValueError`` naming its path."""
    if type(schema) is not dict:
        raise ValueError(f"{where}: must be an object (a Schema)")
    node = {_CAMEL.get(k, k): v for k, v in schema.items()}
    out: dict[str, Any] = {}
    kind = node.get("type")
    nullable = node.get("nullable") is True
    if kind is not None:
        if type(kind) is not str:
            raise ValueError(f"{where}.type: must be a string, got {kind!r:.60}")
        kind = kind.lower()
        if kind != "type_unspecified":
            out["type"] = [kind, "null"] if nullable else kind
    options = node.get("anyOf")
    if options is not None:
        if type(options) is not list:
            raise ValueError(f"{where}.anyOf: must be an array of schemas")
        out["anyOf"] = [json_schema(o, f"{where}.anyOf.{k}") for k, o in enumerate(options)]
        if nullable and "type" not in out:
            out["anyOf"].append({"type": "null"})
    for key in _KEPT:
        if key in node:
            out[key] = node[key]
    properties = node.get("properties")
    if properties is not None:
        if type(properties) is not dict:
            raise ValueError(f"{where}.properties: must be an object of schemas")
        order = node.get("propertyOrdering")
        names = [n for n in order if n in properties] if type(order) is list else []
        names += [n for n in properties if n not in names]
        out["properties"] = {
            n: json_schema(properties[n], f"{where}.properties.{n}") for n in names
        }
    if "items" in node:
        out["items"] = json_schema(node["items"], f"{where}.items")
    return out
