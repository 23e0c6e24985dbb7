"""The cache key of a request, and whether a request may be cached at all. Pure: no I/O.

A key is the SHA-256 of the request in its API family, normalised so that requests asking the
same thing share it: keys in any order, a top-level null the same as an absent field, the
family's defaults made explicit (no ``temperature`` is ``temperature: 1``, a sampling
field's ``1.0`` is ``1``, chat's ``max_tokens`` is ``max_completion_tokens``), ``stream`` and
``stream_options`` ignored (a stream and a whole answer share one entry). The family's own
request headers (``anthropic-beta``) count, and so does the gateway's *scope*
(:func:`scope_of`: its name and its deployments, parameters included), so a config change
never serves an answer that the new deployments did not give. Any other difference (one
message, one tool, another ``model``) is another key.

Which requests are not cached (:func:`bypass_reason`): one asking for several answers
(``n > 1``, Gemini's ``candidateCount > 1``), and one *sampled*: ``temperature > 0`` with no
``seed``, where a second call is expected to answer differently. An absent temperature is the
deployments' own when every deployment sets one, else the family's default of 1, so by
default only ``temperature: 0`` or seeded requests are cached; ``cache_sampled=True`` lifts
that rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from msgflux.formats import CHAT, GEMINI, MESSAGES, RESPONSES
from msgflux.models.request import Request

__all__ = ["CANONICAL", "DEFAULTS", "bypass_reason", "request_key", "scope_of"]

CANONICAL = "canonical"
"""The family name keyed for a request with no client body (msgflux-style calls)."""

_NUMBERS = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty", "top_k")
"""Top-level numbers whose ``1.0`` is ``1`` (the sampling fields)."""

_CHAT_DEFAULTS: dict[str, Any] = {
    "temperature": 1,
    "top_p": 1,
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "parallel_tool_calls": True,
    "response_format": {"type": "text"},
    "store": False,
}

DEFAULTS: dict[str, dict[str, Any]] = {
    CHAT: _CHAT_DEFAULTS,
    CANONICAL: _CHAT_DEFAULTS,
    MESSAGES: {"temperature": 1},
    RESPONSES: {
        "temperature": 1,
        "top_p": 1,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "truncation": "disabled",
        "store": True,
        "text": {"format": {"type": "text"}},
    },
    GEMINI: {},
}
"""Each family's top-level defaults (what the vendor's API assumes when a field is absent)."""

_NONE: dict[str, Any] = {}

_TOOL_CHOICE: dict[str, tuple[Any, Any]] = {
    CHAT: ("auto", "none"),
    CANONICAL: ("auto", "none"),
    MESSAGES: ({"type": "auto"}, None),
}
"""The family's ``tool_choice`` when absent: (with tools, without tools)."""


def scope_of(name: str | None, deployments: Sequence[tuple[str, Any]]) -> bytes:
    """The digest of a gateway's scope: its ``name`` and each deployment's ``(model_name,
    model.serialize())`` in order (model, provider, base URL, sampling parameters; never a
    key). A value that is not JSON counts by its ``str``."""
    data = orjson.dumps([name, [list(d) for d in deployments]], default=str)
    return hashlib.sha256(data).digest()


def _normalised(family: str, body: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if v is not None}
    out.pop("stream", None)
    out.pop("stream_options", None)
    for name in _NUMBERS:
        value = out.get(name)
        if type(value) is float and value.is_integer():
            out[name] = int(value)
    if family in (CHAT, CANONICAL) and "max_tokens" in out:
        out.setdefault("max_completion_tokens", out.pop("max_tokens"))
    for name, value in DEFAULTS.get(family, _NONE).items():
        if name not in out:
            out[name] = value
    choice = _TOOL_CHOICE.get(family)
    if choice is not None and "tool_choice" not in out:
        default = choice[0] if out.get("tools") else choice[1]
        if default is not None:
            out["tool_choice"] = default
    return out


def request_key(scope: bytes, req: Request) -> str:
    """The hex SHA-256 key of ``req`` within ``scope`` (see the module docstring)."""
    native = req.native
    if native is not None:
        family, body, headers = native.family, native.body, native.headers
    else:
        family, body, headers = CANONICAL, req.body, req.extra_headers
    material = orjson.dumps(
        [family, _normalised(family, body), headers or {}], option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.sha256(scope)
    digest.update(material)
    return digest.hexdigest()


def _config(family: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where the family keeps its sampling fields (Gemini: ``generationConfig``)."""
    if family != GEMINI:
        return body
    config = body.get("generationConfig")
    return config if isinstance(config, Mapping) else {}


def bypass_reason(req: Request, temperature: float | None, sampled: bool) -> str | None:
    """Why ``req`` must not be cached, or None (see the module docstring). ``temperature``:
    the deployments' own when the request sets none (None: the family's default, 1), which
    only the msgflux-style path applies (a request in its API's form goes to a deployment of
    that API as it is, so without one it is sampled at the API's default);
    ``sampled``: cache sampled requests too."""
    native = req.native
    family, body = (native.family, native.body) if native is not None else (CANONICAL, req.body)
    fields = _config(family, body)
    count = fields.get("candidateCount" if family == GEMINI else "n")
    if isinstance(count, (int, float)) and not isinstance(count, bool) and count > 1:
        return "several answers asked (n > 1)"
    if sampled:
        return None
    value = fields.get("temperature")
    if value is None:
        value = 1 if temperature is None or native is not None else temperature
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "temperature is not a number"
    if value > 0 and fields.get("seed") is None:
        return "sampled (temperature > 0 and no seed)"
    return None
