"""Small readers and writers every API family's translation shares (pure, no I/O).

* errors: :func:`bad` (an answer that is not what its protocol says), :func:`unsupported`
  (a request a family cannot express), :func:`policy_error` (content the vendor stopped);
* the request side: :func:`loc` (where a value sits, formatted only for an error),
  :func:`data_url`, :func:`tool_arguments`, :func:`text_parts`, :func:`decode_base64`;
* the answer side: OpenAI chunks (:func:`chunk`, :func:`usage_chunk`) and counts
  (:func:`int_of`).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from msgflux.exceptions import (
    APIResponseValidationError,
    ContentPolicyError,
    UnsupportedFeatureError,
)

__all__ = [
    "Where",
    "Who",
    "bad",
    "chunk",
    "data_url",
    "decode_base64",
    "fail",
    "int_of",
    "integer",
    "kind_of",
    "loads",
    "loc",
    "now",
    "one_of",
    "policy_error",
    "rename_model",
    "swap_model",
    "text_parts",
    "tool_arguments",
    "unsupported",
    "usage_chunk",
]

Who = tuple[str, str]
"""(provider, model_id) to name in errors."""


# -- checks of a client's request, shared by the families' decoders ---------------------------
def kind_of(value: Any) -> str:
    """``value``'s JSON type name, for an error message."""
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def fail(where: str, what: str, value: Any = ...) -> ValueError:
    """The error of a request field: ``where: what, got <value>``."""
    got = "" if value is ... else f", got {value!r:.60}"
    return ValueError(f"{where}: {what}{got}")


def integer(value: Any, where: str, low: int) -> int:
    if type(value) is not int or value < low:
        raise fail(where, f"must be an integer >= {low}", value)
    return value


def one_of(value: Any, where: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise fail(where, f"must be one of {', '.join(map(repr, accepted))}", value)
    return str(value)


def unsupported(provider: str, what: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(f"{provider} cannot {what}")


def bad(who: Who, what: str, body: Any = None) -> APIResponseValidationError:
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body[:500]).decode("utf-8", "replace")
    return APIResponseValidationError(what, provider=who[0], model_id=who[1], body=body)


def loads(content: bytes, who: Who) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise bad(who, f"the answer is not valid JSON: {exc}", content) from None


def policy_error(who: Who, what: str, body: Any) -> ContentPolicyError:
    return ContentPolicyError(what, provider=who[0], model_id=who[1], body=body)


Where = str | tuple[Any, ...]
"""Where a value sits in the request, for error messages: ``(2, "content", 0)`` is
``messages[2]['content'][0]``. A tuple is formatted only when an error needs it, so the
translation of a valid request never pays for the words."""


def loc(where: Where) -> str:
    if isinstance(where, str):
        return where
    head, *rest = where
    return f"messages[{head}]" + "".join(f"[{p!r}]" for p in rest)


def data_url(url: str, where: Where) -> tuple[str, str] | None:
    """``(mime type, base64 data)`` of a ``data:`` URL, None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not mime:
        raise ValueError(f"{loc(where)} must be a base64 data URL (data:<mime>;base64,...)")
    return mime, data


def tool_arguments(raw: Any, where: Where) -> dict[str, Any]:
    """An assistant tool call's ``function.arguments`` (a JSON object text) as a dict."""
    if type(raw) is dict:
        return raw
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise TypeError(f"{loc(where)} must be a JSON object text, got {type(raw).__name__}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"{loc(where)} is not valid JSON: {raw[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{loc(where)} must be a JSON object, got {raw[:80]!r}")
    return value


def text_parts(content: Any, where: Where, provider: str) -> list[str]:
    """The texts of a system or tool message's content (a str or text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(provider, f"take a {kind!r} part in {loc(where)}[{j}] (only text)")
        text = part.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{loc(where)}[{j}]['text'] must be a str")
        texts.append(text)
    return texts


def decode_base64(data: str, where: str) -> None:
    """Check that ``data`` is base64 (the vendor would refuse the request otherwise)."""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not valid base64") from None


def chunk(
    ident: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """One canonical (OpenAI) stream chunk."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(ident: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """The canonical usage-only chunk that ends a stream whose caller asked for usage."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def int_of(value: Any, who: Who, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(who, f"usage.{what} must be an int", value)
    return value


def now() -> int:
    return int(time.time())


def swap_model(
    data: bytes, payload: dict[str, Any], model: str, names: dict[Any, bytes], key: str = "model"
) -> bytes:
    """``data`` (the JSON text ``payload`` was parsed from) naming ``model`` in its top-level
    ``key``, the rest of the upstream's bytes kept.

    The pair ``"<key>":"<old>"`` is replaced in place when it occurs exactly once (a quote
    inside a JSON string is escaped, so the pair can only be the key itself); otherwise
    (spaces, escapes, a second occurrence) the payload is encoded again. ``names`` caches the
    encoded pairs across the events of one stream.
    """
    old = payload.get(key)
    if old is None or old == model:
        return data
    pattern = names.get(old)
    if pattern is None:
        pattern = names[old] = f'"{key}":'.encode() + orjson.dumps(old)
    if data.count(pattern) == 1:
        new = names.get(model)
        if new is None:
            new = names[model] = f'"{key}":'.encode() + orjson.dumps(model)
        return data.replace(pattern, new)
    payload[key] = model
    return orjson.dumps(payload)


def rename_model(data: bytes, model: str, names: dict[Any, bytes], key: str = "model") -> bytes:
    """:func:`swap_model` for text not parsed yet."""
    payload = orjson.loads(data)
    if type(payload) is not dict:
        return data
    return swap_model(data, payload, model, names, key)
