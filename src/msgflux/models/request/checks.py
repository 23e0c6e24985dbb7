"""Checks of a request's fields and call options, before any attempt.

A caller's mistake raises ``TypeError`` or ``ValueError`` naming the field and what it accepts
(``temperature must be a number between 0 and 2, got 3``), so it never counts against a
deployment. :data:`FIELD_CHECKS` holds the OpenAI chat fields we know; fields not in it pass
through untouched (vendor extensions).

Separate from the builders: msgflux-style arguments (:func:`~msgflux.models.request.chat_request`)
and an OpenAI body (:func:`~msgflux.models.request.from_openai`) are checked by the same table.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from msgflux.models._checks import check_timeout, type_name

__all__ = [
    "CHAT_FIELDS",
    "EMBEDDING_FIELDS",
    "FIELD_CHECKS",
    "IMAGE_FIELDS",
    "MODERATION_FIELDS",
    "SPEECH_FIELDS",
    "TRANSCRIPTION_FIELDS",
    "body_fields",
    "call_options",
    "check_fields",
    "check_integer",
    "check_number",
    "check_tool_choice",
    "extra_body_fields",
]


def check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    if not (low <= value <= high):  # also rejects NaN
        raise ValueError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")


def check_integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    accepted = f"an int >= {low}" + (f" and <= {high}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def _of(name: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {type_name(value)}")


def _stop(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise TypeError(f"{name} must be a str or a list of str, got {value!r}")


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise TypeError(
            f"{name} must be a list of tool dicts like {{'type': 'function', 'function': "
            f"{{'name': ..., 'parameters': {{...}}}}}}, got {value!r:.80}"
        )


def check_tool_choice(name: str, value: Any) -> None:
    if isinstance(value, dict):
        return
    if isinstance(value, str) and value in ("auto", "required", "none"):
        return
    raise TypeError(
        f"{name} must be 'auto', 'required', 'none' or a dict naming a function, got {value!r}"
    )


def _response_format(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise TypeError(
            f"{name} must be a dict like {{'type': 'json_object'}} or "
            f"{{'type': 'json_schema', 'json_schema': {{...}}}}, got {value!r:.80}"
        )


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _messages(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of message dicts, got {type_name(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise TypeError(
                f"{name}[{i}] must be a dict like {{'role': 'user', 'content': '...'}}, "
                f"got {type_name(message)}"
            )
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(
                f"{name}[{i}]['role'] must be one of {', '.join(_ROLES)}, got {role!r}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise TypeError(
                f"{name}[{i}]['content'] must be a str, a list of content parts or None, "
                f"got {type_name(content)}"
            )


FIELD_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "messages": _messages,
    "temperature": lambda n, v: check_number(n, v, 0, 2),
    "top_p": lambda n, v: check_number(n, v, 0, 1),
    "presence_penalty": lambda n, v: check_number(n, v, -2, 2),
    "frequency_penalty": lambda n, v: check_number(n, v, -2, 2),
    "max_tokens": lambda n, v: check_integer(n, v, 1),
    "max_completion_tokens": lambda n, v: check_integer(n, v, 1),
    "n": lambda n, v: check_integer(n, v, 1, 128),
    "seed": lambda n, v: check_integer(n, v, -(2**63), 2**63 - 1),
    "top_logprobs": lambda n, v: check_integer(n, v, 0, 20),
    "logprobs": lambda n, v: _of(n, v, bool, "a bool"),
    "parallel_tool_calls": lambda n, v: _of(n, v, bool, "a bool"),
    "store": lambda n, v: _of(n, v, bool, "a bool"),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": check_tool_choice,
    "response_format": _response_format,
    "user": lambda n, v: _of(n, v, str, "a str"),
    "reasoning_effort": lambda n, v: _of(n, v, str, "a str"),
    "stream_options": lambda n, v: _of(n, v, dict, "a dict like {'include_usage': True}"),
    "logit_bias": lambda n, v: _of(n, v, dict, "a dict of token id -> bias"),
    "metadata": lambda n, v: _of(n, v, dict, "a dict of str -> str"),
    "modalities": lambda n, v: _stop(n, v),
    "audio": lambda n, v: _of(n, v, dict, "a dict like {'voice': 'alloy', 'format': 'wav'}"),
}
"""Checks of the OpenAI chat fields we know (None values are dropped before checking)."""


def check_fields(
    fields: Mapping[str, Any], checks: Mapping[str, Callable[[str, Any], None]]
) -> None:
    for name, value in fields.items():
        check = checks.get(name)
        if check is not None:
            check(name, value)


def call_options(
    timeout: Any, first_chunk_timeout: Any, idle_timeout: Any, extra_headers: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if timeout is not None:
        out["timeout"] = check_timeout(timeout, "timeout")
    if first_chunk_timeout is not None:
        out["first_chunk_timeout"] = check_timeout(first_chunk_timeout, "first_chunk_timeout")
    if idle_timeout is not None:
        out["idle_timeout"] = check_timeout(idle_timeout, "idle_timeout")
    if extra_headers is not None:
        if not isinstance(extra_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra_headers.items()
        ):
            raise TypeError(
                f"extra_headers must be a dict of str -> str, got {extra_headers!r:.80}"
            )
        out["extra_headers"] = dict(extra_headers)
    return out


def extra_body_fields(extra_body: Any) -> dict[str, Any]:
    if extra_body is None:
        return {}
    if not isinstance(extra_body, dict):
        raise TypeError(f"extra_body must be a dict of vendor fields, got {type_name(extra_body)}")
    return extra_body


CHAT_FIELDS = frozenset(
    (
        *FIELD_CHECKS,
        "prediction",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "web_search_options",
        "functions",
        "function_call",
    )
)
"""The OpenAI chat fields a msgflux-style call may give as keywords (vendor fields go in
``extra_body=``)."""
EMBEDDING_FIELDS = frozenset(("dimensions", "encoding_format", "user"))
MODERATION_FIELDS: frozenset[str] = frozenset()
SPEECH_FIELDS = frozenset(("voice", "response_format", "speed", "instructions", "stream_format"))
TRANSCRIPTION_FIELDS = frozenset(
    (
        "language",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities",
        "include",
        "chunking_strategy",
    )
)
IMAGE_FIELDS = frozenset(
    (
        "prompt",
        "n",
        "size",
        "quality",
        "style",
        "response_format",
        "background",
        "moderation",
        "output_format",
        "output_compression",
        "user",
    )
)


def body_fields(
    fields: dict[str, Any],
    reserved: tuple[str, ...],
    known: frozenset[str] | None = None,
    arguments: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The call's API fields (None values dropped). A keyword that is neither one of the
    API's ``known`` fields nor one of the builder's ``arguments`` raises ``TypeError`` naming
    it and the closest known name: a typo fails at once, not as a 400 at every deployment."""
    for name in reserved:
        if name in fields:
            raise TypeError(
                f"{name!r} is not a per-call field here; "
                + ("each deployment sets its own model id" if name == "model" else f"pass {name}=")
            )
    if known is not None:
        for name in fields:
            if name not in known:
                raise TypeError(_unknown(name, (*known, *arguments)))
    return {k: v for k, v in fields.items() if v is not None}


def _unknown(name: str, names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown keyword argument {name!r}{hint}; a vendor's own field goes in "
        f"extra_body={{{name!r}: ...}}"
    )
