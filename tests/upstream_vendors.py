"""The vendor wire formats of :mod:`tests.upstream`: Anthropic, Gemini and Azure OpenAI.

Each format is learnt from the vendor's published API reference (the notes with sources are
in the issue-13 research: request shapes, answers, SSE event sequences, error bodies), and
the official SDKs are pointed at it in the provider tests, so this module is checked by code
no one here wrote.

This module is pure: :mod:`tests.upstream` does the I/O and asks it

* :func:`match`: which vendor route a path is (and the model a path names);
* :func:`validate`: whether the request is one the vendor would accept (auth headers,
  version header or query, body shape: unknown fields, roles, blocks, schemas). A request it
  would refuse gets the vendor's own 4xx error and :attr:`Recorded.invalid` says why, so a
  test can assert an adapter sent nothing the vendor would refuse;
* :func:`error_body`, :func:`answer` and :func:`stream_frames`: the vendor's error body,
  answer body and SSE frames for a scripted :class:`~tests.upstream.Reply`.

Routes: ``messages`` (``POST /v1/messages``), ``count_tokens``
(``/v1/messages/count_tokens``); ``generate_content``, ``stream_generate_content``
(``?alt=sse``), ``embed_content``, ``batch_embed_contents``, ``gemini_count_tokens``
(``/{v1,v1beta,v1alpha}/models/{model}:<method>``); ``azure_chat``, ``azure_embeddings``,
``azure_speech``, ``azure_transcriptions``, ``azure_images``
(``/openai/deployments/{deployment}/...?api-version=...`` and ``/openai/v1/...``).

Knobs of :class:`~tests.upstream.Reply` per vendor: ``text``/``chunks``/``tool_calls``/
``reasoning``/``structured`` (the answer: Anthropic text, ``tool_use`` and thinking blocks;
Gemini text, ``functionCall`` and ``thought`` parts), ``finish_reason`` (the vendor's own
value: ``"max_tokens"``, ``"refusal"``; ``"MAX_TOKENS"``, ``"SAFETY"``; ``"content_filter"``),
``usage`` (vendor-shaped, merged over the computed one), ``status``/``error``/``error_type``/
``error_code``/``error_reason``/``retry_delay``/``retry_after`` (the vendor's error body and
headers), ``stream_error`` (an in-stream error event), ``block_reason`` (Gemini's
``promptFeedback``), ``thought_signature``, ``cut_after``, ``chunk_delay``, ``delay``.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tests.upstream import Recorded, Reply

__all__ = [
    "ROUTES",
    "Answer",
    "answer",
    "error_body",
    "is_stream",
    "match",
    "stream_frames",
    "validate",
]

ROUTES = (
    "responses",
    "messages",
    "count_tokens",
    "generate_content",
    "stream_generate_content",
    "embed_content",
    "batch_embed_contents",
    "gemini_count_tokens",
    "azure_chat",
    "azure_embeddings",
    "azure_speech",
    "azure_transcriptions",
    "azure_images",
)
"""Vendor route names (besides :data:`tests.upstream.ROUTES`)."""

AZURE_AS_OPENAI = {
    "azure_chat": "chat",
    "azure_embeddings": "embeddings",
    "azure_speech": "speech",
    "azure_transcriptions": "transcriptions",
    "azure_images": "images",
}
"""Azure routes and the OpenAI route whose bodies they share."""

_GEMINI = re.compile(r"/(v1|v1beta|v1alpha)/models/([^/:]+):([A-Za-z]+)")
_GEMINI_METHODS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "stream_generate_content",
    "embedContent": "embed_content",
    "batchEmbedContents": "batch_embed_contents",
    "countTokens": "gemini_count_tokens",
}
_AZURE_PATHS = {
    "chat/completions": "azure_chat",
    "embeddings": "azure_embeddings",
    "audio/speech": "azure_speech",
    "audio/transcriptions": "azure_transcriptions",
    "images/generations": "azure_images",
}
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/(.+)")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


def match(method: str, path: str) -> tuple[str, str, str | None] | None:
    """``(route, vendor, model named by the path)`` of a vendor path, or None."""
    if method != "POST":
        return None
    if path in ("/v1/responses", "/openai/responses", "/openai/v1/responses"):
        return "responses", "azure" if path.startswith("/openai/") else "openai", None
    if path == "/v1/messages":
        return "messages", "anthropic", None
    if path == "/v1/messages/count_tokens":
        return "count_tokens", "anthropic", None
    found = _GEMINI.fullmatch(path)
    if found is not None and found.group(3) in _GEMINI_METHODS:
        return _GEMINI_METHODS[found.group(3)], "gemini", found.group(2)
    found = _AZURE_DEPLOYMENT.fullmatch(path)
    if found is not None and found.group(2) in _AZURE_PATHS:
        return _AZURE_PATHS[found.group(2)], "azure", found.group(1)
    if path.startswith("/openai/v1/") and path[len("/openai/v1/") :] in _AZURE_PATHS:
        return _AZURE_PATHS[path[len("/openai/v1/") :]], "azure", None
    return None


def is_stream(route: str, payload: Any) -> bool:
    if route == "stream_generate_content":
        return True
    return (
        route in ("messages", "azure_chat", "responses")
        and isinstance(payload, dict)
        and (payload.get("stream") is True)
    )


class Answer:
    """What a reply says, before any vendor's shape: text pieces, tool calls, reasoning."""

    def __init__(
        self,
        text: str | None,
        pieces: list[str],
        calls: list[dict[str, Any]],
        reasoning: list[str],
        prompt_words: int,
    ) -> None:
        self.text = text
        self.pieces = pieces
        self.calls = calls
        self.reasoning = reasoning
        self.prompt_words = prompt_words


# -- validation ----------------------------------------------------------------------------------
class Invalid(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def validate(rec: Recorded) -> tuple[int, str] | None:
    """``(status, message)`` when the vendor would refuse ``rec``, else None."""
    try:
        if rec.vendor == "anthropic":
            _check_anthropic(rec)
        elif rec.vendor == "gemini":
            _check_gemini(rec)
        elif rec.vendor == "azure":
            _check_azure(rec)
    except Invalid as exc:
        return exc.status, exc.message
    return None


def _need(condition: bool, message: str, status: int = 400) -> None:
    if not condition:
        raise Invalid(status, message)


# Anthropic ----------------------------------------------------------------------------------
ANTHROPIC_VERSIONS = ("2023-06-01", "2026-10-21")
_ANTHROPIC_FIELDS = frozenset(
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
        "output_format",
        "stream",
        "service_tier",
        "cache_control",
        "container",
        "mcp_servers",
        "context_management",
        "inference_geo",
        "speed",
    )
)
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _check_anthropic(rec: Recorded) -> None:
    headers = rec.headers
    auth = headers.get("authorization", "")
    _need(
        bool(headers.get("x-api-key")) or (auth.startswith("Bearer ") and len(auth) > 7),
        "x-api-key header is required",
        401,
    )
    version = headers.get("anthropic-version")
    _need(version is not None, "anthropic-version: header is required")
    _need(version in ANTHROPIC_VERSIONS, f"anthropic-version: unknown version {version!r}")
    body = rec.json
    _need(isinstance(body, dict), "the body must be a JSON object")
    assert isinstance(body, dict)
    if rec.route == "count_tokens":
        allowed = _ANTHROPIC_FIELDS - {"max_tokens", "stream", "stop_sequences", "temperature"}
    else:
        allowed = _ANTHROPIC_FIELDS
    for name in body:
        _need(name in allowed, f"{name}: Extra inputs are not permitted")
    _need(isinstance(body.get("model"), str), "model: Field required")
    if rec.route == "messages":
        max_tokens = body.get("max_tokens")
        _need(isinstance(max_tokens, int) and max_tokens >= 0, "max_tokens: Field required")
    if version == "2026-10-21":
        for name in ("temperature", "top_p", "top_k"):
            _need(name not in body, f"{name}: Extra inputs are not permitted")
    temperature = body.get("temperature")
    _need(
        temperature is None or 0 <= temperature <= 1,
        "temperature: Input should be less than or equal to 1",
    )
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _need(isinstance(system, list), "system: Input should be a valid string or list")
        for block in system:
            _need(_is_text_block(block), "system: each block must be a text block")
    messages = body.get("messages")
    _need(isinstance(messages, list) and bool(messages), "messages: Field required")
    assert isinstance(messages, list)
    tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        _check_anthropic_message(message, i, tool_ids, i == len(messages) - 1)
        if message["role"] == "system":
            continue  # a system turn mid-conversation (what Claude Code sends) keeps tool ids
        if message["role"] == "assistant":
            tool_ids = {
                b["id"]
                for b in message["content"]
                if isinstance(message["content"], list) and b.get("type") == "tool_use"
            }
        else:
            tool_ids = set()
    _need(messages[0].get("role") == "user", "messages: the first message must use the user role")
    names = _check_anthropic_tools(body.get("tools"))
    choice = body.get("tool_choice")
    if choice is not None:
        _need(isinstance(choice, dict), "tool_choice: Input should be an object")
        kind = choice.get("type")
        _need(kind in ("auto", "any", "tool", "none"), f"tool_choice.type: unknown {kind!r}")
        if kind == "tool":
            _need(choice.get("name") in names, f"tool_choice.name: no tool {choice.get('name')!r}")
    stop = body.get("stop_sequences")
    _need(
        stop is None or (isinstance(stop, list) and all(isinstance(s, str) for s in stop)),
        "stop_sequences: Input should be a list of strings",
    )
    thinking = body.get("thinking")
    if thinking is not None:
        _need(isinstance(thinking, dict), "thinking: Input should be an object")
        kind = thinking.get("type")
        _need(kind in ("enabled", "adaptive", "disabled"), f"thinking.type: unknown {kind!r}")
        for key in thinking:
            _need(
                key in ("type", "budget_tokens", "display"),
                f"thinking.{key}: Extra inputs are not permitted",
            )
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            _need(
                isinstance(budget, int) and budget >= 1024,
                "thinking.budget_tokens: Input should be greater than or equal to 1024",
            )
            _need(
                rec.route != "messages" or budget < body["max_tokens"],
                "`max_tokens` must be greater than `thinking.budget_tokens`",
            )
        if kind in ("enabled", "adaptive") and isinstance(choice, dict):
            _need(
                choice.get("type") in ("auto", "none"),
                "Thinking may not be enabled when tool_choice forces tool use.",
            )
    config = body.get("output_config")
    if config is not None:
        _need(isinstance(config, dict), "output_config: Input should be an object")
        effort = config.get("effort")
        _need(
            effort in (None, "low", "medium", "high", "max"),
            f"output_config.effort: unknown {effort!r}",
        )
        fmt = config.get("format")
        if fmt is not None:
            _need(
                isinstance(fmt, dict)
                and fmt.get("type") == "json_schema"
                and isinstance(fmt.get("schema"), dict),
                "output_config.format: expected {'type': 'json_schema', 'schema': {...}}",
            )
    metadata = body.get("metadata")
    _need(
        metadata is None or (isinstance(metadata, dict) and set(metadata) <= {"user_id"}),
        "metadata: Extra inputs are not permitted",
    )


def _is_text_block(block: Any) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
        and bool(block["text"])
        and set(block) <= {"type", "text", "cache_control", "citations"}
    )


def _check_anthropic_message(message: Any, i: int, tool_ids: set[str], last: bool) -> None:
    where = f"messages.{i}"
    _need(isinstance(message, dict), f"{where}: Input should be an object")
    role = message.get("role")
    _need(
        role in ("user", "assistant", "system"),
        f"{where}.role: Input should be 'user', 'assistant' or 'system'",
    )
    _need(set(message) <= {"role", "content"}, f"{where}: Extra inputs are not permitted")
    content = message.get("content")
    if role == "system":
        _need(i > 0, f"{where}.role: a system turn cannot open the conversation")
        _need(
            (isinstance(content, str) and bool(content))
            or (isinstance(content, list) and all(_is_text_block(b) for b in content)),
            f"{where}.content: a system turn holds text",
        )
        return
    if isinstance(content, str):
        _need(bool(content), f"{where}: text content blocks must be non-empty")
        if last and role == "assistant":
            _need(
                content == content.rstrip(),
                "final assistant content cannot end with trailing whitespace",
            )
        return
    _need(isinstance(content, list) and bool(content), f"{where}.content: Field required")
    for j, block in enumerate(content):
        _check_anthropic_block(block, f"{where}.content.{j}", role, tool_ids)
    if last and role == "assistant" and content[-1].get("type") == "text":
        text = content[-1]["text"]
        _need(text == text.rstrip(), "final assistant content cannot end with trailing whitespace")


def _check_anthropic_block(block: Any, where: str, role: str, tool_ids: set[str]) -> None:
    _need(isinstance(block, dict), f"{where}: Input should be an object")
    kind = block.get("type")
    if kind == "text":
        _need(_is_text_block(block), f"{where}: text content blocks must be non-empty")
    elif kind in ("image", "document"):
        source = block.get("source")
        _need(isinstance(source, dict), f"{where}.source: Field required")
        stype = source.get("type")
        if stype == "base64":
            media = source.get("media_type")
            allowed = _MEDIA_TYPES if kind == "image" else ("application/pdf",)
            _need(media in allowed, f"{where}.source.media_type: Input should be one of {allowed}")
            data = source.get("data")
            _need(isinstance(data, str), f"{where}.source.data: Field required")
            try:
                base64.b64decode(data, validate=True)
            except ValueError:
                raise Invalid(400, f"{where}.source.data: invalid base64 data") from None
        elif stype == "url":
            _need(isinstance(source.get("url"), str), f"{where}.source.url: Field required")
        else:
            _need(stype in ("file", "text"), f"{where}.source.type: unknown {stype!r}")
    elif kind == "tool_use":
        _need(role == "assistant", f"{where}: tool_use blocks belong to assistant turns")
        _need(
            isinstance(block.get("id"), str)
            and isinstance(block.get("name"), str)
            and isinstance(block.get("input"), dict),
            f"{where}: tool_use needs id, name and an input object",
        )
    elif kind == "tool_result":
        _need(role == "user", f"{where}: tool_result blocks belong to user turns")
        tid = block.get("tool_use_id")
        _need(
            tid in tool_ids,
            f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. Each "
            "`tool_result` block must have a corresponding `tool_use` block in the previous "
            "message.",
        )
        content = block.get("content")
        if isinstance(content, list):
            for j, inner in enumerate(content):
                _check_anthropic_block(inner, f"{where}.content.{j}", role, tool_ids)
        else:
            _need(content is None or isinstance(content, str), f"{where}.content: invalid")
    elif kind == "thinking":
        _need(role == "assistant", f"{where}: thinking blocks belong to assistant turns")
        _need(
            isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str),
            f"{where}: thinking blocks need thinking and signature",
        )
    elif kind == "redacted_thinking":
        _need(isinstance(block.get("data"), str), f"{where}.data: Field required")
    else:
        raise Invalid(400, f"{where}.type: unknown content block type {kind!r}")


def _check_anthropic_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    _need(isinstance(tools, list), "tools: Input should be a list")
    names = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        _need(isinstance(tool, dict), f"{where}: Input should be an object")
        _need(isinstance(tool.get("name"), str), f"{where}.name: Field required")
        names.add(tool["name"])
        if "type" in tool and tool["type"] != "custom":
            continue  # a server tool (web_search_..., code_execution_...)
        schema = tool.get("input_schema")
        _need(
            isinstance(schema, dict) and schema.get("type") == "object",
            f"{where}.input_schema: Input should be a JSON schema of type object",
        )
        allowed = {
            "name",
            "description",
            "input_schema",
            "cache_control",
            "strict",
            "type",
            "defer_loading",
        }
        for key in tool:
            _need(key in allowed, f"{where}.{key}: Extra inputs are not permitted")
    return names


# Gemini ------------------------------------------------------------------------------------
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _camelized(value: Any) -> dict[str, Any]:
    return {_camel(k): v for k, v in value.items()} if isinstance(value, dict) else {}


_GEMINI_FIELDS = frozenset(
    (
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "safetySettings",
        "generationConfig",
        "cachedContent",
        "labels",
        "model",
    )
)
_GENERATION_FIELDS = frozenset(
    (
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "responseModalities",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
        "enableEnhancedCivicAnswers",
    )
)
_PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
_SCHEMA_TYPES = ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
_SCHEMA_FIELDS = frozenset(
    (
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    )
)


def _unknown(name: str, where: str) -> Invalid:
    return Invalid(400, f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}'")


def _check_gemini(rec: Recorded) -> None:
    if not rec.headers.get("x-goog-api-key") and not rec.query.get("key"):
        raise Invalid(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    body = rec.json
    _need(isinstance(body, dict), "Invalid JSON payload received.")
    assert isinstance(body, dict)
    if rec.route == "stream_generate_content":
        _need(rec.query.get("alt") == "sse", "this test upstream streams only with ?alt=sse")
    if rec.route == "embed_content":
        _check_embed_request(_camelized(body), "", rec.model)
        return
    if rec.route == "batch_embed_contents":
        requests = body.get("requests")
        _need(isinstance(requests, list) and bool(requests), "requests: Field required")
        assert isinstance(requests, list)
        for i, request in enumerate(requests):
            _check_embed_request(_camelized(request), f"requests[{i}]", rec.model, batch=True)
        return
    fields = _camelized(body)
    if rec.route == "gemini_count_tokens" and "generateContentRequest" in fields:
        fields = _camelized(fields["generateContentRequest"])
    for name in fields:
        if name not in _GEMINI_FIELDS:
            raise _unknown(name, "")
    contents = fields.get("contents")
    _need(isinstance(contents, list) and bool(contents), "* contents: contents is not specified")
    assert isinstance(contents, list)
    calls = 0
    for i, content in enumerate(contents):
        calls = _check_gemini_content(content, f"contents[{i}]", calls)
    system = fields.get("systemInstruction")
    if system is not None:
        _check_gemini_content(system, "system_instruction", 0, system=True)
    for i, tool in enumerate(fields.get("tools") or ()):
        tool = _camelized(tool)
        for j, declaration in enumerate(tool.get("functionDeclarations") or ()):
            declaration = _camelized(declaration)
            where = f"tools[{i}].function_declarations[{j}]"
            _need(isinstance(declaration.get("name"), str), f"* {where}.name: required")
            for key in declaration:
                if key not in ("name", "description", "parameters", "parametersJsonSchema"):
                    raise _unknown(key, where)
            _need(
                not ("parameters" in declaration and "parametersJsonSchema" in declaration),
                f"* {where}: parameters and parameters_json_schema are exclusive",
            )
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], f"{where}.parameters")
    config = _camelized(fields.get("toolConfig")).get("functionCallingConfig")
    if config is not None:
        mode = _camelized(config).get("mode")
        _need(
            mode in ("AUTO", "ANY", "NONE", "VALIDATED"),
            f"* function_calling_config.mode: {mode!r}",
        )
    generation = _camelized(fields.get("generationConfig"))
    for name in generation:
        if name not in _GENERATION_FIELDS:
            raise _unknown(name, "generation_config")
    if "responseSchema" in generation:
        _need(
            "responseJsonSchema" not in generation,
            "* generation_config: response_schema and response_json_schema are exclusive",
        )
        _need(
            generation.get("responseMimeType") == "application/json",
            "* generation_config.response_mime_type: must be application/json with a schema",
        )
        _check_schema(generation["responseSchema"], "generation_config.response_schema")


def _check_gemini_content(content: Any, where: str, calls: int, system: bool = False) -> int:
    """Check one content; returns the number of function calls it makes (for the next)."""
    content = _camelized(content)
    for key in content:
        if key not in ("role", "parts"):
            raise _unknown(key, where)
    role = content.get("role")
    if not system:
        _need(
            role in (None, "user", "model"),
            f"* {where}.role: Please use a valid role: user, model.",
        )
    parts = content.get("parts")
    _need(
        isinstance(parts, list) and bool(parts),
        f"* {where}.parts: contents.parts must not be empty.",
    )
    assert isinstance(parts, list)
    made = responses = 0
    for j, part in enumerate(parts):
        part = _camelized(part)
        here = f"{where}.parts[{j}]"
        data = [k for k in part if k in _PART_DATA]
        _need(len(data) == 1, f"* {here}: a part must hold exactly one of {list(_PART_DATA)}")
        for key in part:
            if key not in (*_PART_DATA, "thought", "thoughtSignature", "videoMetadata"):
                raise _unknown(key, here)
        kind = data[0]
        value = part[kind]
        if kind == "text":
            _need(isinstance(value, str), f"* {here}.text: must be a string")
        elif kind in ("inlineData", "fileData"):
            value = _camelized(value)
            _need(isinstance(value.get("mimeType"), str), f"* {here}.{kind}.mime_type: required")
            key = "data" if kind == "inlineData" else "fileUri"
            _need(isinstance(value.get(key), str), f"* {here}.{kind}.{key}: required")
        elif kind == "functionCall":
            _need(role == "model", f"* {here}: function calls belong to model turns")
            value = _camelized(value)
            _need(isinstance(value.get("name"), str), f"* {here}.function_call.name: required")
            _need(value.get("args") is None or isinstance(value["args"], dict), f"* {here}.args")
            made += 1
        elif kind == "functionResponse":
            value = _camelized(value)
            _need(isinstance(value.get("name"), str), f"* {here}.function_response.name: required")
            _need(isinstance(value.get("response"), dict), f"* {here}.function_response.response")
            responses += 1
    if responses:
        _need(
            responses == calls,
            "Please ensure that the number of function response parts is equal to the number of "
            "function call parts of the function call turn.",
        )
    return made


def _check_schema(schema: Any, where: str) -> None:
    _need(isinstance(schema, dict), f"* {where}: must be an object")
    for key, value in schema.items():
        if key not in _SCHEMA_FIELDS:
            raise _unknown(key, where)
        if key == "type":
            _need(
                isinstance(value, str) and value.upper() in _SCHEMA_TYPES,
                f"* {where}.type: Invalid value {value!r}",
            )
        elif key == "properties":
            _need(isinstance(value, dict), f"* {where}.properties: must be an object")
            for name, sub in value.items():
                _check_schema(sub, f"{where}.properties[{name}]")
        elif key == "items":
            _check_schema(value, f"{where}.items")
        elif key == "anyOf":
            for k, sub in enumerate(value):
                _check_schema(sub, f"{where}.any_of[{k}]")
    if str(schema.get("type", "")).upper() == "OBJECT" and "properties" in schema:
        _need(
            bool(schema["properties"]), f"* {where}.properties: should be non-empty for OBJECT type"
        )


def _check_embed_request(
    fields: dict[str, Any], where: str, model: str | None, batch: bool = False
) -> None:
    allowed = ("content", "taskType", "title", "outputDimensionality", "model")
    for key in fields:
        if key not in allowed:
            raise _unknown(key, where)
    if batch:
        _need(
            fields.get("model") == f"models/{model}",
            f"* {where}.model: must be models/{model}, the model of the path",
        )
    content = _camelized(fields.get("content"))
    parts = content.get("parts")
    _need(
        isinstance(parts, list)
        and bool(parts)
        and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts),
        f"* {where}.content.parts: text parts required",
    )


# Azure -------------------------------------------------------------------------------------
def _check_azure(rec: Recorded) -> None:
    version = rec.query.get("api-version")
    if rec.path.startswith("/openai/deployments/"):
        _need(
            version is not None and bool(_API_VERSION.fullmatch(version)), "Resource not found", 404
        )
    else:
        _need(
            version in (None, "preview", "latest"),
            f"api-version {version!r} is not allowed on /openai/v1/",
        )
    auth = rec.headers.get("authorization", "")
    _need(
        bool(rec.headers.get("api-key")) or (auth.startswith("Bearer ") and len(auth) > 7),
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
        "a valid key for an active subscription and use a correct regional API endpoint for your "
        "resource.",
        401,
    )
    body = rec.json
    if rec.route == "azure_transcriptions":
        _need(isinstance(body, dict) and "file" in body, "'file' is a required property")
        return
    _need(isinstance(body, dict), "the body must be a JSON object")
    assert isinstance(body, dict)
    if rec.path.startswith("/openai/v1/"):
        _need(isinstance(body.get("model"), str), "model: the deployment name is required")
    if rec.route == "azure_chat":
        messages = body.get("messages")
        _need(isinstance(messages, list) and bool(messages), "'messages' is a required property")


# -- error bodies --------------------------------------------------------------------------------
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GEMINI_CODES = {word: code for code, word in _GEMINI_STATUS.items()}


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "error"


def error_body(rec: Recorded, status: int, message: str | None, reply: Reply | None) -> bytes:
    """The vendor's error body for ``status`` (``reply`` may refine it: type, code, reason)."""
    text = message or _reason(status)
    error_type = reply.error_type if reply is not None else None
    if rec.vendor == "anthropic":
        kind = error_type or _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return orjson.dumps(
            {
                "type": "error",
                "error": {"type": kind, "message": text},
                "request_id": f"req_{rec.index}",
            }
        )
    if rec.vendor == "gemini":
        word = error_type or _GEMINI_STATUS.get(status, "UNKNOWN")
        return orjson.dumps({"error": _gemini_error(status, text, word, reply)})
    code = reply.error_code if reply is not None else None
    error: dict[str, Any] = {"code": code or str(status), "message": text}
    if error_type is not None:
        error["type"] = error_type
    if code == "content_filter":
        error.update(
            {
                "message": message
                or "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy. Please modify your prompt and retry.",
                "type": None,
                "param": "prompt",
                "status": status,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        **_FILTER_SAFE,
                        "jailbreak": {"filtered": True, "detected": True},
                    },
                },
            }
        )
    return orjson.dumps({"error": error})


def _gemini_error(status: int, message: str, word: str, reply: Reply | None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if reply is not None and reply.error_reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reply.error_reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if reply is not None and reply.retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": reply.retry_delay}
        )
    error: dict[str, Any] = {"code": status, "message": message, "status": word}
    if details:
        error["details"] = details
    return error


# -- answers -------------------------------------------------------------------------------------
def _merged_usage(base: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {**base, **dict(reply.usage)} if reply.usage is not None else base


def _forced_tool(rec: Recorded) -> str | None:
    body = rec.json if isinstance(rec.json, dict) else {}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        name = choice.get("name")
        return name if isinstance(name, str) else None
    return None


def answer(rec: Recorded, reply: Reply, ans: Answer, structured: Any) -> tuple[bytes, str]:
    """The non-stream answer body of a vendor route (and its content type)."""
    route = rec.route
    if route == "messages":
        return orjson.dumps(_anthropic_message(rec, reply, ans, structured)), "application/json"
    if route == "count_tokens":
        return orjson.dumps({"input_tokens": max(ans.prompt_words, 1)}), "application/json"
    if route == "generate_content":
        return orjson.dumps(_gemini_response(rec, reply, ans)), "application/json"
    if route == "gemini_count_tokens":
        tokens = max(ans.prompt_words, 1)
        body = {
            "totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        }
        return orjson.dumps(body), "application/json"
    if route in ("embed_content", "batch_embed_contents"):
        return orjson.dumps(_gemini_embeddings(rec, reply)), "application/json"
    raise ValueError(f"no vendor answer for route {route!r}")


def _anthropic_usage(rec: Recorded, reply: Reply, ans: Answer, output: int) -> dict[str, Any]:
    base = {
        "input_tokens": ans.prompt_words,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    return _merged_usage(base, reply)


def _anthropic_content(
    rec: Recorded, reply: Reply, ans: Answer, structured: Any
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if ans.reasoning:
        blocks.append(
            {
                "type": "thinking",
                "thinking": "".join(ans.reasoning),
                "signature": f"sig-{rec.index}",
            }
        )
    forced = _forced_tool(rec)
    if forced is not None and not ans.calls:
        args = structured if structured is not None else {}
        blocks.append(
            {"type": "tool_use", "id": f"toolu_{rec.index}_0", "name": forced, "input": args}
        )
        return blocks
    if ans.text is not None:
        blocks.append({"type": "text", "text": ans.text})
    for i, call in enumerate(ans.calls):
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"] if call["id"] != f"call_{i}" else f"toolu_{rec.index}_{i}",
                "name": call["function"]["name"],
                "input": _input_of(call["function"]["arguments"]),
            }
        )
    return blocks


def _input_of(arguments: str) -> Any:
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments  # a broken answer on purpose: the adapter must reject it


def _stop_reason(reply: Reply, blocks: list[dict[str, Any]], rec: Recorded) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def _anthropic_message(rec: Recorded, reply: Reply, ans: Answer, structured: Any) -> dict[str, Any]:
    blocks = _anthropic_content(rec, reply, ans, structured)
    output = len(ans.pieces) + len(ans.calls) + len(ans.reasoning)
    stop = _stop_reason(reply, blocks, rec)
    return {
        "id": f"msg_{rec.index:04d}",
        "type": "message",
        "role": "assistant",
        "model": rec.model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _anthropic_usage(rec, reply, ans, output),
    }


_SAFETY_RATINGS = [
    {"category": c, "probability": "NEGLIGIBLE"}
    for c in (
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    )
]


def _gemini_usage(reply: Reply, ans: Answer, output: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "promptTokenCount": ans.prompt_words,
        "candidatesTokenCount": output,
        "totalTokenCount": ans.prompt_words + output + len(ans.reasoning),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": ans.prompt_words}],
    }
    if ans.reasoning:
        base["thoughtsTokenCount"] = len(ans.reasoning)
    return _merged_usage(base, reply)


def _gemini_parts(rec: Recorded, reply: Reply, ans: Answer) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if ans.reasoning:
        parts.append({"text": "".join(ans.reasoning), "thought": True})
    if ans.text is not None:
        parts.append({"text": ans.text})
    parts.extend(_gemini_call(rec, reply, call) for call in ans.calls)
    return parts


def _gemini_call(rec: Recorded, reply: Reply, call: dict[str, Any]) -> dict[str, Any]:
    function = {"name": call["function"]["name"], "args": _input_of(call["function"]["arguments"])}
    part: dict[str, Any] = {"functionCall": function}
    if reply.thought_signature is not None:
        part["thoughtSignature"] = reply.thought_signature
    return part


def _gemini_response(rec: Recorded, reply: Reply, ans: Answer) -> dict[str, Any]:
    base = {"modelVersion": rec.model, "responseId": f"resp-{rec.index}"}
    if reply.block_reason is not None:
        usage = {"promptTokenCount": ans.prompt_words, "totalTokenCount": ans.prompt_words}
        feedback = {"blockReason": reply.block_reason, "safetyRatings": _SAFETY_RATINGS}
        return {"promptFeedback": feedback, "usageMetadata": usage, **base}
    finish = reply.finish_reason or "STOP"
    candidate: dict[str, Any] = {
        "finishReason": finish,
        "index": 0,
        "safetyRatings": _SAFETY_RATINGS,
    }
    if finish not in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"):
        candidate["content"] = {"role": "model", "parts": _gemini_parts(rec, reply, ans)}
    output = len(ans.pieces) + len(ans.calls)
    return {"candidates": [candidate], "usageMetadata": _gemini_usage(reply, ans, output), **base}


def _gemini_embeddings(rec: Recorded, reply: Reply) -> dict[str, Any]:
    from tests.upstream import _vector

    body = rec.json if isinstance(rec.json, dict) else {}
    requests = body.get("requests") if rec.route == "batch_embed_contents" else [body]
    vectors = []
    for request in requests or ():
        fields = _camelized(request)
        text = "".join(
            p.get("text", "") for p in _camelized(fields.get("content")).get("parts") or ()
        )
        dim = fields.get("outputDimensionality") or reply.embedding_dim
        vectors.append({"values": list(reply.embedding) if reply.embedding else _vector(text, dim)})
    if rec.route == "embed_content":
        return {"embedding": vectors[0]}
    return {"embeddings": vectors}


# -- streams -------------------------------------------------------------------------------------
Frame = tuple[bytes, bool]
"""One SSE frame, and whether it carries content (what ``cut_after`` counts)."""


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_frames(
    rec: Recorded, reply: Reply, ans: Answer, structured: Any
) -> tuple[list[Frame], bytes]:
    """The SSE frames of a vendor stream and the in-stream error frame (for ``stream_error``)."""
    if rec.route == "messages":
        return _anthropic_frames(rec, reply, ans, structured), _event(
            "error",
            {
                "type": "error",
                "error": {
                    "type": reply.stream_error or "overloaded_error",
                    "message": reply.error or "Overloaded",
                },
                "request_id": f"req_{rec.index}",
            },
        )
    word = reply.stream_error or "UNAVAILABLE"
    error = _gemini_error(
        _GEMINI_CODES.get(word, 500), reply.error or "The model is overloaded.", word, reply
    )
    return _gemini_frames(rec, reply, ans), b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n"


def _anthropic_frames(rec: Recorded, reply: Reply, ans: Answer, structured: Any) -> list[Frame]:
    blocks = _anthropic_content(rec, reply, ans, structured)
    output = len(ans.pieces) + len(ans.calls) + len(ans.reasoning)
    usage = _anthropic_usage(rec, reply, ans, output)
    start_usage = {**usage, "output_tokens": 1}
    message = {
        "id": f"msg_{rec.index:04d}",
        "type": "message",
        "role": "assistant",
        "model": rec.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    frames: list[Frame] = [
        (_event("message_start", {"type": "message_start", "message": message}), False)
    ]
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            frames.append((_block_start(index, start), False))
            for piece in ans.reasoning:
                frames.append(
                    (_block_delta(index, {"type": "thinking_delta", "thinking": piece}), True)
                )
            frames.append(
                (
                    _block_delta(
                        index, {"type": "signature_delta", "signature": block["signature"]}
                    ),
                    False,
                )
            )
        elif kind == "text":
            frames.append((_block_start(index, {"type": "text", "text": ""}), False))
            frames.append((_event("ping", {"type": "ping"}), False))
            pieces = ans.pieces if ans.pieces else ([block["text"]] if block["text"] else [])
            for piece in pieces:
                frames.append((_block_delta(index, {"type": "text_delta", "text": piece}), True))
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            frames.append((_block_start(index, start), True))
            args = (
                orjson.dumps(block["input"]).decode()
                if not isinstance(block["input"], str)
                else block["input"]
            )
            half = len(args) // 2
            frames.append(
                (_block_delta(index, {"type": "input_json_delta", "partial_json": ""}), False)
            )
            for part in (args[:half], args[half:]):
                frames.append(
                    (_block_delta(index, {"type": "input_json_delta", "partial_json": part}), True)
                )
        frames.append(
            (_event("content_block_stop", {"type": "content_block_stop", "index": index}), False)
        )
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply, blocks, rec), "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    frames.append((_event("message_delta", delta), False))
    frames.append((_event("message_stop", {"type": "message_stop"}), False))
    return frames


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


_BLOCKING = ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION")


def _gemini_frames(rec: Recorded, reply: Reply, ans: Answer) -> list[Frame]:
    base = {"modelVersion": rec.model, "responseId": f"resp-{rec.index}"}

    def frame(
        parts: list[dict[str, Any]] | None, finish: str | None = None, usage: Any = None
    ) -> bytes:
        candidate: dict[str, Any] = {"index": 0}
        if parts is not None:
            candidate["content"] = {"role": "model", "parts": parts}
        if finish is not None:
            candidate["finishReason"] = finish
            candidate["safetyRatings"] = _SAFETY_RATINGS
        payload: dict[str, Any] = {"candidates": [candidate], **base}
        if usage is not None:
            payload["usageMetadata"] = usage
        return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"

    if reply.block_reason is not None:
        feedback = {"blockReason": reply.block_reason, "safetyRatings": _SAFETY_RATINGS}
        payload = {"promptFeedback": feedback, **base}
        return [(b"data: " + orjson.dumps(payload) + b"\r\n\r\n", False)]
    contents: list[list[dict[str, Any]]] = [[{"text": p, "thought": True}] for p in ans.reasoning]
    contents += [[{"text": p}] for p in ans.pieces]
    contents += [[_gemini_call(rec, reply, call)] for call in ans.calls]
    finish = reply.finish_reason or "STOP"
    usage = _gemini_usage(reply, ans, len(ans.pieces) + len(ans.calls))
    frames: list[Frame] = [(frame(parts), True) for parts in contents[:-1]]
    if contents and finish not in _BLOCKING:
        frames.append((frame(contents[-1], finish, usage), True))
    else:
        frames.extend((frame(parts), True) for parts in contents[-1:])
        frames.append((frame(None, finish, usage), False))
    return frames


# -- Azure -----------------------------------------------------------------------------------------
_FILTER_SAFE: dict[str, Any] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def azure_prompt_filter() -> list[dict[str, Any]]:
    results = {**_FILTER_SAFE, "jailbreak": {"filtered": False, "detected": False}}
    return [{"prompt_index": 0, "content_filter_results": results}]


def azure_choice_filter(finish: str | None) -> dict[str, Any]:
    if finish == "content_filter":
        return {**_FILTER_SAFE, "violence": {"filtered": True, "severity": "high"}}
    return dict(_FILTER_SAFE)


def azure_chat(body: dict[str, Any]) -> dict[str, Any]:
    """Azure's annotations on an OpenAI chat completion."""
    body["prompt_filter_results"] = azure_prompt_filter()
    for choice in body["choices"]:
        choice["content_filter_results"] = azure_choice_filter(choice.get("finish_reason"))
    return body


def azure_chunks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Azure's stream: a first chunk with only the prompt's filter results (``choices: []``),
    then the OpenAI chunks with each choice's filter results."""
    first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": azure_prompt_filter(),
        "choices": [],
    }
    for event in events:
        for choice in event.get("choices") or ():
            choice["content_filter_results"] = azure_choice_filter(choice.get("finish_reason"))
    return [first, *events]


def azure_embeddings(body: dict[str, Any], request: Any) -> dict[str, Any]:
    """``encoding_format: "base64"`` (the openai SDK's default) gets little-endian float32."""
    if isinstance(request, dict) and request.get("encoding_format") == "base64":
        for item in body["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return body
