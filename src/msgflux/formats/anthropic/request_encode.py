"""Canonical (OpenAI chat) requests as Anthropic Messages API bodies.

:func:`to_anthropic` is the translation a chat request answered by Claude goes through (the
provider adapter adds its URL, key and version). What maps to what: system and developer turns
become ``system`` (a string, or text blocks when there are several or they carry
``cache_control``; a system turn in the middle of the conversation is hoisted there too, the
form Anthropic takes); user content parts become ``text``/``image`` (``data:`` URLs as base64
sources, other URLs as URL sources)/``document`` (PDF ``file_data``) blocks; assistant
``tool_calls`` become ``tool_use`` blocks and consecutive ``tool`` turns one user turn of
``tool_result`` blocks; ``thinking_blocks`` on an assistant turn are sent back unchanged;
``cache_control`` on a part, a message or a tool is kept; ``tools``/``tool_choice``/
``parallel_tool_calls`` map to ``tools``/``tool_choice`` (``auto``/``any``/``tool``/``none``,
``disable_parallel_tool_use``); ``response_format`` ``json_schema`` becomes
``output_config.format`` (``structured_output="tool"``: a forced ``json_answer`` tool instead)
and ``json_object`` a forced tool; ``stop`` becomes ``stop_sequences``, ``user``
``metadata.user_id``, ``reasoning_effort`` extended thinking (``budget_tokens``
1024/2048/4096/8192 for minimal-low/medium/high/xhigh, ``max_tokens`` raised above the
budget).

Fields Anthropic has no use for (``seed``, ``store``, OpenAI's ``metadata``,
``service_tier``, ``prompt_cache_key``, ``verbosity``) are dropped through the
:class:`~msgflux.formats.policy.Translation` (and so reported); unknown fields (``top_k``,
``thinking``, ``container``, ...) pass through; what it cannot express is lost through the
policy too, which refuses by default (``n > 1``, logprobs, audio, penalties,
``temperature > 1``, a forced tool call with thinking on): the deployment is then skipped.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Where, data_url, loc, text_parts, tool_arguments, unsupported
from msgflux.formats.policy import Translation, check_portable

__all__ = [
    "DEFAULT_VERSION",
    "JSON_TOOL",
    "NO_SAMPLING_VERSIONS",
    "THINKING_BUDGETS",
    "anthropic_messages",
    "json_tool",
    "to_anthropic",
]

DEFAULT_VERSION = "2023-06-01"
NO_SAMPLING_VERSIONS = ("2026-10-21",)
"""API versions that refuse ``temperature``/``top_p``/``top_k`` with a 400."""
JSON_TOOL = "json_answer"
"""The forced tool that carries a JSON answer (``json_object``, ``structured_output="tool"``)."""
NAME = "Anthropic"

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


def _tools(tools: list[dict[str, Any]], ctx: Translation) -> list[dict[str, Any]]:
    """The Messages API tools, remembered by the tools' JSON text (the same tools come with
    every call; a tool changed in place is a new key). A custom (free-form) tool has no form
    here: lost through ``ctx`` (refused by default)."""
    custom = [
        i for i, tool in enumerate(tools) if type(tool) is dict and tool.get("type") == "custom"
    ]
    if custom:
        for i in custom:
            ctx.lose(
                "builtin_tools", f"tools[{i}]", NAME, f"take a custom (free-form) tool (tools[{i}])"
            )
        tools = [tool for i, tool in enumerate(tools) if i not in custom]
        if not tools:
            return []
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


def json_tool(body: dict[str, Any], mode: str | None) -> dict[str, Any] | None:
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


# -- the body -----------------------------------------------------------------------------------
def to_anthropic(
    body: dict[str, Any],
    *,
    model_id: str,
    stream: bool,
    ctx: Translation,
    version: str = DEFAULT_VERSION,
    structured_output: str | None = None,
) -> dict[str, Any]:
    """The Messages API body for the canonical ``body`` (see the module docstring):
    ``version`` is the ``anthropic-version`` it will be sent with, ``structured_output``
    ``"tool"`` carries a JSON schema answer in a forced tool."""
    body = check_portable(body, NAME, ctx)
    system, messages = anthropic_messages(body["messages"])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    out: dict[str, Any] = {"model": model_id, "max_tokens": max_tokens}
    if system is not None:
        out["system"] = system
    out["messages"] = messages
    if not _BASIC.issuperset(body):
        _options(body, out, ctx, version, structured_output)
    if stream:
        out["stream"] = True
    return out


_DROPPED = ("seed", "store", "prompt_cache_key", "verbosity")


def _options(
    body: dict[str, Any],
    out: dict[str, Any],
    ctx: Translation,
    version: str,
    structured_output: str | None,
) -> None:
    """Everything but the messages and the token limit (most calls have none of it)."""
    for name, value in body.items():
        if name not in _HANDLED:
            out[name] = value  # a vendor field (top_k, container, cache_control, ...)
    for name in _DROPPED:
        if name in body:
            ctx.lose(name, name, NAME, f"take {name}")
    # The canonical body holds no None values: a field is there or it is not.
    if "stop" in body:
        stop = body["stop"]
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if "temperature" in body or "top_p" in body or "top_k" in body:
        _sampling(body, out, ctx, version)
    thinking = "thinking" in body or "reasoning_effort" in body
    if thinking:
        thinking = _thinking(body, out, ctx)
    tools = body.get("tools")
    if tools:
        translated = _tools(tools, ctx)
        if translated:
            out["tools"] = translated
    if "tool_choice" in body or "parallel_tool_calls" in body:
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            if thinking and choice["type"] in ("any", "tool"):
                ctx.lose(
                    "tool_choice",
                    "tool_choice",
                    NAME,
                    "force a tool call while extended thinking is on",
                )
            else:
                out["tool_choice"] = choice
    if "response_format" in body or "output_config" in body:
        _structured(body, out, thinking, ctx, structured_output)
    if "user" in body or "safety_identifier" in body or "metadata" in body:
        user = body.get("user") or body.get("safety_identifier")
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and metadata and set(metadata) <= {"user_id"}:
            out["metadata"] = metadata
        else:
            if metadata:
                ctx.lose("metadata", "metadata", NAME, "take OpenAI's metadata")
            if isinstance(user, str):
                out["metadata"] = {"user_id": user}
    tier = body.get("service_tier")
    if tier in ("auto", "standard_only"):
        out["service_tier"] = tier
    elif tier is not None:
        ctx.lose("service_tier", "service_tier", NAME, f"take service_tier {tier!r}")


def _sampling(body: dict[str, Any], out: dict[str, Any], ctx: Translation, version: str) -> None:
    present = [n for n in ("temperature", "top_p", "top_k") if body.get(n) is not None]
    if not present:
        return
    if version in NO_SAMPLING_VERSIONS:
        raise unsupported(
            NAME,
            f"take {'/'.join(present)} with anthropic-version {version} "
            f"(anthropic_version={DEFAULT_VERSION!r} takes them)",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature > 1:
        ctx.lose(
            "temperature", "temperature", NAME, f"take temperature={temperature:g} (range 0-1)"
        )
        present.remove("temperature")
    for name in present:
        out[name] = body[name]


def _thinking(body: dict[str, Any], out: dict[str, Any], ctx: Translation) -> bool:
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


def _structured(
    body: dict[str, Any],
    out: dict[str, Any],
    thinking: bool,
    ctx: Translation,
    structured_output: str | None,
) -> None:
    fmt = body.get("response_format")
    config = body.get("output_config")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        kind = fmt.get("type")
        if kind not in ("json_schema", "json_object"):
            ctx.lose("response_format", "response_format", NAME, f"take {kind!r} output")
            return
        schema = json_tool(body, structured_output)
        if schema is not None:
            if "tools" in out:
                ctx.lose(
                    "response_format",
                    "response_format",
                    NAME,
                    f"combine tools with {kind} output (it is carried by a forced tool)",
                )
                return
            if thinking:
                ctx.lose(
                    "response_format",
                    "response_format",
                    NAME,
                    f"give {kind} output while extended thinking is on",
                )
                return
            out["tools"] = [
                {"name": JSON_TOOL, "description": "Give the answer.", "input_schema": schema}
            ]
            out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
        else:
            output = {"type": "json_schema", "schema": _schema_of(fmt)}
            config = {**(config if isinstance(config, dict) else {}), "format": output}
    if config is not None:
        out["output_config"] = config
