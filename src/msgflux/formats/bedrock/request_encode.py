"""Canonical (OpenAI chat) requests as Bedrock Converse bodies.

:func:`to_converse` is the translation a chat request answered through Bedrock's Converse API
(``/model/{id}/converse`` and ``/converse-stream``) goes through; the provider adapter adds
the URL, whose path names the model, and signs it. What maps to what: system and developer
turns become ``system`` text blocks; user turns ``text``, ``image`` (``data:`` URLs, as
base64 bytes) and ``document`` (``file_data``) blocks; assistant turns ``text`` and
``toolUse`` blocks, their signed ``thinking_blocks`` ``reasoningContent`` blocks (first);
consecutive ``tool`` turns one user turn of ``toolResult`` blocks (``status: error`` for a
result flagged ``is_error``); ``cache_control`` on a part, a message or a tool a
``cachePoint`` after it. Converse needs alternating roles: consecutive turns of one role are
merged. ``max_tokens`` -> ``inferenceConfig.maxTokens``, ``temperature``, ``top_p`` ->
``topP``, ``stop`` -> ``stopSequences``; ``tools`` -> ``toolConfig.tools`` (``toolSpec``
with ``inputSchema.json``), ``tool_choice`` ``auto``/``required``/a name -> ``auto``/``any``/
``tool`` (``none``: the tools are not sent, unless the conversation holds tool calls, which
Converse cannot take without them); ``response_format`` ``json_schema`` ->
``outputConfig.textFormat``; ``service_tier`` ``flex``/``priority``/``default`` ->
``serviceTier``.

What the model reads beyond that goes in ``additionalModelRequestFields``: ``top_k``
(``inferenceConfig.topK`` for Amazon Nova), ``reasoning_effort`` and ``thinking`` for Claude
(extended thinking with the Anthropic budgets), and any field this module does not know (a
vendor field). Converse's own fields (``guardrailConfig``, ``additionalModelRequestFields``,
``requestMetadata``, ``performanceConfig``, ``promptVariables``, ...) pass through, merged
over ours. What Converse has no form for is lost through the
:class:`~msgflux.formats.policy.Translation`: ``seed``, ``store``, ``metadata``, ``user``...
are dropped and reported; ``n > 1``, logprobs, penalties, audio, ``parallel_tool_calls=False``,
``json_object`` output and a tool type Converse lacks refuse by default.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from msgflux.formats.anthropic.request_encode import THINKING_BUDGETS
from msgflux.formats.common import Where, data_url, loc, text_parts, tool_arguments, unsupported
from msgflux.formats.policy import Translation, check_portable

__all__ = ["CONVERSE_FIELDS", "NAME", "converse_messages", "is_anthropic", "to_converse"]

NAME = "Bedrock Converse"

CONVERSE_FIELDS = frozenset(
    (
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
        "inferenceConfig",
        "toolConfig",
        "projectIdentifier",
    )
)
"""Converse's own request fields: a canonical body holding one sends it as it is (merged
over what the translation made of the OpenAI fields)."""

_CACHE_POINT: dict[str, Any] = {"cachePoint": {"type": "default"}}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9 \-()\[\]]+")
"""Characters a document's name may not hold (Converse refuses them)."""
_BASIC = frozenset(("messages", "max_tokens", "max_completion_tokens"))
_DROPPED = {
    "user": "user",
    "safety_identifier": "user",
    "metadata": "metadata",
    "seed": "seed",
    "store": "store",
    "prompt_cache_key": "prompt_cache_key",
    "verbosity": "verbosity",
}
"""OpenAI fields Converse has no use for (they change nothing a caller reads) -> feature."""
_HANDLED = frozenset(
    (
        *_DROPPED,
        *CONVERSE_FIELDS,
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
        "service_tier",
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


def is_anthropic(model_id: str) -> bool:
    """Whether a Bedrock model id (or inference profile, or ARN) names a Claude model."""
    return "anthropic." in model_id or "claude" in model_id


# -- the messages -------------------------------------------------------------------------------
def _image(url: Any, where: Where) -> dict[str, Any]:
    if not isinstance(url, str):
        raise TypeError(f"{loc(where)} must be a URL str")
    parsed = data_url(url, where)
    if parsed is None:
        raise unsupported(NAME, f"take an image by URL in {loc(where)} (only data: URLs)")
    fmt = _IMAGE_FORMATS.get(parsed[0])
    if fmt is None:
        raise unsupported(NAME, f"take a {parsed[0]} image in {loc(where)}")
    return {"image": {"format": fmt, "source": {"bytes": parsed[1]}}}


def _document(file: Any, where: Where) -> dict[str, Any]:
    file_data = file.get("file_data") if isinstance(file, dict) else None
    parsed = data_url(file_data, where) if isinstance(file_data, str) else None
    if parsed is None:
        raise unsupported(NAME, f"take a file part without a data: URL in {loc(where)}")
    fmt = _DOCUMENT_FORMATS.get(parsed[0])
    if fmt is None:
        raise unsupported(NAME, f"take a {parsed[0]} document in {loc(where)}")
    assert isinstance(file, dict)
    raw_name = file.get("filename")
    name = _NOT_A_NAME.sub(" ", raw_name.rsplit(".", 1)[0]).strip() if raw_name else ""
    if not name:
        name = "document " + "-".join(str(p) for p in (where if isinstance(where, tuple) else ()))
    return {"document": {"format": fmt, "name": name[:200], "source": {"bytes": parsed[1]}}}


def _part(part: Any, where: Where) -> list[dict[str, Any]]:
    """The blocks of one content part (the part's own, then its cache point)."""
    if type(part) is not dict:
        raise TypeError(f"{loc(where)} must be a content part dict")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if type(text) is not str:
            raise TypeError(f"{loc(where)}['text'] must be a str")
        blocks: list[dict[str, Any]] = [{"text": text}] if text else []
    elif kind == "image_url":
        image = part.get("image_url")
        blocks = [_image(image.get("url") if isinstance(image, dict) else image, where)]
    elif kind == "file":
        blocks = [_document(part.get("file"), where)]
    else:
        raise unsupported(NAME, f"take a {kind!r} content part ({loc(where)})")
    if blocks and part.get("cache_control") is not None:
        blocks.append(_CACHE_POINT)
    return blocks


def _parts(content: Any, i: int) -> list[dict[str, Any]]:
    if type(content) is str:
        return [{"text": content}] if content else []
    if type(content) is not list:
        raise TypeError(f"messages[{i}]['content'] must be a str or a list of content parts")
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        out.extend(_part(part, (i, "content", j)))
    return out


def _reasoning(blocks: Any, i: int, ctx: Translation) -> list[dict[str, Any]]:
    """Signed thinking blocks as ``reasoningContent`` (another vendor's reasoning is lost)."""
    out: list[dict[str, Any]] = []
    for block in blocks if type(blocks) is list else ():
        kind = block.get("type") if type(block) is dict else None
        if kind == "thinking" and block.get("signature"):
            text = {"text": block.get("thinking") or "", "signature": block["signature"]}
            out.append({"reasoningContent": {"reasoningText": text}})
        elif kind == "redacted_thinking" and block.get("data"):
            out.append({"reasoningContent": {"redactedContent": block["data"]}})
        else:
            ctx.lose(
                "thinking_blocks",
                f"messages[{i}].thinking_blocks",
                NAME,
                "take reasoning it did not sign",
            )
    return out


def _tool_use(call: Any, i: int, j: int) -> dict[str, Any]:
    function = call.get("function") if type(call) is dict else None
    name = function.get("name") if type(function) is dict else None
    if type(name) is not str:
        raise TypeError(
            f"messages[{i}]['tool_calls'][{j}] must be a dict with a 'function' naming the tool"
        )
    assert function is not None and type(call) is dict
    raw = function.get("arguments")
    args = raw if type(raw) is dict else tool_arguments(raw, (i, "tool_calls", j, "function"))
    return {
        "toolUse": {"toolUseId": call.get("id") or f"tooluse_{i}_{j}", "name": name, "input": args}
    }


def _assistant(message: dict[str, Any], i: int, last: bool, ctx: Translation) -> list[Any]:
    blocks = _reasoning(message.get("thinking_blocks"), i, ctx)
    content = message.get("content")
    if type(content) is list:
        content = [
            {"type": "text", "text": p.get("refusal") or ""}
            if type(p) is dict and p.get("type") == "refusal"
            else p
            for p in content
        ]
    if content is not None:
        blocks.extend(_parts(content, i))
    for j, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, i, j))
    if last and blocks and "text" in blocks[-1]:
        # Claude refuses a final (prefilled) assistant turn that ends with whitespace.
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {"text": text}
        else:
            blocks.pop()
    return blocks


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if type(call_id) is not str or not call_id:
        raise ValueError(f"messages[{i}] is a tool message without a tool_call_id")
    content = message.get("content")
    parts = _parts(content, i) if content is not None else []
    result: dict[str, Any] = {
        "toolUseId": call_id,
        "content": [p for p in parts if "cachePoint" not in p] or [{"text": ""}],
    }
    if message.get("is_error") is True:
        result["status"] = "error"
    return {"toolResult": result}


def converse_messages(
    messages: list[dict[str, Any]], ctx: Translation
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """``(system blocks, messages, names of the tools the conversation used)`` of Converse for
    OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    last = len(messages) - 1
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        blocks: list[dict[str, Any]]
        if role == "user":
            turn = "user"
            blocks = _parts(content, i)
        elif role == "tool":
            turn = "user"
            blocks = [_tool_result(message, i)]
        elif role == "assistant":
            turn = "assistant"
            blocks = _assistant(message, i, i == last, ctx)
            used.update(b["toolUse"]["name"] for b in blocks if "toolUse" in b)
        elif role in ("system", "developer"):
            system.extend({"text": t} for t in text_parts(content, (i, "content"), NAME) if t)
            if message.get("cache_control") is not None or (
                type(content) is list
                and any(type(p) is dict and p.get("cache_control") for p in content)
            ):
                system.append(_CACHE_POINT)
            continue
        else:
            raise unsupported(NAME, f"take a {role!r} message (messages[{i}])")
        if blocks and message.get("cache_control") is not None:
            blocks.append(_CACHE_POINT)
        if not blocks:
            continue
        if out and out[-1]["role"] == turn:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": turn, "content": blocks})
    if not out:
        raise ValueError("messages must hold at least one user or assistant message")
    return system, out, used


# -- tools ----------------------------------------------------------------------------------------
def _tools(tools: list[Any], ctx: Translation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if type(tool) is not dict:
            raise TypeError(f"tools[{i}] must be a dict")
        if tool.get("type") != "function":
            kind = tool.get("type")
            ctx.lose("builtin_tools", f"tools[{i}]", NAME, f"take a {kind!r} tool (tools[{i}])")
            continue
        function = tool.get("function")
        name = function.get("name") if type(function) is dict else None
        if type(name) is not str:
            raise TypeError(f"tools[{i}] must have a 'function' with a 'name'")
        assert function is not None
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
        if function.get("description"):
            spec["description"] = function["description"]
        if function.get("strict") is True:
            spec["strict"] = True
        out.append({"toolSpec": spec})
        if tool.get("cache_control") is not None:
            out.append(_CACHE_POINT)
    return out


def _stand_ins(names: set[str]) -> list[dict[str, Any]]:
    """Tool specs for the tools a conversation used when the request lists none (Converse
    refuses ``toolUse`` blocks without a ``toolConfig``)."""
    schema = {"type": "object", "properties": {}}
    return [{"toolSpec": {"name": n, "inputSchema": {"json": schema}}} for n in sorted(names)]


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return {"auto": {}} if choice else None
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"tool": {"name": choice["function"].get("name")}}
    raise ValueError(f"tool_choice {choice!r} has no Converse form")


# -- the body -----------------------------------------------------------------------------------
def to_converse(body: dict[str, Any], *, model_id: str, ctx: Translation) -> dict[str, Any]:
    """The Converse body for the canonical ``body`` (see the module docstring); ``model_id``
    says where model-specific fields go (Claude's thinking, Nova's ``topK``)."""
    body = check_portable(body, NAME, ctx)
    system, messages, used = converse_messages(body["messages"], ctx)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    config: dict[str, Any] = {} if max_tokens is None else {"maxTokens": max_tokens}
    extra: dict[str, Any] = {}
    if not _BASIC.issuperset(body):
        _options(body, out, config, extra, used, model_id, ctx)
    elif used:
        out["toolConfig"] = {"tools": _stand_ins(used)}
    if config:
        out["inferenceConfig"] = {**config, **(body.get("inferenceConfig") or {})}
    if extra:
        out["additionalModelRequestFields"] = extra
    return out


def _options(
    body: dict[str, Any],
    out: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any],
    used: set[str],
    model_id: str,
    ctx: Translation,
) -> None:
    """Everything but the messages and the token limit (most calls have none of it)."""
    claude = is_anthropic(model_id)
    for name, value in body.items():
        if name not in _HANDLED:
            extra[name] = value  # a vendor field: the model reads it
        elif name in _DROPPED:
            ctx.lose(_DROPPED[name], name, NAME, f"take {name}")
    if "temperature" in body:
        config["temperature"] = body["temperature"]
    if "top_p" in body:
        config["topP"] = body["top_p"]
    if "stop" in body:
        stop = body["stop"]
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if "top_k" in body:
        if "amazon.nova" in model_id:
            extra["inferenceConfig"] = {"topK": body["top_k"]}
        else:
            extra["top_k"] = body["top_k"]
    _thinking(body, config, extra, claude, ctx)
    if body.get("parallel_tool_calls") is False:
        ctx.lose(
            "parallel_tool_calls",
            "parallel_tool_calls",
            NAME,
            "promise one tool call at most (parallel_tool_calls=False)",
        )
    _tool_config(body, out, used, ctx)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        _structured(fmt, out, ctx)
    tier = body.get("service_tier")
    if isinstance(tier, str):
        if tier in ("flex", "priority", "default"):
            out["serviceTier"] = {"type": tier}
        elif tier != "auto":
            ctx.lose("service_tier", "service_tier", NAME, f"take service_tier {tier!r}")
    for name in CONVERSE_FIELDS:
        value = body.get(name)
        if name == "additionalModelRequestFields" and isinstance(value, dict):
            extra.update(value)
        elif name != "inferenceConfig" and value is not None:
            out[name] = value


def _thinking(
    body: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any],
    claude: bool,
    ctx: Translation,
) -> None:
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if thinking is None and effort is None:
        return
    if not claude:
        field = "thinking" if thinking is not None else "reasoning_effort"
        ctx.lose("thinking", field, NAME, f"take {field} for this model")
        return
    if thinking is None and effort != "none":
        budget = THINKING_BUDGETS.get(str(effort))
        if budget is None:
            raise ValueError(
                f"reasoning_effort must be one of {[*THINKING_BUDGETS, 'none']} "
                f"for Claude on Bedrock, got {effort!r}"
            )
        thinking = {"type": "enabled", "budget_tokens": budget}
        if config.get("maxTokens", 0) <= budget:
            config["maxTokens"] = config.get("maxTokens", 4096) + budget
    if thinking is not None:
        extra["thinking"] = thinking


def _tool_config(
    body: dict[str, Any], out: dict[str, Any], used: set[str], ctx: Translation
) -> None:
    tools = _tools(body.get("tools") or [], ctx)
    choice = body.get("tool_choice")
    if choice == "none":
        if used:
            ctx.lose(
                "tool_choice",
                "tool_choice",
                NAME,
                "forbid tool calls in a conversation that made some (tool_choice='none')",
            )
        else:
            tools = []
    if not tools and used:
        tools = _stand_ins(used)
    if tools:
        config: dict[str, Any] = {"tools": tools}
        converse_choice = _tool_choice(choice if choice != "none" else None)
        if converse_choice is not None:
            config["toolChoice"] = converse_choice
        out["toolConfig"] = config


def _structured(fmt: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    kind = fmt["type"]
    if kind != "json_schema":
        ctx.lose("response_format", "response_format", NAME, f"take response_format {kind!r}")
        return
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ValueError("response_format json_schema needs a 'json_schema': {'schema': {...}}")
    assert isinstance(spec, dict)
    definition: dict[str, Any] = {
        "schema": orjson.dumps(schema).decode(),
        "name": spec.get("name") or "answer",
    }
    if spec.get("description"):
        definition["description"] = spec["description"]
    text_format = {"type": "json_schema", "structure": {"jsonSchema": definition}}
    out["outputConfig"] = {"textFormat": text_format}
