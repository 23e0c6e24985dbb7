"""Canonical (OpenAI chat) requests as Responses API bodies.

:func:`to_responses` is the translation a request of another family goes through when a
deployment that speaks the Responses API answers it (and the way back of
:func:`~.request_decode.to_canonical`, which round trips test). What maps to what: the leading
system (or developer) turn, when it is plain text, becomes ``instructions``, any other one a
``developer`` message; user content parts become ``input_text``/``input_image``/
``input_file``/``input_audio`` parts; an assistant turn a ``message`` item of
``output_text``/``refusal`` parts and one ``function_call`` item per tool call (its reasoning
is dropped, see below); a tool turn a ``function_call_output`` item; function tools and
``tool_choice`` their Responses form, a function never strict unless it says so (the
Responses API's default is strict, chat's is not); chat's ``custom`` tools and calls their
Responses form too; ``response_format`` -> ``text.format``,
``verbosity`` -> ``text.verbosity``, ``reasoning_effort`` -> ``reasoning.effort``,
``max_tokens``/``max_completion_tokens`` -> ``max_output_tokens``. A function named
``NS__name`` keeps its name: the canonical form does not say it came from a namespace.

``store`` is false unless the body says otherwise (the Responses API stores by default, the
canonical form does not). What the Responses API cannot take follows the policy: another
vendor's reasoning, signatures and cache marks are dropped (OpenAI reads only the reasoning
it encrypted itself), as are ``seed`` and ``top_k``; ``stop`` refuses, and so do ``n > 1``,
logprobs, penalties and audio (:func:`~msgflux.formats.policy.check_portable`). Vendor fields
pass through.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import unsupported
from msgflux.formats.openai_chat import without_vendor_fields
from msgflux.formats.policy import Translation, check_portable

__all__ = ["NAME", "responses_input", "to_responses"]

NAME = "OpenAI's Responses API"

_HANDLED = frozenset(
    (
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "verbosity",
        "reasoning_effort",
        "stop",
        "seed",
        "top_k",
        "stream",
        "stream_options",
        # refused (or dropped) by check_portable
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "presence_penalty",
        "frequency_penalty",
    )
)


def _where(i: int, *rest: Any) -> str:
    return f"messages[{i}]" + "".join(f"[{p!r}]" for p in rest)


def _part(part: Any, where: str) -> dict[str, Any]:
    """A user (or tool result) content part as an input part."""
    kind = part.get("type") if type(part) is dict else None
    if kind == "text":
        return {"type": "input_text", "text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if type(image) is dict else image
        if type(url) is not str:
            raise TypeError(f"{where}['image_url'] must hold a URL str")
        detail = image.get("detail") if type(image) is dict else None
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        file = part.get("file")
        if type(file) is not dict:
            raise TypeError(f"{where}['file'] must be a dict")
        out: dict[str, Any] = {"type": "input_file"}
        for key in ("file_data", "file_id", "filename"):
            if file.get(key) is not None:
                out[key] = file[key]
        return out
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio")}
    raise unsupported(NAME, f"take a {kind!r} content part ({where})")


def _content(content: Any, where: str) -> Any:
    if content is None:
        return ""
    if type(content) is str:
        return content
    if type(content) is not list:
        raise TypeError(f"{where} must be a str or a list of content parts")
    return [_part(part, f"{where}[{j}]") for j, part in enumerate(content)]


def _assistant(message: dict[str, Any], i: int, items: list[dict[str, Any]]) -> set[str]:
    """The items of an assistant turn; returns the ids of its custom tool calls."""
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    pieces = [content] if type(content) is str else (content or [])
    for j, piece in enumerate(pieces):
        if type(piece) is str:
            text: Any = piece
        elif type(piece) is dict and piece.get("type") == "refusal":
            parts.append({"type": "refusal", "refusal": piece.get("refusal") or ""})
            continue
        elif type(piece) is dict and piece.get("type") == "text":
            text = piece.get("text")
        else:
            kind = piece.get("type") if type(piece) is dict else type(piece).__name__
            raise unsupported(NAME, f"take a {kind!r} part in {_where(i, 'content', j)}")
        if text:
            parts.append({"type": "output_text", "text": text})
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append({"type": "message", "role": "assistant", "content": parts})
    custom: set[str] = set()
    for j, call in enumerate(message.get("tool_calls") or ()):
        if type(call) is not dict:
            raise TypeError(f"{_where(i, 'tool_calls', j)} must be a dict")
        call_id = call.get("id") or f"call_{i}_{j}"
        if call.get("type") == "custom":
            spec = call.get("custom") or {}
            custom.add(call_id)
            items.append(
                {
                    "type": "custom_tool_call",
                    "call_id": call_id,
                    "name": spec.get("name"),
                    "input": spec.get("input") or "",
                }
            )
            continue
        function = call.get("function")
        if type(function) is not dict or type(function.get("name")) is not str:
            raise TypeError(f"{_where(i, 'tool_calls', j)} must name its function")
        arguments = function.get("arguments")
        if type(arguments) is not str:
            arguments = orjson.dumps(arguments).decode() if arguments is not None else "{}"
        items.append(
            {
                "type": "function_call",
                "call_id": call_id,
                "name": function["name"],
                "arguments": arguments,
            }
        )
    return custom


def responses_input(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, input items)`` of the Responses API for chat messages."""
    instructions = None
    items: list[dict[str, Any]] = []
    custom: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if i == 0 and type(content) is str:
                instructions = content
            else:
                parts = _content(content, _where(i, "content"))
                items.append({"type": "message", "role": "developer", "content": parts})
        elif role == "user":
            parts = _content(content, _where(i, "content"))
            items.append({"type": "message", "role": "user", "content": parts})
        elif role == "assistant":
            custom |= _assistant(message, i, items)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if type(call_id) is not str or not call_id:
                raise ValueError(f"messages[{i}] is a tool message without a tool_call_id")
            kind = "custom_tool_call_output" if call_id in custom else "function_call_output"
            output = _content(content, _where(i, "content"))
            items.append({"type": kind, "call_id": call_id, "output": output})
        else:
            raise unsupported(NAME, f"take a {role!r} message (messages[{i}])")
    return instructions, items


def _tool(tool: dict[str, Any], i: int, ctx: Translation) -> dict[str, Any] | None:
    kind = tool.get("type")
    if kind == "custom":
        spec = tool.get("custom") or {}
        return {"type": "custom", **spec}
    if kind != "function":
        ctx.lose("builtin_tools", f"tools[{i}]", NAME, f"take a {kind!r} tool (tools[{i}])")
        return None
    function = tool.get("function")
    if type(function) is not dict or type(function.get("name")) is not str:
        raise TypeError(f"tools[{i}] must have a 'function' with a 'name'")
    out: dict[str, Any] = {"type": "function", "name": function["name"]}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    # The Responses API makes a function strict unless told otherwise; chat does not.
    out["strict"] = function.get("strict") is True
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    kind = choice.get("type") if type(choice) is dict else None
    if kind == "function" and type(choice.get("function")) is dict:
        return {"type": "function", "name": choice["function"].get("name")}
    if kind == "custom" and type(choice.get("custom")) is dict:
        return {"type": "custom", "name": choice["custom"].get("name")}
    if kind == "allowed_tools" and type(choice.get("allowed_tools")) is dict:
        allowed = choice["allowed_tools"]
        tools = [
            {"type": t.get("type"), "name": (t.get(t.get("type")) or {}).get("name")}
            for t in allowed.get("tools") or ()
            if type(t) is dict
        ]
        return {"type": "allowed_tools", "mode": allowed.get("mode") or "auto", "tools": tools}
    raise ValueError(f"tool_choice {choice!r} has no Responses API form")


def _format(fmt: Any) -> dict[str, Any] | None:
    kind = fmt.get("type") if type(fmt) is dict else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise ValueError(f"response_format {fmt!r} has no Responses API form")
    spec = fmt.get("json_schema")
    if type(spec) is not dict or type(spec.get("schema")) is not dict:
        raise ValueError("response_format json_schema needs a 'json_schema': {'schema': {...}}")
    out = {"type": "json_schema", "name": spec.get("name") or "output", "schema": spec["schema"]}
    for key in ("strict", "description"):
        if spec.get(key) is not None:
            out[key] = spec[key]
    return out


# -- the body -----------------------------------------------------------------------------------
def to_responses(
    body: dict[str, Any], *, model_id: str, stream: bool, ctx: Translation
) -> dict[str, Any]:
    """The Responses API body for the canonical ``body`` (see the module docstring)."""
    body = without_vendor_fields(check_portable(body, NAME, ctx), ctx, NAME)
    instructions, items = responses_input(body["messages"])
    out: dict[str, Any] = {"model": model_id}
    if instructions is not None:
        out["instructions"] = instructions
    out["input"] = items
    for name, value in body.items():
        if name not in _HANDLED:
            out[name] = value  # the fields both APIs share, and vendor fields
    out.setdefault("store", False)
    _options(body, out, ctx)
    if stream:
        out["stream"] = True
    return out


def _options(body: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if tokens is not None:
        out["max_output_tokens"] = tokens
    for name, feature in (("seed", "seed"), ("top_k", "top_k")):
        if name in body:
            ctx.lose(feature, name, NAME, f"take {name}")
    if body.get("stop"):
        ctx.lose("stop", "stop", NAME, "take stop sequences")
    tools = []
    for i, tool in enumerate(body.get("tools") or ()):
        made = _tool(tool, i, ctx)
        if made is not None:
            tools.append(made)
    if tools:
        out["tools"] = tools
        if "tool_choice" in body:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
        if "parallel_tool_calls" in body:
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    text: dict[str, Any] = {}
    if body.get("response_format") is not None:
        text["format"] = _format(body["response_format"])
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
    if body.get("reasoning_effort") is not None:
        out["reasoning"] = {"effort": body["reasoning_effort"]}
