"""Canonical (OpenAI chat) requests as Gemini ``generateContent`` bodies.

:func:`to_gemini` is the translation a chat request answered by Gemini goes through (the
provider adapter adds the URL, whose path names the model, and the key). What maps to what:
system and developer turns become ``systemInstruction``; user turns ``contents`` with role
``user`` (text parts; images and files as ``inlineData`` from ``data:`` URLs or ``fileData``
from other URLs; ``input_audio`` as ``inlineData``); assistant turns role ``model`` with
``functionCall`` parts (the ``thoughtSignature`` Gemini gave is sent back from the tool
call's ``extra_content.google.thought_signature``); consecutive ``tool`` turns one user turn
of ``functionResponse`` parts (named after the call they answer; a JSON object result is the
response, other text is ``{"result": text}``). ``max_tokens`` -> ``maxOutputTokens``,
``temperature``, ``top_p``/``top_k`` -> ``topP``/``topK``, ``stop`` -> ``stopSequences``,
``seed``, ``n`` -> ``candidateCount``, penalties, ``reasoning_effort`` -> ``thinkingConfig``
(``thinkingLevel`` on Gemini 3, else ``thinkingBudget``, with ``includeThoughts``),
``response_format`` -> ``responseMimeType`` and ``responseSchema`` (the JSON schema in
Gemini's OpenAPI subset, :mod:`.schema`; with ``structured_output="json_schema"`` it is sent
unchanged as ``responseJsonSchema``), tools -> ``functionDeclarations`` (``parameters`` in
the same subset, or ``parametersJsonSchema``), ``tool_choice`` -> ``functionCallingConfig``
(``AUTO``/``ANY``/``NONE``, ``allowedFunctionNames``).

Unknown fields pass through (``safetySettings``, ``cachedContent``; ``generationConfig`` is
merged over ours). What Gemini has no form for is lost through the
:class:`~msgflux.formats.policy.Translation`: OpenAI fields that change nothing a caller
reads (``user``, ``metadata``, ``store``, ...) are dropped and reported; logprobs, audio
output, ``parallel_tool_calls=False``, an output format other than JSON and a tool type
Gemini lacks refuse by default (the deployment is skipped).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import Where, data_url, loc, text_parts, tool_arguments, unsupported
from msgflux.formats.gemini.schema import cached_schema
from msgflux.formats.policy import Translation, check_portable

__all__ = [
    "NAME",
    "THINKING_BUDGETS",
    "THINKING_LEVELS",
    "gemini_contents",
    "to_gemini",
]

NAME = "Gemini"

THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
"""``reasoning_effort`` -> ``thinkingBudget`` (Gemini 2.x)."""
THINKING_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM"}
"""``reasoning_effort`` -> ``thinkingLevel`` (Gemini 3; anything else is ``HIGH``)."""

_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_BASIC = frozenset(("messages", "max_tokens", "max_completion_tokens"))
_CONFIG_FIELDS = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
"""OpenAI fields that are ``generationConfig`` fields under another name."""
_DROPPED = {
    "user": "user",
    "safety_identifier": "user",
    "metadata": "metadata",
    "store": "store",
    "service_tier": "service_tier",
    "prompt_cache_key": "prompt_cache_key",
    "verbosity": "verbosity",
}
"""OpenAI fields Gemini has no use for (they change nothing a caller reads) -> feature."""
_HANDLED = frozenset(
    (
        *_DROPPED,
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "generationConfig",
        "toolConfig",
        "stream_options",
        # refused (or dropped) by check_portable
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
    )
)


# -- the messages -------------------------------------------------------------------------------
def _media(url: Any, where: Where, default_mime: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise TypeError(f"{loc(where)} must be a URL str")
    parsed = data_url(url, where)
    if parsed is not None:
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    return {"fileData": {"mimeType": default_mime, "fileUri": url}}


def _image_mime(url: str) -> str:
    lowered = url.lower().split("?", 1)[0]
    for ext, mime in ((".png", "image/png"), (".webp", "image/webp"), (".gif", "image/gif")):
        if lowered.endswith(ext):
            return mime
    return "image/jpeg"


def _part(part: Any, where: Where) -> dict[str, Any]:
    if type(part) is not dict:
        raise TypeError(f"{loc(where)} must be a content part dict")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if type(text) is not str:
            raise TypeError(f"{loc(where)}['text'] must be a str")
        return {"text": text}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _media(url, where, _image_mime(url) if isinstance(url, str) else "")
    if kind == "file":
        file = part.get("file")
        file_data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(file_data, str) or data_url(file_data, where) is None:
            raise unsupported(NAME, f"take a file part without a data: URL in {loc(where)}")
        return _media(file_data, where, "")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise TypeError(
                f"{loc(where)}['input_audio'] must be {{'data': base64, 'format': ...}}"
            )
        mime = f"audio/{audio.get('format') or 'wav'}"
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    raise unsupported(NAME, f"take a {kind!r} content part ({loc(where)})")


def _function_response(content: Any, i: int) -> dict[str, Any]:
    text = content if type(content) is str else "".join(text_parts(content, (i, "content"), NAME))
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"result": text}


def gemini_contents(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(systemInstruction parts, contents)`` for OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        parts: list[dict[str, Any]]
        if role == "user":
            if type(content) is str:
                parts = [{"text": content}]
            elif type(content) is list:
                parts = [_part(p, (i, "content", j)) for j, p in enumerate(content)]
            else:
                raise TypeError(f"messages[{i}]['content'] must be a str or a list of parts")
            turn = "user"
        elif role == "assistant":
            if type(content) is str:
                parts = [{"text": content}] if content else []
            else:
                parts = [{"text": t} for t in _assistant_texts(content, i) if t]
            calls = message.get("tool_calls")
            if calls:
                for j, call in enumerate(calls):
                    parts.append(_function_call(call, i, j, names))
            if not parts:
                continue
            turn = "model"
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(call_id) if isinstance(call_id, str) else None
            name = name or message.get("name")
            if not isinstance(name, str):
                raise ValueError(
                    f"messages[{i}] answers tool call {call_id!r}, which no earlier assistant "
                    "message made (Gemini needs the function's name)"
                )
            response = _function_response(content, i)
            parts = [{"functionResponse": {"name": name, "response": response}}]
            turn = "user"
        elif role in ("system", "developer"):
            if type(content) is str:
                system.append({"text": content})
            else:
                system.extend({"text": t} for t in text_parts(content, (i, "content"), NAME))
            continue
        else:
            raise unsupported(NAME, f"take a {role!r} message (messages[{i}])")
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    if not contents:
        raise ValueError("messages must hold at least one user or assistant message")
    return system, contents


def _assistant_texts(content: Any, i: int) -> list[str]:
    if content is None:
        return []
    texts = []
    for j, part in enumerate(content if type(content) is list else [content]):
        if isinstance(part, dict) and part.get("type") == "refusal":
            texts.append(str(part.get("refusal") or ""))
        else:
            texts.extend(text_parts([part], (i, "content", j), NAME))
    return texts


def _function_call(call: Any, i: int, j: int, names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") if type(call) is dict else None
    name = function.get("name") if type(function) is dict else None
    if type(name) is not str:
        raise TypeError(
            f"messages[{i}]['tool_calls'][{j}] must be a dict with a 'function' naming the tool"
        )
    assert function is not None
    ident = call.get("id")
    if type(ident) is str:
        names[ident] = name
    raw = function.get("arguments")
    args = (
        raw
        if type(raw) is dict
        else tool_arguments(raw, (i, "tool_calls", j, "function", "arguments"))
    )
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    extra = call.get("extra_content")
    if extra is not None:
        google = extra.get("google") if isinstance(extra, dict) else None
        signature = google.get("thought_signature") if isinstance(google, dict) else None
        if isinstance(signature, str):
            part["thoughtSignature"] = signature
    return part


# -- tools ----------------------------------------------------------------------------------------
_declared: dict[tuple[bytes, bool], list[dict[str, Any]]] = {}


def _declarations(
    tools: list[dict[str, Any]], json_schema: bool, ctx: Translation
) -> list[dict[str, Any]]:
    """:func:`_declare`, remembered by the tools' JSON text (the same tools come with every
    call; a tool changed in place is a new key). A tool of a type Gemini lacks (OpenAI's
    ``custom``, another vendor's server tools) is lost through ``ctx`` first (refused by
    default), so the cache holds only what every call would send."""
    foreign = [
        i
        for i, tool in enumerate(tools)
        if type(tool) is dict and tool.get("type") not in (None, "function")
    ]
    if foreign:
        for i in foreign:
            kind = tools[i]["type"]
            ctx.lose("builtin_tools", f"tools[{i}]", NAME, f"take a {kind!r} tool (tools[{i}])")
        tools = [tool for i, tool in enumerate(tools) if i not in foreign]
        if not tools:
            return []
    try:
        key = (orjson.dumps(tools), json_schema)
    except TypeError:
        return _declare(tools, json_schema)
    out = _declared.get(key)
    if out is None:
        # Converted from a copy, so the cache shares nothing with the caller's dicts.
        out = _declare(orjson.loads(key[0]), json_schema)
        if len(_declared) >= 256:
            _declared.clear()
        _declared[key] = out
    return list(out)


def _declare(tools: list[dict[str, Any]], json_schema: bool) -> list[dict[str, Any]]:
    functions: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if tool.get("type") is None:
            others.append(tool)  # one of Gemini's own tools ({"googleSearch": {}}, ...)
            continue
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TypeError(f"tools[{i}] must have a 'function' with a 'name'")
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        params = function.get("parameters")
        if isinstance(params, dict) and params.get("properties"):
            if json_schema:
                declaration["parametersJsonSchema"] = params
            else:
                declaration["parameters"] = cached_schema(params)
        functions.append(declaration)
    return ([{"functionDeclarations": functions}] if functions else []) + others


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        names = [choice["function"].get("name")]
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": names}}
    raise ValueError(f"tool_choice {choice!r} has no Gemini form")


def _thinking(model_id: str, effort: str) -> dict[str, Any]:
    if "gemini-3" in model_id:
        config: dict[str, Any] = {"thinkingLevel": THINKING_LEVELS.get(effort, "HIGH")}
    else:
        budget = THINKING_BUDGETS.get(effort)
        if budget is None:
            raise ValueError(
                f"reasoning_effort must be one of {list(THINKING_BUDGETS)} for Gemini, "
                f"got {effort!r}"
            )
        config = {"thinkingBudget": budget}
    if effort != "none":
        config["includeThoughts"] = True
    return config


# -- the body -----------------------------------------------------------------------------------
def to_gemini(
    body: dict[str, Any],
    *,
    model_id: str,
    ctx: Translation,
    structured_output: str | None = None,
) -> dict[str, Any]:
    """The ``generateContent`` body for the canonical ``body`` (see the module docstring):
    ``model_id`` chooses the thinking setting (a level on Gemini 3, a budget before),
    ``structured_output="json_schema"`` sends schemas as JSON Schema."""
    body = check_portable(body, NAME, ctx, choices=True, penalties=True)
    system, contents = gemini_contents(body["messages"])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    config: dict[str, Any] = {} if max_tokens is None else {"maxOutputTokens": max_tokens}
    if not _BASIC.issuperset(body):
        _options(body, out, config, ctx, model_id, structured_output == "json_schema")
    if config:
        out["generationConfig"] = config
    return out


def _options(
    body: dict[str, Any],
    out: dict[str, Any],
    config: dict[str, Any],
    ctx: Translation,
    model_id: str,
    json_schema: bool,
) -> None:
    """Everything but the messages and the token limit (most calls have none of it)."""
    if body.get("parallel_tool_calls") is False:
        ctx.lose(
            "parallel_tool_calls",
            "parallel_tool_calls",
            NAME,
            "promise one tool call at most (parallel_tool_calls=False)",
        )
    tools = body.get("tools")
    if tools:
        declared = _declarations(tools, json_schema, ctx)
        if declared:
            out["tools"] = declared
    if "tool_choice" in body:
        tool_config = _tool_config(body["tool_choice"])
        if tool_config is not None:
            out["toolConfig"] = tool_config
    for name, value in body.items():
        field = _CONFIG_FIELDS.get(name)
        if field is not None:
            config[field] = value  # the canonical body holds no None values
        elif name not in _HANDLED:
            out[name] = value  # a vendor field (safetySettings, cachedContent, ...)
        elif name in _DROPPED:
            ctx.lose(_DROPPED[name], name, NAME, f"take {name}")
    if "stop" in body:
        stop = body["stop"]
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    n = body.get("n")
    if n is not None and n != 1:
        config["candidateCount"] = n
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        _structured(fmt, config, ctx, json_schema)
    effort = body.get("reasoning_effort")
    if effort is not None:
        config["thinkingConfig"] = _thinking(model_id, effort)
    if isinstance(body.get("toolConfig"), dict):
        out["toolConfig"] = body["toolConfig"]
    extra = body.get("generationConfig")
    if isinstance(extra, dict):
        config.update(extra)


def _structured(
    fmt: dict[str, Any], config: dict[str, Any], ctx: Translation, json_schema: bool
) -> None:
    kind = fmt["type"]
    if kind not in ("json_schema", "json_object"):
        ctx.lose("response_format", "response_format", NAME, f"take response_format type {kind!r}")
        return
    config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs a 'json_schema': {'schema': {...}}")
        if json_schema:
            config["responseJsonSchema"] = schema
        else:
            config["responseSchema"] = cached_schema(schema)
