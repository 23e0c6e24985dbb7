"""Building a :class:`~msgflux.models.request.Request`: from msgflux-style arguments (one
builder per request kind, :data:`BUILDERS`) or from an OpenAI JSON body (:func:`from_openai`,
what the server uses).

:func:`chat_request` turns ``messages``, ``system_prompt``, ``prefilling``,
``generation_schema``, ``tool_schemas`` and ``tool_choice`` into OpenAI fields; every builder
checks its fields (:mod:`msgflux.models.request.checks`) once, before any attempt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from msgflux.models._checks import check_str, type_name
from msgflux.models.request.canonical import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
    Request,
)
from msgflux.models.request.checks import (
    CHAT_FIELDS,
    EMBEDDING_FIELDS,
    FIELD_CHECKS,
    IMAGE_FIELDS,
    MODERATION_FIELDS,
    SPEECH_FIELDS,
    TRANSCRIPTION_FIELDS,
    body_fields,
    call_options,
    check_fields,
    check_integer,
    check_number,
    check_tool_choice,
    extra_body_fields,
)
from msgflux.models.request.schema import json_schema_format, schema_of

__all__ = [
    "BUILDERS",
    "TRANSCRIPT_FORMATS",
    "chat_messages",
    "chat_request",
    "embeddings_request",
    "from_openai",
    "image_request",
    "moderation_request",
    "read_audio",
    "speech_request",
    "transcription_request",
]


_COMMON_ARGUMENTS = ("timeout", "extra_headers", "extra_body")
_CHAT_ARGUMENTS = (
    "messages",
    "system_prompt",
    "prefilling",
    "stream",
    "generation_schema",
    "tool_schemas",
    "tool_choice",
    "first_chunk_timeout",
    "idle_timeout",
    *_COMMON_ARGUMENTS,
)
"""What a misspelt keyword is compared with, besides the API's fields."""


# -- msgflux's chat arguments ------------------------------------------------------------------
def chat_messages(
    messages: Any,
    system_prompt: Any,
    prefilling: Any = None,
    *,
    turn: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The conversation: a ``system_prompt`` turn, *messages*, a ``prefilling`` assistant turn.

    A str is one user turn. A list must hold dicts; without *turn* it is used as it is (not
    copied) when no system prompt or prefilling is added, with *turn* each message is replaced
    by ``turn(index, message)``. Raises ``ValueError`` when the conversation is empty.
    """
    if type(messages) is str or isinstance(messages, str):
        chat: list[dict[str, Any]] = [{"role": "user", "content": messages}]
    elif isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                raise _not_a_dict(messages)
        chat = messages if turn is None else [turn(i, m) for i, m in enumerate(messages)]
    else:
        raise TypeError(
            f"messages must be a str or a list of message dicts, got {type_name(messages)}"
        )
    if system_prompt is not None:
        check_str("system_prompt", system_prompt)
        chat = [{"role": "system", "content": system_prompt}, *chat]
    if prefilling is not None:
        check_str("prefilling", prefilling)
        chat = [*chat, {"role": "assistant", "content": prefilling}]
    if not chat:
        raise ValueError("messages must not be empty")
    return chat


def _not_a_dict(messages: list[Any]) -> TypeError:
    index, message = next((i, m) for i, m in enumerate(messages) if not isinstance(m, dict))
    return TypeError(
        f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}}, "
        f"got {type_name(message)}"
    )


# -- builders -----------------------------------------------------------------------------------
def _tool_list(tool_schemas: Any) -> list[dict[str, Any]]:
    """msgflux's ``tool_schemas``: OpenAI tools, or bare function schemas with a ``name``."""
    if not isinstance(tool_schemas, (list, tuple)):
        raise TypeError(f"tool_schemas must be a list of tool dicts, got {type_name(tool_schemas)}")
    tools = []
    for i, tool in enumerate(tool_schemas):
        if not isinstance(tool, dict):
            raise TypeError(f"tool_schemas[{i}] must be a dict, got {type_name(tool)}")
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            tools.append(tool)
        elif isinstance(tool.get("name"), str):
            tools.append({"type": "function", "function": tool})
        else:
            raise ValueError(
                f"tool_schemas[{i}] must be an OpenAI tool ({{'type': 'function', 'function': "
                "{...}}) or a function schema with a 'name'"
            )
    return tools


def _choice(tool_choice: Any) -> Any:
    """msgflux's ``tool_choice``: also a bare function name."""
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "required", "none", ""):
        return {"type": "function", "function": {"name": tool_choice}}
    check_tool_choice("tool_choice", tool_choice)
    return tool_choice


def chat_request(
    messages: Any = None,
    *,
    system_prompt: Any = None,
    prefilling: Any = None,
    stream: Any = False,
    generation_schema: Any = None,
    tool_schemas: Any = None,
    tool_choice: Any = None,
    timeout: Any = None,
    first_chunk_timeout: Any = None,
    idle_timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    typed_parser: Any = None,
    **fields: Any,
) -> Request:
    """A chat request from msgflux-style arguments plus any OpenAI chat field
    (``temperature=0``, ``max_tokens=50``, ``seed=7``, ``logprobs=True``, ...); a vendor's
    own fields go in ``extra_body``.

    A per-call field wins over the model's construction defaults. Raises ``TypeError`` /
    ``ValueError`` naming the argument at fault (an unknown keyword with the closest known
    one). ``typed_parser`` (msgflux's DSL parsers) is accepted as None only.
    """
    if stream is not True and stream is not False:
        raise TypeError(f"stream must be a bool, got {stream!r}")
    if typed_parser is not None:
        raise TypeError(
            "typed_parser is msgflux's DSL parsing, which msgflux-gateway does not run; ask for "
            "structured output with generation_schema= instead"
        )
    body = body_fields(fields, ("model",), CHAT_FIELDS, _CHAT_ARGUMENTS)
    if messages is None:
        raise TypeError("messages is required: a str or a list of {role, content} dicts")
    chat = chat_messages(messages, system_prompt, prefilling)
    check_fields(body, FIELD_CHECKS)
    body["messages"] = chat
    schema = None
    if generation_schema is not None:
        if stream:
            raise ValueError("generation_schema cannot be combined with stream=True")
        if prefilling is not None:
            raise ValueError("generation_schema cannot be combined with prefilling")
        schema = schema_of(generation_schema)
        body["response_format"] = json_schema_format(schema)
    if tool_schemas is not None:
        body["tools"] = _tool_list(tool_schemas)
    if tool_choice is not None:
        if "tools" not in body:
            raise ValueError("tool_choice needs tool_schemas")
        body["tool_choice"] = _choice(tool_choice)
    body.update(extra_body_fields(extra_body))
    return Request(
        CHAT,
        body,
        stream,
        schema=schema,
        prefill=prefilling,
        **call_options(timeout, first_chunk_timeout, idle_timeout, extra_headers),
    )


def embeddings_request(
    data: Any,
    *,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    """Embeddings of one text (the view is one vector) or a list of texts (a list of them)."""
    if isinstance(data, str):
        single = True
    elif isinstance(data, list) and data and all(isinstance(x, str) for x in data):
        single = False
    else:
        raise TypeError(f"data must be a str or a non-empty list of str, got {data!r:.80}")
    body = body_fields(fields, ("model", "input"), EMBEDDING_FIELDS, _COMMON_ARGUMENTS)
    if "dimensions" in body:
        check_integer("dimensions", body["dimensions"], 1)
    body["input"] = data
    body.update(extra_body_fields(extra_body))
    return Request(
        EMBEDDINGS, body, single=single, **call_options(timeout, None, None, extra_headers)
    )


def moderation_request(
    data: Any,
    *,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(data, (str, list)) or not data:
        raise TypeError(f"data must be a non-empty str or list, got {data!r:.80}")
    body = body_fields(fields, ("model", "input"), MODERATION_FIELDS, _COMMON_ARGUMENTS)
    body["input"] = data
    body.update(extra_body_fields(extra_body))
    return Request(
        MODERATIONS,
        body,
        single=isinstance(data, str),
        **call_options(timeout, None, None, extra_headers),
    )


def speech_request(
    data: Any,
    *,
    prompt: Any = None,
    response_format: Any = None,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(data, str):
        raise TypeError(f"data must be a str, got {type_name(data)}")
    for name, value in (("prompt", prompt), ("response_format", response_format)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type_name(value)}")
    body = body_fields(fields, ("model", "input"), SPEECH_FIELDS, _COMMON_ARGUMENTS)
    if "speed" in body:
        check_number("speed", body["speed"], 0.25, 4.0)
    body["input"] = data
    if prompt is not None:
        body["instructions"] = prompt
    if response_format is not None:
        body["response_format"] = response_format
    body.update(extra_body_fields(extra_body))
    return Request(SPEECH, body, **call_options(timeout, None, None, extra_headers))


_TEXT_FORMATS = ("text", "srt", "vtt")
TRANSCRIPT_FORMATS = ("json", "verbose_json", *_TEXT_FORMATS)


def read_audio(data: Any) -> tuple[str, bytes]:
    """``(filename, bytes)`` of audio given as bytes, a path or a binary file object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "audio", bytes(data)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        try:
            with open(path, "rb") as fh:
                return os.path.basename(path), fh.read()
        except OSError as exc:
            raise ValueError(f"data: cannot read audio file {path!r}: {exc}") from None
    read = getattr(data, "read", None)
    if callable(read):
        content = read()
        if isinstance(content, bytes):
            return os.path.basename(str(getattr(data, "name", "audio"))), content
    raise TypeError(
        f"data must be audio bytes, a file path or a binary file object, got {type_name(data)}"
    )


def transcription_request(
    data: Any,
    *,
    response_format: Any = "json",
    timestamp_granularities: Any = None,
    prompt: Any = None,
    language: Any = None,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    file = read_audio(data)
    if response_format not in TRANSCRIPT_FORMATS:
        raise ValueError(
            f"response_format must be one of {list(TRANSCRIPT_FORMATS)}, got {response_format!r}"
        )
    for name, value in (("prompt", prompt), ("language", language)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type_name(value)}")
    body = body_fields(fields, ("model", "file"), TRANSCRIPTION_FIELDS, _COMMON_ARGUMENTS)
    if "temperature" in body:
        check_number("temperature", body["temperature"], 0, 1)
    body["response_format"] = response_format
    if prompt is not None:
        body["prompt"] = prompt
    if language is not None:
        body["language"] = language
    if timestamp_granularities is not None:
        if not isinstance(timestamp_granularities, list) or not set(timestamp_granularities) <= {
            "word",
            "segment",
        }:
            raise ValueError(
                "timestamp_granularities must be a list drawn from ['word', 'segment'], "
                f"got {timestamp_granularities!r}"
            )
        body["timestamp_granularities"] = timestamp_granularities
    body.update(extra_body_fields(extra_body))
    return Request(
        TRANSCRIPTIONS, body, file=file, **call_options(timeout, None, None, extra_headers)
    )


def image_request(
    prompt: Any,
    *,
    response_format: Any = None,
    n: Any = 1,
    timeout: Any = None,
    extra_headers: Any = None,
    extra_body: Any = None,
    **fields: Any,
) -> Request:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type_name(prompt)}")
    check_integer("n", n, 1, 10)
    body = body_fields(fields, ("model",), IMAGE_FIELDS, _COMMON_ARGUMENTS)
    body["prompt"] = prompt
    body["n"] = n
    if response_format is not None:
        if response_format not in ("url", "base64", "b64_json"):
            raise ValueError(f"response_format must be 'url' or 'base64', got {response_format!r}")
        body["response_format"] = "url" if response_format == "url" else "b64_json"
    body.update(extra_body_fields(extra_body))
    return Request(IMAGES, body, **call_options(timeout, None, None, extra_headers))


BUILDERS: dict[str, Callable[..., Request]] = {
    CHAT: chat_request,
    EMBEDDINGS: embeddings_request,
    MODERATIONS: moderation_request,
    SPEECH: speech_request,
    TRANSCRIPTIONS: transcription_request,
    IMAGES: image_request,
}


# -- from an OpenAI JSON body (the server) ------------------------------------------------------
def from_openai(kind: str, body: Any, *, file: tuple[str, bytes] | None = None) -> Request:
    """A request from an OpenAI JSON body, validated the same way (``model`` is dropped: the
    gateway the client named decides who answers). ``stream`` becomes the call option."""
    if not isinstance(body, dict):
        raise TypeError(f"the request body must be a JSON object, got {type_name(body)}")
    fields = {k: v for k, v in body.items() if k != "model" and v is not None}
    stream = fields.pop("stream", False)
    if stream is not True and stream is not False:
        raise TypeError(f"stream must be a bool, got {stream!r}")
    if kind == CHAT:
        if "messages" not in fields:
            raise ValueError("messages is required: a list of message dicts")
        check_fields(fields, FIELD_CHECKS)
        return Request(CHAT, fields, stream)
    if stream:
        raise ValueError(f"stream is only supported for chat completions, not {kind}")
    if kind in (EMBEDDINGS, MODERATIONS, SPEECH):
        if "input" not in fields:
            raise ValueError("input is required")
        data = fields["input"]
        if kind == EMBEDDINGS and not (isinstance(data, str) or (isinstance(data, list) and data)):
            raise TypeError("input must be a str or a non-empty list")
        if kind == SPEECH and not isinstance(data, str):
            raise TypeError(f"input must be a str, got {type_name(data)}")
        return Request(kind, fields, single=isinstance(data, str))
    if kind == IMAGES:
        if not isinstance(fields.get("prompt"), str):
            raise ValueError("prompt is required: a str")
        if "n" in fields:
            check_integer("n", fields["n"], 1, 10)
        return Request(kind, fields)
    if kind == TRANSCRIPTIONS:
        if file is None:
            raise ValueError("file is required: the audio to transcribe")
        return Request(kind, fields, file=file)
    raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(BUILDERS)}")
