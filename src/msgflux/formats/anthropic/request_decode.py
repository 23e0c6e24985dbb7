"""Anthropic Messages API requests in the canonical (OpenAI chat) form.

:func:`to_canonical` is the translation a ``POST /v1/messages`` body goes through when the
deployment that answers does not speak the Messages API (a Claude Code request answered by a
GPT deployment). A request an Anthropic deployment answers never comes here: it goes upstream
as the client sent it (the native lane).

It reads strictly where a mistake would change the answer: a malformed field raises
``ValueError``/``TypeError`` whose message starts with the field's path
(``messages.1.content.0.type: ...``) and says what is accepted. Fields with no canonical form
follow the :mod:`~msgflux.formats.policy`: hints (``context_management``, adaptive
``thinking``, ``output_config.effort``, ``metadata`` beyond ``user_id``, a tool's
``defer_loading``, ``container``, ``speed``, fields this module does not know) are dropped
and reported; ``mcp_servers`` refuses (the deployment is skipped).

The canonical conventions are the provider adapter's (:mod:`.request_encode` goes the other
way): ``cache_control`` kept on parts and tools (a ``tool_use`` block's on its assistant turn
when the block ends the turn, dropped elsewhere), ``thinking_blocks`` on assistant turns,
``is_error`` on tool turns, Anthropic's server tools passed as they are, a ``system`` turn in
the middle of the conversation kept where it is. Extended thinking with a budget becomes
``reasoning_effort`` through :data:`~.request_encode.THINKING_BUDGETS`, so an Anthropic
deployment thinks with the budget the table gives back.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.anthropic.request_encode import NO_SAMPLING_VERSIONS, THINKING_BUDGETS
from msgflux.formats.common import fail, integer, kind_of, one_of
from msgflux.formats.policy import Translation

__all__ = ["to_canonical"]

TARGET = "the deployment's API"
"""Who cannot take a dropped Messages field: any family but Anthropic's."""

_EFFORTS = sorted(
    ((budget, effort) for effort, budget in THINKING_BUDGETS.items() if effort != "minimal"),
    reverse=True,
)
"""``(budget_tokens, reasoning_effort)``, largest first (``minimal`` is an OpenAI-only level
with the same budget as ``low``)."""

_FIELDS = frozenset(
    (
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "thinking",
        "output_config",
        "stream",
        "service_tier",
    )
)
_HINTS = {
    "context_management": "context_management",
    "container": "container",
    "speed": "speed",
    "inference_geo": "speed",
    "cache_control": "cache_control",
}
"""Top-level Messages fields with no canonical form that change nothing a caller reads."""

_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_USER_BLOCKS = ("text", "image", "document", "tool_result")
_ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
_TOOL_KEYS = frozenset(("name", "description", "input_schema", "cache_control", "strict", "type"))
_CHOICES = ("auto", "any", "tool", "none")


# -- validation helpers -------------------------------------------------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise fail(where, f"must be an object, got {kind_of(value)}")
    return value


def _string(value: Any, where: str, *, empty: bool = True) -> str:
    if type(value) is not str:
        raise fail(where, f"must be a string, got {kind_of(value)}")
    if not empty and not value:
        raise fail(where, "must not be empty")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise fail(where, "must be a number between 0 and 1", value)
    return value


def _drop(ctx: Translation, feature: str, field: str) -> None:
    ctx.lose(feature, field, TARGET, f"take the Messages API's {field}")


# -- the request --------------------------------------------------------------------------------
def to_canonical(payload: Any, ctx: Translation, *, version: str | None = None) -> dict[str, Any]:
    """The canonical chat body (``model`` and ``stream`` included, as the client sent them)
    for a Messages API body. ``version`` is the client's ``anthropic-version``: the versions
    that have no sampling fields refuse them as Anthropic does."""
    body = _obj(payload, "body")
    for name in body:
        if name not in _FIELDS:
            if name == "mcp_servers":
                ctx.lose("mcp_servers", name, TARGET, "connect to MCP servers (mcp_servers)")
            else:
                _drop(ctx, _HINTS.get(name, "unknown_fields"), name)
    model = _string(body.get("model"), "model", empty=False)
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append(_system(system, "system"))
    turns = body.get("messages")
    if type(turns) is not list or not turns:
        raise fail("messages", "is required: a non-empty array of {role, content} objects")
    for i, turn in enumerate(turns):
        _turn(turn, i, messages, ctx)
    out: dict[str, Any] = {"model": model, "messages": messages}
    out["max_tokens"] = integer(body.get("max_tokens"), "max_tokens", 1)
    if len(body) > 3:
        if version in NO_SAMPLING_VERSIONS:
            for field in ("temperature", "top_p", "top_k"):
                if field in body:
                    raise fail(
                        field,
                        f"Extra inputs are not permitted with anthropic-version {version} "
                        "(2023-06-01 takes it)",
                    )
        _options(body, out, ctx)
    stream = body.get("stream", False)
    if stream is not True and stream is not False:
        raise fail("stream", "must be a boolean", stream)
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return out


def _options(body: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    """Every field but the model, the messages and the token limit."""
    stop = body.get("stop_sequences")
    if stop is not None:
        if type(stop) is not list or not all(type(s) is str for s in stop):
            raise fail("stop_sequences", "must be an array of strings", stop)
        if stop:
            out["stop"] = stop
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            out[field] = _number(body[field], field)
    if body.get("top_k") is not None:
        out["top_k"] = integer(body["top_k"], "top_k", 0)
    tools = body.get("tools")
    if tools is not None:
        if type(tools) is not list:
            raise fail("tools", f"must be an array of tools, got {kind_of(tools)}")
        if tools:
            out["tools"] = [_tool(tool, f"tools.{i}", ctx) for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], out)
    if body.get("thinking") is not None:
        _thinking(body["thinking"], out, ctx)
    if body.get("output_config") is not None:
        _output_config(body["output_config"], out, ctx)
    metadata = body.get("metadata")
    if metadata is not None:
        metadata = _obj(metadata, "metadata")
        user = metadata.get("user_id")
        if user is not None:
            out["user"] = _string(user, "metadata.user_id")
        if any(key != "user_id" for key in metadata):
            _drop(ctx, "metadata", "metadata")
    service_tier = body.get("service_tier")
    if service_tier is not None:
        # A scheduling hint for Anthropic's capacity, not part of the answer.
        one_of(service_tier, "service_tier", ("auto", "standard_only"))
        _drop(ctx, "service_tier", "service_tier")


def _system(system: Any, where: str) -> dict[str, Any]:
    if type(system) is str:
        return {"role": "system", "content": system}
    if type(system) is not list:
        raise fail(where, f"must be a string or an array of text blocks, got {kind_of(system)}")
    parts = []
    for j, block in enumerate(system):
        at = f"{where}.{j}"
        if _obj(block, at).get("type") != "text":
            raise fail(f"{at}.type", "must be 'text'", block.get("type"))
        parts.append(_text(block, at))
    if len(parts) == 1 and len(parts[0]) == 2:
        return {"role": "system", "content": parts[0]["text"]}
    return {"role": "system", "content": parts}


def _turn(turn: Any, i: int, messages: list[dict[str, Any]], ctx: Translation) -> None:
    """Append the canonical messages of ``messages[i]``."""
    where = f"messages.{i}"
    if type(turn) is not dict:
        raise fail(where, f"must be an object, got {kind_of(turn)}")
    role = turn.get("role")
    content = turn.get("content")
    if len(turn) != 2 or role not in ("user", "assistant"):
        for key in turn:
            if key not in ("role", "content"):
                raise fail(f"{where}.{key}", "Extra inputs are not permitted")
        one_of(role, f"{where}.role", ("user", "assistant", "system"))
    if role == "system":
        # A system turn in the middle of the conversation (Claude Code sends them): kept where
        # it is; each target family puts it in its own form.
        messages.append(_system(content, f"{where}.content"))
        return
    if type(content) is str:
        messages.append({"role": role, "content": content})
        return
    if type(content) is not list or not content:
        raise fail(
            f"{where}.content", "must be a string or a non-empty array of content blocks", content
        )
    if role == "user":
        _user(content, where, messages)
    else:
        messages.append(_assistant(content, where, ctx))


def _user(content: list[Any], where: str, messages: list[dict[str, Any]]) -> None:
    """Tool results become tool turns (first: they answer the previous assistant turn), the
    other blocks one user turn after them."""
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _obj(block, at).get("type")
        if kind == "tool_result":
            messages.append(_tool_result(block, at))
        elif kind == "text":
            parts.append(_text(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            parts.append(_document(block, at))
        else:
            raise fail(
                f"{at}.type", f"must be one of {', '.join(_USER_BLOCKS)} in a user turn", kind
            )
    if len(parts) == 1 and len(parts[0]) == 2 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})


def _cache(block: dict[str, Any], part: dict[str, Any], where: str) -> dict[str, Any]:
    cache = block.get("cache_control")
    if cache is not None:
        part["cache_control"] = _obj(cache, f"{where}.cache_control")
    return part


def _text(block: dict[str, Any], where: str) -> dict[str, Any]:
    text = _string(block.get("text"), f"{where}.text")
    return _cache(block, {"type": "text", "text": text}, where)


def _source(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _obj(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "file":
        raise fail(f"{where}.source.type", "'file' (the Files API) has no form other vendors take")
    return source


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _source(block, where)
    kind = one_of(source.get("type"), f"{where}.source.type", ("base64", "url"))
    if kind == "url":
        url = _string(source.get("url"), f"{where}.source.url", empty=False)
    else:
        media = one_of(source.get("media_type"), f"{where}.source.media_type", _MEDIA_TYPES)
        data = _string(source.get("data"), f"{where}.source.data", empty=False)
        url = f"data:{media};base64,{data}"
    return _cache(block, {"type": "image_url", "image_url": {"url": url}}, where)


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _source(block, where)
    one_of(source.get("type"), f"{where}.source.type", ("base64",))
    one_of(source.get("media_type"), f"{where}.source.media_type", ("application/pdf",))
    data = _string(source.get("data"), f"{where}.source.data", empty=False)
    part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}"}}
    return _cache(block, part, where)


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _string(block.get("tool_use_id"), f"{where}.tool_use_id", empty=False)
    content = block.get("content")
    if content is None:
        content = ""
    elif type(content) is list:
        parts = []
        for k, inner in enumerate(content):
            at = f"{where}.content.{k}"
            kind = _obj(inner, at).get("type")
            if kind == "text":
                parts.append(_text(inner, at))
            elif kind == "image":
                parts.append(_image(inner, at))
            else:
                raise fail(f"{at}.type", "must be 'text' or 'image' in a tool_result", kind)
        content = parts
    elif type(content) is not str:
        raise fail(
            f"{where}.content", f"must be a string or an array of blocks, got {kind_of(content)}"
        )
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": content}
    error = block.get("is_error")
    if error is not None and type(error) is not bool:
        raise fail(f"{where}.is_error", "must be a boolean", error)
    if error:
        message["is_error"] = True
    return _cache(block, message, where)


def _assistant(content: list[Any], where: str, ctx: Translation) -> dict[str, Any]:
    texts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    cache = None
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = _obj(block, at).get("type")
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            ident = _string(block.get("id"), f"{at}.id", empty=False)
            name = _string(block.get("name"), f"{at}.name", empty=False)
            arguments = orjson.dumps(_obj(block.get("input"), f"{at}.input")).decode()
            function = {"name": name, "arguments": arguments}
            calls.append({"id": ident, "type": "function", "function": function})
            if block.get("cache_control") is not None:
                # A canonical call has no cache mark: on the turn's last block it is the
                # message's (which goes back on the turn's last block, its last tool_use).
                if j == len(content) - 1:
                    cache = _obj(block["cache_control"], f"{at}.cache_control")
                else:
                    _drop(ctx, "cache_control", f"{at}.cache_control")
        elif kind == "thinking":
            _string(block.get("thinking"), f"{at}.thinking")
            # A block without a signature came from another vendor's reasoning (see
            # answer_encode): no vendor could verify it, so it is not sent back.
            if _string(block.get("signature"), f"{at}.signature"):
                thinking.append(block)
        elif kind == "redacted_thinking":
            _string(block.get("data"), f"{at}.data", empty=False)
            thinking.append(block)
        else:
            raise fail(
                f"{at}.type",
                f"must be one of {', '.join(_ASSISTANT_BLOCKS)} in an assistant turn",
                kind,
            )
    message: dict[str, Any] = {"role": "assistant"}
    if any(len(part) > 2 for part in texts):
        message["content"] = texts
    else:
        message["content"] = "".join(part["text"] for part in texts) if texts else None
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    if cache is not None:
        message["cache_control"] = cache
    return message


def _tool(value: Any, where: str, ctx: Translation) -> dict[str, Any]:
    tool = _obj(value, where)
    kind = tool.get("type")
    if kind is not None and kind != "custom":
        # One of Anthropic's server tools (web search, code execution, ...): only an
        # Anthropic deployment runs it; another family's adapter refuses it.
        _string(tool.get("name"), f"{where}.name", empty=False)
        return tool
    for key in tool:
        if key not in _TOOL_KEYS:
            if key == "defer_loading":
                _drop(ctx, "defer_loading", f"{where}.defer_loading")
            else:
                _drop(ctx, "unknown_fields", f"{where}.{key}")
    name = _string(tool.get("name"), f"{where}.name", empty=False)
    schema = _obj(tool.get("input_schema"), f"{where}.input_schema")
    if schema.get("type") != "object":
        raise fail(f"{where}.input_schema.type", "must be 'object'", schema.get("type"))
    function: dict[str, Any] = {"name": name, "parameters": schema}
    description = tool.get("description")
    if description is not None:
        function["description"] = _string(description, f"{where}.description")
    strict = tool.get("strict")
    if strict is not None:
        if type(strict) is not bool:
            raise fail(f"{where}.strict", "must be a boolean", strict)
        function["strict"] = strict
    return _cache(tool, {"type": "function", "function": function}, where)


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    choice = _obj(choice, "tool_choice")
    kind = one_of(choice.get("type"), "tool_choice.type", _CHOICES)
    if kind == "tool":
        name = _string(choice.get("name"), "tool_choice.name", empty=False)
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    for key in choice:
        if key not in ("type", "name", "disable_parallel_tool_use"):
            raise fail(f"tool_choice.{key}", "Extra inputs are not permitted")
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None:
        if type(parallel) is not bool:
            raise fail("tool_choice.disable_parallel_tool_use", "must be a boolean", parallel)
        if parallel and kind != "none":
            out["parallel_tool_calls"] = False


def _thinking(thinking: Any, out: dict[str, Any], ctx: Translation) -> None:
    """Extended thinking with a budget as the canonical ``reasoning_effort``: the level whose
    budget is the largest not above ``budget_tokens`` (an Anthropic deployment thinks with
    that budget). Adaptive thinking has no budget to map: it is a hint, dropped."""
    thinking = _obj(thinking, "thinking")
    kind = one_of(thinking.get("type"), "thinking.type", ("enabled", "disabled", "adaptive"))
    if kind == "disabled":
        return
    if kind == "adaptive":
        _drop(ctx, "thinking", "thinking")
        return
    budget = integer(thinking.get("budget_tokens"), "thinking.budget_tokens", 1024)
    max_tokens = out.get("max_tokens")
    if max_tokens is not None and max_tokens <= budget:
        raise fail(
            "max_tokens", f"must be greater than thinking.budget_tokens ({budget})", max_tokens
        )
    out["reasoning_effort"] = next(effort for low, effort in _EFFORTS if low <= budget)
    if any(key not in ("type", "budget_tokens") for key in thinking):
        _drop(ctx, "thinking", "thinking.display")


def _output_config(config: Any, out: dict[str, Any], ctx: Translation) -> None:
    config = _obj(config, "output_config")
    for key in config:
        if key == "effort":
            _drop(ctx, "effort", "output_config.effort")
        elif key != "format":
            _drop(ctx, "unknown_fields", f"output_config.{key}")
    fmt = config.get("format")
    if fmt is None:
        return
    fmt = _obj(fmt, "output_config.format")
    one_of(fmt.get("type"), "output_config.format.type", ("json_schema",))
    schema = _obj(fmt.get("schema"), "output_config.format.schema")
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
