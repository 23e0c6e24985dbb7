"""The Anthropic Messages API (``POST /v1/messages``) behind the canonical OpenAI form.

>>> model = Model.chat_completion("anthropic/claude-sonnet-4-5", max_tokens=256)
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

``ANTHROPIC_API_KEY`` (or ``api_key=``) is sent as ``x-api-key``; ``ANTHROPIC_BASE_URL`` (or
``base_url=``) is the API root, as the official SDK reads it (``https://api.anthropic.com``;
a root ending in ``/v1`` works too). ``anthropic_version=`` is the ``anthropic-version``
header (default ``2023-06-01``, which every deployment accepts).

What maps to what (request): system and developer turns become ``system`` (a string, or text
blocks when there are several or they carry ``cache_control``); user content parts become
``text``/``image`` (``data:`` URLs as base64 sources, other URLs as URL sources)/``document``
(PDF ``file_data``) blocks; assistant ``tool_calls`` become ``tool_use`` blocks and consecutive
``tool`` turns one user turn of ``tool_result`` blocks; ``thinking_blocks`` on an assistant
turn are sent back unchanged; ``cache_control`` on a part, a message or a tool is kept;
``tools``/``tool_choice``/``parallel_tool_calls`` map to ``tools``/``tool_choice``
(``auto``/``any``/``tool``/``none``, ``disable_parallel_tool_use``); ``response_format``
``json_schema`` becomes ``output_config.format`` (``structured_output="tool"``: a forced
``json_answer`` tool instead) and ``json_object`` a forced tool; ``stop`` becomes
``stop_sequences``, ``user`` ``metadata.user_id``, ``reasoning_effort`` extended thinking
(``budget_tokens`` 1024/2048/4096/8192 for minimal-low/medium/high/xhigh, ``max_tokens``
raised above the budget). Fields Anthropic has no use for (``seed``, ``store``, OpenAI's
``metadata``, ``service_tier``, ``stream_options``) are dropped; unknown fields (``top_k``,
``thinking``, ``container``, ...) pass through; what it cannot express raises
:class:`~msgflux.exceptions.UnsupportedFeatureError` before sending (``n > 1``, logprobs,
audio, penalties, ``temperature > 1``, a forced tool call with thinking on).

Answer: text blocks join into ``content``, ``tool_use`` blocks become ``tool_calls``,
thinking becomes ``reasoning_content`` (and ``thinking_blocks``, signatures kept), usage
becomes OpenAI's (``prompt_tokens`` counts cached tokens too) and keeps
``cache_creation_input_tokens``/``cache_read_input_tokens``; ``stop_reason`` maps to
``finish_reason`` (``refusal`` raises :class:`~msgflux.exceptions.ContentPolicyError`).
Streams translate ``message_start``, ``content_block_*`` (text, ``input_json_delta``,
thinking), ``message_delta`` (stop reason, usage), ``ping`` and ``error`` events into OpenAI
chunks; an ``error`` event raises the typed error of its ``error.type``
(``overloaded_error`` is a 529 :class:`~msgflux.exceptions.InternalServerError`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from msgflux._transport import status_error
from msgflux.exceptions import (
    APIStatusError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from msgflux.models.providers._native import (
    NativeChatModel,
    Where,
    bad,
    check_portable,
    chunk,
    data_url,
    int_of,
    loads,
    loc,
    now,
    policy_error,
    text_parts,
    tool_arguments,
    unsupported,
    usage_chunk,
)
from msgflux.models.providers.http import DEFAULT_RETRIES, ProviderSpec
from msgflux.models.providers.openai import classify_openai_error
from msgflux.models.registry import register
from msgflux.models.request import Request
from msgflux.models.types import ChatCompletionModel

__all__ = [
    "ANTHROPIC",
    "DEFAULT_VERSION",
    "FINISH_REASONS",
    "AnthropicChatCompletion",
    "classify_anthropic_error",
]

ANTHROPIC = ProviderSpec("anthropic", "https://api.anthropic.com")
DEFAULT_VERSION = "2023-06-01"
NO_SAMPLING_VERSIONS = ("2026-10-21",)
"""API versions that refuse ``temperature``/``top_p``/``top_k`` with a 400."""
JSON_TOOL = "json_answer"
"""The forced tool that carries a JSON answer (``json_object``, ``structured_output="tool"``)."""
NAME = "Anthropic"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""``stop_reason`` -> OpenAI ``finish_reason`` (an unknown reason is ``stop``)."""

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""``error.type`` -> the HTTP status it comes with (an in-stream ``error`` event has none)."""

_BY_TYPE: dict[str, type[APIStatusError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "overloaded_error": InternalServerError,
    "api_error": InternalServerError,
    "timeout_error": InternalServerError,
}

THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192}
"""``reasoning_effort`` -> extended thinking's ``budget_tokens``."""

_HANDLED = frozenset(
    (
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "thinking",
        "output_config",
        "user",
        "safety_identifier",
        "metadata",
        "service_tier",
        # OpenAI fields that change nothing a caller reads, or were refused by check_portable
        "seed",
        "store",
        "stream_options",
        "prompt_cache_key",
        "verbosity",
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "presence_penalty",
        "frequency_penalty",
    )
)
_BASIC = frozenset(("messages", "max_tokens", "max_completion_tokens"))
_NATIVE_BLOCKS = frozenset(
    ("image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
)
"""Content blocks already in Anthropic's form: sent as they are."""


def classify_anthropic_error(status: int, body: Any) -> type[APIStatusError] | None:
    """Anthropic's ``error.type`` (a proxy may change the status, never the type), then the
    OpenAI-family wording of a 400 ("prompt is too long", "content filtering")."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    return cls or classify_openai_error(400 if status == 413 else status, body)


# -- the request -------------------------------------------------------------------------------
def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if type(content) is str:
        return [{"type": "text", "text": content}]
    return list(content)


def _image(url: Any, where: Where) -> dict[str, Any]:
    if not isinstance(url, str):
        raise TypeError(f"{loc(where)} must be a URL str")
    parsed = data_url(url, where)
    if parsed is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]},
    }


def _part(part: Any, where: Where) -> dict[str, Any]:
    if type(part) is not dict:
        raise TypeError(f"{loc(where)} must be a content part dict")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if type(text) is not str:
            raise TypeError(f"{loc(where)}['text'] must be a str")
        block: dict[str, Any] = {"type": "text", "text": text}
    elif kind == "image_url":
        image = part.get("image_url")
        block = _image(image.get("url") if isinstance(image, dict) else image, where)
    elif kind == "file":
        file = part.get("file")
        file_data = file.get("file_data") if isinstance(file, dict) else None
        parsed = data_url(file_data, where) if isinstance(file_data, str) else None
        if parsed is None:
            raise unsupported(NAME, f"take a file part without a data: URL in {loc(where)}")
        source = {"type": "base64", "media_type": parsed[0], "data": parsed[1]}
        block = {"type": "document", "source": source}
    elif kind in _NATIVE_BLOCKS:
        return part
    else:
        raise unsupported(NAME, f"take a {kind!r} content part ({loc(where)})")
    cache = part.get("cache_control")
    if cache is not None:
        block["cache_control"] = cache
    return block


def _parts(content: Any, i: int) -> list[dict[str, Any]]:
    if type(content) is not list:
        raise TypeError(f"messages[{i}]['content'] must be a str or a list of content parts")
    return [_part(part, (i, "content", j)) for j, part in enumerate(content)]


def _assistant_content(message: dict[str, Any], i: int, last: bool) -> Any:
    thinking = message.get("thinking_blocks")
    blocks: list[dict[str, Any]] = list(thinking) if thinking else []
    content = message.get("content")
    if type(content) is str:
        if content:
            blocks.append({"type": "text", "text": content})
    elif content is not None:
        for j, part in enumerate(content if type(content) is list else [content]):
            if type(part) is dict and part.get("type") == "refusal":
                part = {"type": "text", "text": part.get("refusal") or ""}
            block = _part(part, (i, "content", j))
            if block.get("type") != "text" or block.get("text"):
                blocks.append(block)
    calls = message.get("tool_calls")
    if calls:
        for j, call in enumerate(calls):
            function = call.get("function") if type(call) is dict else None
            name = function.get("name") if type(function) is dict else None
            if type(name) is not str:
                raise TypeError(
                    f"messages[{i}]['tool_calls'][{j}] must be a dict with a 'function' "
                    "naming the tool"
                )
            assert function is not None
            raw = function.get("arguments")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{i}_{j}",
                    "name": name,
                    "input": raw
                    if type(raw) is dict
                    else tool_arguments(raw, (i, "tool_calls", j, "function", "arguments")),
                }
            )
    if last and blocks and blocks[-1].get("type") == "text":
        # The API refuses a final (prefilled) assistant turn that ends with whitespace.
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {**blocks[-1], "text": text}
        else:
            blocks.pop()
    if len(blocks) == 1 and len(blocks[0]) == 2 and blocks[0]["type"] == "text":
        return blocks[0]["text"]
    return blocks


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if type(call_id) is not str or not call_id:
        raise ValueError(f"messages[{i}] is a tool message without a tool_call_id")
    content = message.get("content")
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": content
        if type(content) is str
        else (_parts(content, i) if type(content) is list else ""),
    }
    if message.get("is_error") is True:
        block["is_error"] = True
    return block


def _system(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks = [{"type": "text", "text": t} for t in text_parts(content, (i, "content"), NAME)]
    if type(content) is list:
        for block, part in zip(blocks, content, strict=True):
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
    if blocks and message.get("cache_control") is not None:
        blocks[-1]["cache_control"] = message["cache_control"]
    return blocks


def anthropic_messages(messages: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """``(system, messages)`` of the Messages API for OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        role = message.get("role")
        content: Any = message.get("content")
        plain = type(content) is str and len(message) == 2
        if role == "user":
            turn = "user"
            if type(content) is not str:
                content = _parts(content, i)
        elif role == "tool":
            turn = "user"
            content = [_tool_result(message, i)]
        elif role == "assistant":
            turn = "assistant"
            calls = message.get("tool_calls")
            if calls and i != last and len(message) <= 3 and not content:
                # The common tool-calling turn, in line: no text, no thinking blocks.
                content = []
                for j, call in enumerate(calls):
                    function = call.get("function") if type(call) is dict else None
                    name = function.get("name") if type(function) is dict else None
                    if type(name) is not str:
                        break
                    assert function is not None
                    raw = function.get("arguments")
                    where = (i, "tool_calls", j, "function", "arguments")
                    content.append(
                        {
                            "type": "tool_use",
                            "id": call.get("id") or f"toolu_{i}_{j}",
                            "name": name,
                            "input": raw if type(raw) is dict else tool_arguments(raw, where),
                        }
                    )
                else:
                    if out and out[-1]["role"] == "assistant":
                        out[-1]["content"] = _as_blocks(out[-1]["content"]) + content
                    else:
                        out.append({"role": "assistant", "content": content})
                    continue
                content = message.get("content")  # a malformed call: the slow path says why
            if not plain or i == last:
                content = _assistant_content(message, i, i == last)
                if not content:
                    continue
            elif not content:
                continue
        elif role in ("system", "developer"):
            if plain:
                system.append({"type": "text", "text": content})
            else:
                system.extend(_system(message, i))
            continue
        else:
            raise unsupported(NAME, f"take a {role!r} message (messages[{i}])")
        if not plain:
            cache = message.get("cache_control")
            if cache is not None and content:
                content = _as_blocks(content)
                content[-1] = {**content[-1], "cache_control": cache}
        if out and out[-1]["role"] == turn:
            out[-1]["content"] = _as_blocks(out[-1]["content"]) + _as_blocks(content)
        else:
            out.append({"role": turn, "content": content})
    if not out:
        raise ValueError("messages must hold at least one user or assistant message")
    if len(system) == 1 and len(system[0]) == 2:
        return system[0]["text"], out
    return system or None, out


def _tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    kind = tool.get("type")
    if kind != "function":
        if kind == "custom":
            raise unsupported(NAME, f"take a custom (free-form) tool (tools[{i}])")
        return tool  # one of Anthropic's own tools (web search, code execution, ...)
    function = tool.get("function")
    name = function.get("name") if type(function) is dict else None
    if type(name) is not str:
        raise TypeError(f"tools[{i}] must have a 'function' with a 'name'")
    assert function is not None
    out: dict[str, Any] = {
        "name": name,
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    description = function.get("description")
    if description:
        out["description"] = description
    if function.get("strict") is True:
        out["strict"] = True
    if len(tool) > 2 and tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]
    return out


_translated: dict[bytes, list[dict[str, Any]]] = {}


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Messages API tools, remembered by the tools' JSON text (the same tools come with
    every call; a tool changed in place is a new key)."""
    try:
        key = orjson.dumps(tools)
    except TypeError:
        return [_tool(tool, i) for i, tool in enumerate(tools)]
    out = _translated.get(key)
    if out is None:
        # Translated from a copy, so the cache shares nothing with the caller's dicts.
        out = [_tool(tool, i) for i, tool in enumerate(orjson.loads(key))]
        if len(_translated) >= 256:
            _translated.clear()
        _translated[key] = out
    return list(out)


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    elif isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"):
        out = dict(choice)
    else:
        raise ValueError(f"tool_choice {choice!r} has no Anthropic form")
    if parallel is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _json_tool(body: dict[str, Any], mode: str | None) -> dict[str, Any] | None:
    """The schema of the forced tool that carries a JSON answer, when one is used."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema" and mode == "tool":
        return _schema_of(fmt)
    return None


def _schema_of(fmt: dict[str, Any]) -> dict[str, Any]:
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ValueError("response_format json_schema needs a 'json_schema': {'schema': {...}}")
    return schema


# -- the answer --------------------------------------------------------------------------------
def anthropic_usage(usage: Any, who: tuple[str, str]) -> dict[str, Any] | None:
    """OpenAI's usage for Anthropic's (cached prompt tokens are prompt tokens too)."""
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise bad(who, "usage must be an object", usage)
    fresh = usage.get("input_tokens")
    created = usage.get("cache_creation_input_tokens")
    read = usage.get("cache_read_input_tokens")
    completion = usage.get("output_tokens")
    if not (type(fresh) is type(completion) is type(created) is type(read) is int):
        fresh = int_of(fresh, who, "input_tokens")
        created = int_of(created, who, "cache_creation_input_tokens")
        read = int_of(read, who, "cache_read_input_tokens")
        completion = int_of(completion, who, "output_tokens")
    prompt = fresh + created + read
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        out["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return out


def _finish(stop: Any, who: tuple[str, str], body: Any) -> str:
    if stop is None:
        return "stop"
    if not isinstance(stop, str):
        raise bad(who, "stop_reason must be a str", stop)
    finish = FINISH_REASONS.get(stop, "stop")
    if finish == "content_filter":
        raise policy_error(who, f"the model stopped the answer: {stop}", body)
    return finish


def _obj(value: Any, who: tuple[str, str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


def _str(block: dict[str, Any], key: str, who: tuple[str, str]) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise bad(who, f"a {block.get('type')} block needs a str {key!r}", block)
    return value


# -- streams -----------------------------------------------------------------------------------
Out = tuple[dict[str, Any], Any]
"""A canonical chunk and what the ChatStream needs of it (see ``Translator``)."""


class AnthropicEvents:
    """The canonical chunks of one Messages API stream, event by event (a ``Translator``)."""

    __slots__ = (
        "created",
        "done",
        "ident",
        "include_usage",
        "json_block",
        "json_tool",
        "model",
        "thinking",
        "tools",
        "usage",
        "who",
    )

    def __init__(self, who: tuple[str, str], json_tool: bool, include_usage: bool) -> None:
        self.who = who
        self.json_tool = json_tool
        self.include_usage = include_usage
        self.ident = "msg"
        self.model = who[1]
        self.created = now()
        self.usage: dict[str, Any] = {}
        self.tools: dict[Any, int] = {}
        self.json_block: Any = None
        self.thinking: dict[Any, list[str]] = {}
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Out:
        return chunk(self.ident, self.created, self.model, delta, finish), None

    def feed(self, event: str | None, data: bytes) -> list[Out]:
        if event == "ping":
            return []
        who = self.who
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if type(delta) is dict and delta.get("type") == "text_delta":
                # The common event, in line: one text piece.
                text = delta.get("text")
                if type(text) is str:
                    if not text:
                        return []
                    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
                    out = {
                        "id": self.ident,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [choice],
                    }
                    return [(out, text)]
            return self._delta(payload)
        if kind == "content_block_start":
            return self._start(payload)
        if kind == "message_start":
            message = _obj(payload.get("message"), who, "message_start.message")
            if isinstance(message.get("id"), str):
                self.ident = message["id"]
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._add_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            delta = _obj(payload.get("delta"), who, "message_delta.delta")
            self._add_usage(payload.get("usage"))
            stop = delta.get("stop_reason")
            if stop is None:
                return []
            finish = _finish(stop, who, payload)
            if finish == "tool_calls" and not self.tools:
                finish = "stop"  # the forced JSON tool answered: that is the text
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            error = payload.get("error")
            etype = error.get("type") if isinstance(error, dict) else None
            status = ERROR_STATUS.get(etype, 500) if isinstance(etype, str) else 500
            raise status_error(
                status,
                data,
                None,
                provider=who[0],
                model_id=who[1],
                classify=classify_anthropic_error,
            )
        return []  # content_block_stop, ping, and event types newer than this adapter

    def _start(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        block = _obj(payload.get("content_block"), who, "content_block_start.content_block")
        index = payload.get("index")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "tool_use":
            name = _str(block, "name", who)
            if self.json_tool and name == JSON_TOOL:
                self.json_block = index
                return []
            position = self.tools[index] = len(self.tools)
            call = {
                "index": position,
                "id": _str(block, "id", who),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking":
            text = block.get("thinking")
            self.thinking[index] = [text] if isinstance(text, str) and text else []
            return [self._chunk({"reasoning_content": text})] if self.thinking[index] else []
        if kind == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [block]})]
        return []

    def _delta(self, payload: dict[str, Any]) -> list[Out]:
        who = self.who
        delta = _obj(payload.get("delta"), who, "content_block_delta.delta")
        kind = delta.get("type")
        if kind == "text_delta":
            text = _str(delta, "text", who)
            return [self._chunk({"content": text})] if text else []
        index = payload.get("index")
        if kind == "input_json_delta":
            part = _str(delta, "partial_json", who)
            if not part:
                return []
            if index == self.json_block and self.json_block is not None:
                return [self._chunk({"content": part})]
            position = self.tools.get(index)
            if position is None:
                raise bad(who, "input_json_delta for a block that is not a tool_use", payload)
            return [
                self._chunk({"tool_calls": [{"index": position, "function": {"arguments": part}}]})
            ]
        if kind == "thinking_delta":
            text = _str(delta, "thinking", who)
            if not text:
                return []
            self.thinking.setdefault(index, []).append(text)
            return [self._chunk({"reasoning_content": text})]
        if kind == "signature_delta":
            signature = _str(delta, "signature", who)
            thought = "".join(self.thinking.get(index, ()))
            block = {"type": "thinking", "thinking": thought, "signature": signature}
            return [self._chunk({"thinking_blocks": [block]})]
        return []  # citations_delta and newer delta types

    def _add_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.usage.update(_obj(usage, self.who, "usage"))  # message_delta counts are cumulative

    def end(self) -> list[dict[str, Any]]:
        if not self.include_usage or not self.usage:
            return []
        usage = anthropic_usage(self.usage, self.who)
        assert usage is not None
        return [usage_chunk(self.ident, self.created, self.model, usage)]


# -- the model ---------------------------------------------------------------------------------
@register("chat_completion", "anthropic")
class AnthropicChatCompletion(NativeChatModel, ChatCompletionModel):
    """Claude through the Messages API; see the module docstring for what maps to what.

    ``response_type`` is ``text_generation``, ``tool_call``, ``structured`` or, with extended
    thinking (``reasoning_effort=`` or ``thinking={...}`` per call), ``reasoning_<type>``.

    >>> model = Model.chat_completion("anthropic/claude-haiku-4-5", reasoning_effort="low")
    >>> model(messages="What is 17 * 23?").data.think  # doctest: +SKIP
    """

    spec = ANTHROPIC
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "anthropic_version")
    client_defaults: ClassVar[dict[str, Any]] = {"anthropic_version": DEFAULT_VERSION}
    structured_outputs: ClassVar[tuple[str, ...]] = ("native", "tool")
    request_id_header = "request-id"
    max_temperature = 1.0

    def __init__(
        self,
        model_id: str,
        *,
        max_tokens: int | None = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: str | list[str] | None = None,
        reasoning_effort: str | None = None,
        anthropic_version: str = DEFAULT_VERSION,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        first_chunk_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
        structured_output: str | None = None,
        clock: Any = None,
    ) -> None:
        run = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "stop": list(stop) if isinstance(stop, tuple) else stop,
            "reasoning_effort": reasoning_effort,
        }
        self._setup(
            model_id,
            run,
            {"anthropic_version": anthropic_version},
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            max_retries=max_retries,
            timeout=timeout,
            first_chunk_timeout=first_chunk_timeout,
            idle_timeout=idle_timeout,
            max_response_bytes=max_response_bytes,
            max_event_bytes=max_event_bytes,
            structured_output=structured_output,
        )

    def _initialize(self) -> None:
        super()._initialize()
        version = self.sampling_params["anthropic_version"]
        sampling = [n for n in ("temperature", "top_p", "top_k") if n in self._defaults]
        if version in NO_SAMPLING_VERSIONS and sampling:
            raise ValueError(
                f"anthropic_version {version!r} takes no {'/'.join(sampling)}: drop them or "
                f"use anthropic_version={DEFAULT_VERSION!r}"
            )

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-api-key": key}

    def _base_headers(self) -> dict[str, str]:
        return {"anthropic-version": str(self.sampling_params["anthropic_version"])}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_anthropic_error(status, body)

    def _path(self, req: Request) -> tuple[str, str]:
        base = (self.base_url() or "").rstrip("/")
        return ("/messages" if base.endswith("/v1") else "/v1/messages"), ""

    def wire(self, req: Request) -> dict[str, Any]:
        """The Messages API body for ``req`` (see the module docstring)."""
        body = self.fields(req)
        check_portable(body, NAME)
        system, messages = anthropic_messages(body["messages"])
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        out: dict[str, Any] = {"model": self.model_id, "max_tokens": max_tokens}
        if system is not None:
            out["system"] = system
        out["messages"] = messages
        if not _BASIC.issuperset(body):
            self._options(body, out)
        if req.stream:
            out["stream"] = True
        return out

    def _options(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        """Everything but the messages and the token limit (most calls have none of it)."""
        for name, value in body.items():
            if name not in _HANDLED:
                out[name] = value  # a vendor field (top_k, container, cache_control, ...)
        # The canonical body holds no None values: a field is there or it is not.
        if "stop" in body:
            stop = body["stop"]
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if "temperature" in body or "top_p" in body or "top_k" in body:
            self._sampling(body, out)
        thinking = "thinking" in body or "reasoning_effort" in body
        if thinking:
            thinking = self._thinking(body, out)
        tools = body.get("tools")
        if tools:
            out["tools"] = _tools(tools)
        if "tool_choice" in body or "parallel_tool_calls" in body:
            choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
            if choice is not None:
                if thinking and choice["type"] in ("any", "tool"):
                    raise unsupported(NAME, "force a tool call while extended thinking is on")
                out["tool_choice"] = choice
        if "response_format" in body or "output_config" in body:
            self._structured(body, out, thinking)
        if "user" in body or "safety_identifier" in body or "metadata" in body:
            user = body.get("user") or body.get("safety_identifier")
            metadata = body.get("metadata")
            if isinstance(metadata, dict) and metadata and set(metadata) <= {"user_id"}:
                out["metadata"] = metadata
            elif isinstance(user, str):
                out["metadata"] = {"user_id": user}
        if body.get("service_tier") in ("auto", "standard_only"):
            out["service_tier"] = body["service_tier"]

    def _sampling(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        present = [n for n in ("temperature", "top_p", "top_k") if body.get(n) is not None]
        if not present:
            return
        version = self.sampling_params["anthropic_version"]
        if version in NO_SAMPLING_VERSIONS:
            raise unsupported(
                NAME,
                f"take {'/'.join(present)} with anthropic-version {version} "
                f"(anthropic_version={DEFAULT_VERSION!r} takes them)",
            )
        temperature = body.get("temperature")
        if temperature is not None and temperature > 1:
            raise unsupported(NAME, f"take temperature={temperature:g} (its range is 0-1)")
        for name in present:
            out[name] = body[name]

    def _thinking(self, body: dict[str, Any], out: dict[str, Any]) -> bool:
        """Set extended thinking from ``thinking`` (sent as given) or ``reasoning_effort``;
        returns whether it is on."""
        thinking = body.get("thinking")
        effort = body.get("reasoning_effort")
        if thinking is None and effort is not None and effort != "none":
            budget = THINKING_BUDGETS.get(effort)
            if budget is None:
                raise ValueError(
                    f"reasoning_effort must be one of {[*THINKING_BUDGETS, 'none']} "
                    f"for Anthropic, got {effort!r}"
                )
            thinking = {"type": "enabled", "budget_tokens": budget}
            if out["max_tokens"] <= budget:
                out["max_tokens"] += budget
        if thinking is None:
            return False
        out["thinking"] = thinking
        on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        if on and (out.get("temperature") is not None or out.get("top_k") is not None):
            raise unsupported(NAME, "take temperature or top_k while extended thinking is on")
        return on

    def _structured(self, body: dict[str, Any], out: dict[str, Any], thinking: bool) -> None:
        fmt = body.get("response_format")
        config = body.get("output_config")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
            kind = fmt.get("type")
            if kind not in ("json_schema", "json_object"):
                raise unsupported(NAME, f"take response_format type {kind!r}")
            schema = _json_tool(body, self.structured_output)
            if schema is not None:
                if "tools" in out:
                    raise unsupported(
                        NAME, f"combine tools with {kind} output (it is carried by a forced tool)"
                    )
                if thinking:
                    raise unsupported(NAME, f"give {kind} output while extended thinking is on")
                out["tools"] = [
                    {"name": JSON_TOOL, "description": "Give the answer.", "input_schema": schema}
                ]
                out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
            else:
                output = {"type": "json_schema", "schema": _schema_of(fmt)}
                config = {**(config if isinstance(config, dict) else {}), "format": output}
        if config is not None:
            out["output_config"] = config

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical completion of a Messages API answer (see the module docstring)."""
        who = self._who()
        message = _obj(payload, who, "a Messages API answer")
        content = message.get("content")
        if not isinstance(content, list):
            raise bad(who, "a Messages API answer needs a content list", payload)
        json_tool = (
            "response_format" in req.body
            and _json_tool(req.body, self.structured_output) is not None
        )
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        thoughts: list[str] = []
        blocks: list[dict[str, Any]] = []
        for block in content:
            if type(block) is not dict:
                raise bad(who, "a content block must be an object", block)
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if type(text) is not str:
                    raise bad(who, "a text block needs a str 'text'", block)
                texts.append(text)
            elif kind == "tool_use":
                name, ident, args = block.get("name"), block.get("id"), block.get("input")
                if type(name) is not str or type(ident) is not str or type(args) is not dict:
                    raise bad(
                        who, "a tool_use block needs a str id and name and an input object", block
                    )
                arguments = orjson.dumps(args).decode()
                if json_tool and name == JSON_TOOL:
                    texts.append(arguments)
                    continue
                function = {"name": name, "arguments": arguments}
                calls.append({"id": ident, "type": "function", "function": function})
            elif kind == "thinking":
                thought = _str(block, "thinking", who)
                if thought:
                    thoughts.append(thought)
                blocks.append(block)
            elif kind == "redacted_thinking":
                blocks.append(block)
        stop = message.get("stop_reason")
        finish = FINISH_REASONS.get(stop) if type(stop) is str else None
        if finish is None or finish == "content_filter":
            finish = _finish(stop, who, message.get("stop_details") or payload)
        if finish == "tool_calls" and not calls:
            finish = "stop"
        answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            answer["tool_calls"] = calls
        if thoughts:
            answer["reasoning_content"] = "".join(thoughts)
        if blocks:
            answer["thinking_blocks"] = blocks
        ident = message.get("id")
        model = message.get("model")
        return {
            "id": ident if isinstance(ident, str) else "msg",
            "object": "chat.completion",
            "created": now(),
            "model": model if isinstance(model, str) else self.model_id,
            "choices": [{"index": 0, "message": answer, "finish_reason": finish, "logprobs": None}],
            "usage": anthropic_usage(message.get("usage"), who),
        }

    def translator(self, req: Request) -> AnthropicEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        json_tool = _json_tool(req.body, self.structured_output) is not None
        return AnthropicEvents(self._who(), json_tool, include_usage)
