"""The Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent``,
``batchEmbedContents``) behind the canonical OpenAI form.

>>> model = Model.chat_completion("gemini/gemini-2.5-flash", max_tokens=256)
>>> model(messages="Who was Frank Rosenblatt?").consume()  # doctest: +SKIP

``GEMINI_API_KEY`` (or ``api_key=``) is sent as ``x-goog-api-key``; ``GEMINI_BASE_URL`` (or
``base_url=``) is the API root (``https://generativelanguage.googleapis.com``) and
``api_version=`` the path's version (default ``v1beta``; a root that already ends in ``/v1``,
``/v1beta`` or ``/v1alpha`` is used as it is).

What maps to what (request): system and developer turns become ``systemInstruction``; user
turns ``contents`` with role ``user`` (text parts; images and files as ``inlineData`` from
``data:`` URLs or ``fileData`` from other URLs; ``input_audio`` as ``inlineData``); assistant
turns role ``model`` with ``functionCall`` parts (the ``thoughtSignature`` Gemini gave is sent
back from the tool call's ``extra_content.google.thought_signature``); consecutive ``tool``
turns one user turn of ``functionResponse`` parts (named after the call they answer; a JSON
object result is the response, other text is ``{"result": text}``). ``max_tokens`` ->
``maxOutputTokens``, ``temperature``, ``top_p``/``top_k`` -> ``topP``/``topK``, ``stop`` ->
``stopSequences``, ``seed``, ``n`` -> ``candidateCount``, penalties, ``reasoning_effort`` ->
``thinkingConfig`` (``thinkingLevel`` on Gemini 3, else ``thinkingBudget``, with
``includeThoughts``), ``response_format`` -> ``responseMimeType`` and ``responseSchema`` (the
JSON schema rewritten into Gemini's OpenAPI subset: refs inlined, nullable types; with
``structured_output="json_schema"`` it is sent unchanged as ``responseJsonSchema``), tools ->
``functionDeclarations`` (``parameters`` in the same subset, or ``parametersJsonSchema``),
``tool_choice`` -> ``functionCallingConfig`` (``AUTO``/``ANY``/``NONE``,
``allowedFunctionNames``). Unknown fields pass through (``safetySettings``,
``cachedContent``; ``generationConfig`` is merged over ours); ``parallel_tool_calls=False``,
logprobs and audio output raise :class:`~msgflux.exceptions.UnsupportedFeatureError`.

Answer: each candidate is a choice; text parts join into ``content``, ``thought`` parts into
``reasoning_content``, ``functionCall`` parts become ``tool_calls``; ``finishReason`` maps to
``finish_reason`` (``tool_calls`` when the model called a function); a prompt blocked by
``promptFeedback.blockReason``, or an answer stopped for safety, recitation or a blocklist,
raises :class:`~msgflux.exceptions.ContentPolicyError`; ``usageMetadata`` becomes usage
(thoughts count as completion tokens). Errors: a bad key (400 ``API_KEY_INVALID``) is an
:class:`~msgflux.exceptions.AuthenticationError`, ``RetryInfo.retryDelay`` is ``retry_after``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from msgflux import _transport
from msgflux._transport import Response, status_error
from msgflux.exceptions import (
    APIStatusError,
    AuthenticationError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from msgflux.formats.common import (
    Where,
    bad,
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
from msgflux.formats.openai_chat import classify_openai_error
from msgflux.formats.policy import check_portable
from msgflux.models._checks import check_int, check_str
from msgflux.models.providers.http import DEFAULT_RETRIES, HTTPModel, ProviderSpec, check_keys
from msgflux.models.providers.vendor import VendorChatModel
from msgflux.models.registry import register
from msgflux.models.request import EMBEDDINGS, Request
from msgflux.models.response import SKIP, ModelResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel
from msgflux.models.views import view_of_payload

__all__ = [
    "DEFAULT_API_VERSION",
    "FINISH_REASONS",
    "GEMINI",
    "GeminiChatCompletion",
    "GeminiTextEmbedder",
    "classify_gemini_error",
    "gemini_schema",
    "retry_delay",
]

GEMINI = ProviderSpec("gemini", "https://generativelanguage.googleapis.com")
DEFAULT_API_VERSION = "v1beta"
_VERSIONS = ("/v1", "/v1beta", "/v1alpha")
NAME = "Gemini"

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "MALFORMED_RESPONSE": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
}
"""``finishReason`` -> OpenAI ``finish_reason``; ``content_filter`` raises ContentPolicyError,
``error`` (the model failed to answer) APIResponseValidationError; others are ``stop``."""

_BY_STATUS: dict[str, type[APIStatusError]] = {
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "INTERNAL": InternalServerError,
    "UNAVAILABLE": InternalServerError,
    "DEADLINE_EXCEEDED": InternalServerError,
}
_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count")

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
_HANDLED = frozenset(
    (
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
        # OpenAI fields that change nothing a caller reads, or were refused by check_portable
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "stream_options",
        "prompt_cache_key",
        "verbosity",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
    )
)


def classify_gemini_error(status: int, body: Any) -> type[APIStatusError] | None:
    """A bad key is a 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``; a too-long
    prompt a 400 "exceeds the maximum number of tokens"; the ``status`` word is kept even when
    a proxy changes the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return classify_openai_error(status, body)
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("reason") == "API_KEY_INVALID":
            return AuthenticationError
    message = error.get("message")
    if status == 400 and isinstance(message, str):
        lowered = message.lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return ContextWindowExceededError
        if "api key not valid" in lowered:
            return AuthenticationError
    word = error.get("status")
    cls = _BY_STATUS.get(word) if isinstance(word, str) else None
    return cls or classify_openai_error(status, body)


def retry_delay(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "47s"``), or None."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if seconds >= 0 and math.isfinite(seconds) else None
    return None


def _refine(exc: APIStatusError) -> None:
    if exc.retry_after is None:
        exc.retry_after = retry_delay(exc.body)


def _stream_error(payload: dict[str, Any], data: bytes, who: tuple[str, str]) -> APIStatusError:
    error = payload.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    exc = status_error(status, data, None, provider=who[0], model_id=who[1])
    cls = classify_gemini_error(status, payload)
    if cls is not None and type(exc) is not cls:
        exc = cls(exc.message, provider=who[0], model_id=who[1], status_code=status, body=payload)
    _refine(exc)
    return exc


# -- JSON Schema -> Gemini's OpenAPI subset -------------------------------------------------------
_SCHEMA_KEYS = (
    "description",
    "title",
    "enum",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
)
_STRING_FORMATS = ("enum", "date-time")


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (JSON Schema) in the OpenAPI subset ``responseSchema`` and function
    ``parameters`` take: ``$ref`` inlined, ``["T", "null"]``/``anyOf [.., null]`` as
    ``nullable``, upper-case types, ``propertyOrdering`` in the schema's order, keywords the
    subset lacks (``additionalProperties``, ``$defs``, ``default``) dropped."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return _convert(schema, defs, ())


def _convert(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise TypeError(f"a JSON schema node must be an object, got {node!r:.60}")
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise unsupported(
                NAME,
                f"take the recursive schema {name!r} as responseSchema "
                "(structured_output='json_schema' sends it as JSON Schema)",
            )
        target = defs.get(name)
        if not isinstance(target, dict):
            raise ValueError(f"the JSON schema refers to {ref!r}, which it does not define")
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, (*seen, name))
    out: dict[str, Any] = {}
    nullable = False
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        nullable = len(kinds) < len(kind)
        if len(kinds) == 1:
            kind = kinds[0]
        else:
            out["anyOf"] = [_convert({**node, "type": k}, defs, seen) for k in kinds]
            kind = None
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list):
        real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = nullable or len(real) < len(options)
        if len(real) == 1:
            out.update(_convert(real[0], defs, seen))
        else:
            out["anyOf"] = [_convert(o, defs, seen) for o in real]
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        out.update(_convert(all_of[0], defs, seen))
    if isinstance(kind, str):
        out["type"] = kind.upper()
    for key in _SCHEMA_KEYS:
        if key in node:
            out[key] = node[key]
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in out:
        if not all(isinstance(v, str) for v in out["enum"]):
            raise unsupported(
                NAME,
                "take a non-string enum in responseSchema "
                "(structured_output='json_schema' sends it as JSON Schema)",
            )
        out.setdefault("type", "STRING")
    fmt = node.get("format")
    if isinstance(fmt, str) and (kind != "string" or fmt in _STRING_FORMATS):
        out["format"] = fmt
    properties = node.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {k: _convert(v, defs, seen) for k, v in properties.items()}
        out["propertyOrdering"] = list(properties)
        if isinstance(node.get("required"), list):
            out["required"] = node["required"]
    items = node.get("items")
    if isinstance(items, dict):
        out["items"] = _convert(items, defs, seen)
    if nullable:
        out["nullable"] = True
    return out


_converted: dict[bytes, dict[str, Any]] = {}


def _cached_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """:func:`gemini_schema`, remembered by the schema's JSON text: the same tools and
    ``generation_schema`` come with every call, and a schema changed in place is a new key."""
    try:
        key = orjson.dumps(schema)
    except TypeError:
        return gemini_schema(schema)
    converted = _converted.get(key)
    if converted is None:
        converted = gemini_schema(orjson.loads(key))
        if len(_converted) >= 512:
            _converted.clear()
        _converted[key] = converted
    return converted


# -- the request -------------------------------------------------------------------------------
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


_declared: dict[tuple[bytes, bool], list[dict[str, Any]]] = {}


def _declarations(tools: list[dict[str, Any]], json_schema: bool) -> list[dict[str, Any]]:
    """:func:`_declare`, remembered by the tools' JSON text (the same tools come with every
    call; a tool changed in place is a new key)."""
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
        kind = tool.get("type")
        if kind != "function":
            if kind is not None:
                raise unsupported(NAME, f"take a {kind!r} tool (tools[{i}])")
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
                declaration["parameters"] = _cached_schema(params)
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


# -- the answer --------------------------------------------------------------------------------
_USAGE_KEYS = (
    "promptTokenCount",
    "toolUsePromptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "totalTokenCount",
)


def gemini_usage(meta: Any, who: tuple[str, str]) -> dict[str, Any] | None:
    """OpenAI's usage for ``usageMetadata`` (thoughts are completion tokens)."""
    if meta is None:
        return None
    if type(meta) is not dict:
        raise bad(who, "usageMetadata must be an object", meta)
    prompt = meta.get("promptTokenCount", 0)
    tool = meta.get("toolUsePromptTokenCount", 0)
    candidates = meta.get("candidatesTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    cached = meta.get("cachedContentTokenCount", 0)
    total = meta.get("totalTokenCount", 0)
    if not (
        type(prompt) is int
        and type(tool) is int
        and type(candidates) is int
        and type(thoughts) is int
        and type(cached) is int
        and type(total) is int
    ):
        prompt, tool, candidates, thoughts, cached, total = (
            int_of(meta.get(key), who, key) for key in _USAGE_KEYS
        )
    prompt += tool
    completion = candidates + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total or prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _obj(value: Any, who: tuple[str, str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


def _parts(candidate: dict[str, Any], who: tuple[str, str]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    if content is None:
        return []
    parts = _obj(content, who, "candidate.content").get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise bad(who, "candidate.content.parts must be a list", candidate)
    return parts


def _call(part: dict[str, Any], position: int, who: tuple[str, str]) -> dict[str, Any]:
    fc = _obj(part["functionCall"], who, "functionCall")
    name = fc.get("name")
    if not isinstance(name, str) or not name:
        raise bad(who, "a functionCall needs a name", fc)
    args = fc.get("args")
    arguments = orjson.dumps(_obj(args, who, "functionCall.args") if args is not None else {})
    ident = fc.get("id")
    call: dict[str, Any] = {
        "id": ident if isinstance(ident, str) and ident else f"call_{position}",
        "type": "function",
        "function": {"name": name, "arguments": arguments.decode()},
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str):
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _finish(candidate: dict[str, Any], who: tuple[str, str], called: bool) -> str | None:
    reason = candidate.get("finishReason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise bad(who, "finishReason must be a str", reason)
    finish = FINISH_REASONS.get(reason, "stop")
    if finish == "content_filter":
        detail = {k: candidate.get(k) for k in ("finishReason", "safetyRatings", "finishMessage")}
        raise policy_error(who, f"Gemini stopped the answer: {reason}", detail)
    if finish == "error":
        raise bad(who, f"Gemini could not answer: {reason}", candidate.get("finishMessage"))
    return "tool_calls" if called and finish == "stop" else finish


def _blocked(payload: dict[str, Any], who: tuple[str, str]) -> None:
    feedback = payload.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason:
        raise policy_error(who, f"Gemini blocked the prompt: {reason}", feedback)


# -- streams -----------------------------------------------------------------------------------
class GeminiEvents:
    """The canonical chunks of a ``streamGenerateContent?alt=sse`` stream (a ``Translator``):
    each event is a whole ``GenerateContentResponse`` holding only the new parts."""

    __slots__ = (
        "created",
        "done",
        "ident",
        "include_usage",
        "model",
        "started",
        "tools",
        "usage",
        "who",
    )

    def __init__(self, who: tuple[str, str], include_usage: bool) -> None:
        self.who = who
        self.include_usage = include_usage
        self.ident = "gemini"
        self.model = who[1]
        self.created = now()
        self.usage: Any = None
        self.tools: dict[int, int] = {}
        self.started = False
        self.done = False

    def feed(self, event: str | None, data: bytes) -> list[tuple[dict[str, Any], Any]]:
        who = self.who
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = loads(data, who)  # raises the validation error
        if type(payload) is not dict:
            raise bad(who, "a stream event must be an object", payload)
        if "error" in payload:
            raise _stream_error(payload, data, who)
        usage = payload.get("usageMetadata")
        if usage is not None:
            self.usage = usage
        out: list[tuple[dict[str, Any], Any]] = []
        if not self.started:
            self.started = True
            if isinstance(payload.get("responseId"), str):
                self.ident = payload["responseId"]
            if isinstance(payload.get("modelVersion"), str):
                self.model = payload["modelVersion"]
            out.append((chunk(self.ident, self.created, self.model, {"role": "assistant"}), None))
        candidates = payload.get("candidates")
        if not candidates:
            _blocked(payload, who)
            return out
        if type(candidates) is not list:
            raise bad(who, "candidates must be a list", payload)
        for candidate in candidates:
            if type(candidate) is not dict:
                raise bad(who, "a candidate must be an object", candidate)
            index = candidate.get("index", 0)
            if type(index) is not int:
                raise bad(who, "candidate.index must be an int", candidate)
            for part in _parts(candidate, who):
                if type(part) is not dict:
                    raise bad(who, "a part must be an object", part)
                text = part.get("text")
                item: Any = None
                if type(text) is str and len(part) == 1:
                    delta: dict[str, Any] | None = {"content": text} if text else None
                    item = text  # built here: the stream accounts for it without a check
                else:
                    delta = self._delta(part, index)
                if delta is not None:
                    if index:
                        item = SKIP  # msgflux's view is the first candidate's
                    choice = {"index": index, "delta": delta, "finish_reason": None}
                    event_chunk = {
                        "id": self.ident,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [choice],
                    }
                    out.append((event_chunk, item))
            if "finishReason" in candidate:
                finish = _finish(candidate, who, index in self.tools)
                finished = chunk(self.ident, self.created, self.model, {}, finish, index)
                out.append((finished, SKIP if index else None))
        return out

    def _delta(self, part: dict[str, Any], index: int) -> dict[str, Any] | None:
        if "functionCall" in part:
            position = self.tools.get(index, -1) + 1
            self.tools[index] = position
            return {"tool_calls": [{"index": position, **_call(part, position, self.who)}]}
        text = part.get("text")
        if text is None:
            return None
        if not isinstance(text, str):
            raise bad(self.who, "a text part must hold a str", part)
        if not text:
            return None
        return {"reasoning_content": text} if part.get("thought") else {"content": text}

    def end(self) -> list[dict[str, Any]]:
        if not self.include_usage or self.usage is None:
            return []
        usage = gemini_usage(self.usage, self.who)
        assert usage is not None
        return [usage_chunk(self.ident, self.created, self.model, usage)]


# -- the models --------------------------------------------------------------------------------
def _model_path(model: HTTPModel, method: str) -> str:
    base = (model.base_url() or "").rstrip("/")
    prefix = "" if base.endswith(_VERSIONS) else "/" + str(model.sampling_params["api_version"])
    name = model.model_id.removeprefix("models/")
    resource = name if "/" in name else "models/" + quote(name, safe="")
    return f"{prefix}/{resource}:{method}"


@register("chat_completion", "gemini")
class GeminiChatCompletion(VendorChatModel, ChatCompletionModel):
    """Gemini through ``generateContent``; see the module docstring for what maps to what.

    >>> model = Model.chat_completion("gemini/gemini-2.5-flash", reasoning_effort="low")
    >>> model(messages="What is 17 * 23?").data.think  # doctest: +SKIP
    """

    spec = GEMINI
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "api_version")
    client_defaults: ClassVar[dict[str, Any]] = {"api_version": DEFAULT_API_VERSION}
    structured_outputs: ClassVar[tuple[str, ...]] = ("response_schema", "json_schema")

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
        api_version: str = DEFAULT_API_VERSION,
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
            {"api_version": api_version},
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

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-goog-api-key": key}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_gemini_error(status, body)

    def _refine(self, exc: APIStatusError) -> None:
        _refine(exc)

    def _path(self, req: Request) -> tuple[str, str]:
        if req.stream:
            return _model_path(self, "streamGenerateContent"), "?alt=sse"
        return _model_path(self, "generateContent"), ""

    def wire(self, req: Request) -> dict[str, Any]:
        """The ``generateContent`` body for ``req`` (see the module docstring)."""
        body = check_portable(
            self.fields(req), NAME, self.translation(req), choices=True, penalties=True
        )
        system, contents = gemini_contents(body["messages"])
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": system}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        config: dict[str, Any] = {} if max_tokens is None else {"maxOutputTokens": max_tokens}
        if not _BASIC.issuperset(body):
            self._options(body, out, config)
        if config:
            out["generationConfig"] = config
        return out

    def _options(self, body: dict[str, Any], out: dict[str, Any], config: dict[str, Any]) -> None:
        """Everything but the messages and the token limit (most calls have none of it)."""
        if body.get("parallel_tool_calls") is False:
            raise unsupported(NAME, "promise one tool call at most (parallel_tool_calls=False)")
        json_schema = self.structured_output == "json_schema"
        tools = body.get("tools")
        if tools:
            out["tools"] = _declarations(tools, json_schema)
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
        if "stop" in body:
            stop = body["stop"]
            config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        n = body.get("n")
        if n is not None and n != 1:
            config["candidateCount"] = n
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
            self._structured(fmt, config, json_schema)
        effort = body.get("reasoning_effort")
        if effort is not None:
            config["thinkingConfig"] = _thinking(self.model_id, effort)
        if isinstance(body.get("toolConfig"), dict):
            out["toolConfig"] = body["toolConfig"]
        extra = body.get("generationConfig")
        if isinstance(extra, dict):
            config.update(extra)

    def _structured(self, fmt: dict[str, Any], config: dict[str, Any], json_schema: bool) -> None:
        kind = fmt["type"]
        if kind not in ("json_schema", "json_object"):
            raise unsupported(NAME, f"take response_format type {kind!r}")
        config["responseMimeType"] = "application/json"
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise ValueError(
                    "response_format json_schema needs a 'json_schema': {'schema': {...}}"
                )
            if json_schema:
                config["responseJsonSchema"] = schema
            else:
                config["responseSchema"] = _cached_schema(schema)

    def completion(self, payload: Any, req: Request) -> dict[str, Any]:
        """The canonical completion of a ``generateContent`` answer."""
        who = self._who()
        answer = _obj(payload, who, "a generateContent answer")
        candidates = answer.get("candidates")
        if not candidates:
            _blocked(answer, who)
            raise bad(who, "a generateContent answer without candidates", payload)
        if not isinstance(candidates, list):
            raise bad(who, "candidates must be a list", payload)
        choices = []
        for position, candidate in enumerate(candidates):
            if type(candidate) is not dict:
                raise bad(who, "a candidate must be an object", candidate)
            texts: list[str] = []
            thoughts: list[str] = []
            calls: list[dict[str, Any]] = []
            for part in _parts(candidate, who):
                if type(part) is not dict:
                    raise bad(who, "a part must be an object", part)
                if "functionCall" in part:
                    calls.append(_call(part, len(calls), who))
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    (thoughts if part.get("thought") else texts).append(text)
                elif text is not None:
                    raise bad(who, "a text part must hold a str", part)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(texts) if texts or not calls else None,
            }
            if calls:
                message["tool_calls"] = calls
            if thoughts:
                message["reasoning_content"] = "".join(thoughts)
            reason = candidate.get("finishReason")
            finish = FINISH_REASONS.get(reason) if type(reason) is str else None
            if finish == "stop" or (finish is None and type(reason) is str):
                finish = "tool_calls" if calls else "stop"  # an unknown reason too
            elif finish != "length":
                finish = _finish(candidate, who, bool(calls)) or "stop"
            index = candidate.get("index", position)
            choices.append(
                {
                    "index": index if isinstance(index, int) else position,
                    "message": message,
                    "finish_reason": finish,
                    "logprobs": None,
                }
            )
        ident = answer.get("responseId")
        model = answer.get("modelVersion")
        return {
            "id": ident if isinstance(ident, str) else "gemini",
            "object": "chat.completion",
            "created": now(),
            "model": model if isinstance(model, str) else self.model_id,
            "choices": choices,
            "usage": gemini_usage(answer.get("usageMetadata"), who),
        }

    def translator(self, req: Request) -> GeminiEvents:
        options = req.body.get("stream_options")
        include_usage = not (isinstance(options, dict) and options.get("include_usage") is False)
        return GeminiEvents(self._who(), include_usage)


@register("text_embedder", "gemini")
class GeminiTextEmbedder(HTTPModel, TextEmbedderModel):
    """Text embeddings: one text through ``embedContent``, a list through
    ``batchEmbedContents``. ``dimensions`` -> ``outputDimensionality``, ``task_type`` ->
    ``taskType`` (``RETRIEVAL_QUERY``, ``SEMANTIC_SIMILARITY``, ...). Gemini reports no usage
    for embeddings; ``metadata.usage`` estimates it as one token per four characters.

    >>> Model.text_embedder("gemini/gemini-embedding-001", dimensions=768)("hi")  # doctest: +SKIP
    """

    spec = GEMINI
    client_params: ClassVar[tuple[str, ...]] = ("base_url", "api_version")
    run_params: ClassVar[dict[str, Any]] = {"dimensions": None, "task_type": None}

    def __init__(
        self,
        model_id: str,
        *,
        dimensions: int | None = None,
        task_type: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_RETRIES,
        timeout: float | None = None,
        clock: Any = None,
    ) -> None:
        self._configure(
            model_id,
            api_key=api_key,
            base_url=base_url,
            clock=clock,
            client={"api_version": api_version},
            run={"dimensions": dimensions, "task_type": task_type},
            max_retries=max_retries,
            timeout=timeout,
        )
        self._initialize()

    def _initialize(self) -> None:
        if not getattr(self, "sampling_run_params", None):
            self.sampling_run_params = dict(self.run_params)
        super()._initialize()
        if self.sampling_params.get("api_version") is None:
            self.sampling_params["api_version"] = DEFAULT_API_VERSION
        run = check_keys("sampling_run_params", self.sampling_run_params, tuple(self.run_params))
        check_int("dimensions", run.get("dimensions"), minimum=1, optional=True)
        check_str("task_type", run.get("task_type"))

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"x-goog-api-key": key}

    @classmethod
    def _classify(cls, status: int, body: Any) -> type[APIStatusError] | None:
        return classify_gemini_error(status, body)

    def wire(self, req: Request) -> dict[str, Any]:
        """The ``embedContent`` body (one text) or ``batchEmbedContents`` body (a list)."""
        if req.kind != EMBEDDINGS:
            raise unsupported(NAME, f"serve {req.kind} requests here")
        body = req.body
        run = self.sampling_run_params
        dimensions = body.get("dimensions", run.get("dimensions"))
        task = body.get("task_type", run.get("task_type"))
        extra: dict[str, Any] = {}
        if dimensions is not None:
            extra["outputDimensionality"] = dimensions
        if task is not None:
            extra["taskType"] = task
        if body.get("title") is not None:
            extra["title"] = body["title"]
        data = body["input"]
        if isinstance(data, str):
            return {"content": {"parts": [{"text": data}]}, **extra}
        model = "models/" + self.model_id.removeprefix("models/")
        return {
            "requests": [
                {"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in data
            ]
        }

    def _send_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        single = isinstance(req.body["input"], str)
        path = _model_path(self, "embedContent" if single else "batchEmbedContents")
        ep = self._prepared(self._endpoint(path), req)
        try:
            resp = _transport.post(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            _refine(exc)
            raise
        return self._view(req, resp)

    async def _asend_kind(self, req: Request) -> Any:
        data = orjson.dumps(self.wire(req))
        single = isinstance(req.body["input"], str)
        path = _model_path(self, "embedContent" if single else "batchEmbedContents")
        ep = self._prepared(self._endpoint(path), req)
        try:
            resp = await _transport.apost(ep, data, self._attempt_timeout(req))
        except APIStatusError as exc:
            _refine(exc)
            raise
        return self._view(req, resp)

    def _view(self, req: Request, resp: Response) -> ModelResponse:
        who = (self.provider, self.model_id)
        payload = _obj(loads(resp.content, who), who, "an embeddings answer")
        data = req.body["input"]
        texts = [data] if isinstance(data, str) else list(data)
        items = [payload["embedding"]] if "embedding" in payload else payload.get("embeddings")
        if not isinstance(items, list):
            raise bad(who, "a batchEmbedContents answer needs an embeddings list", payload)
        if len(items) != len(texts):
            raise bad(who, f"{len(items)} embeddings for {len(texts)} texts", payload)
        vectors = [_obj(item, who, "an embedding").get("values") for item in items]
        meta = payload.get("usageMetadata")
        tokens = (
            int_of(meta.get("promptTokenCount"), who, "promptTokenCount")
            if isinstance(meta, dict)
            else sum(math.ceil(len(t) / 4) for t in texts)
        )
        canonical = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": self.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return view_of_payload(req, canonical, resp.headers, who)
