"""Gemini ``generateContent`` requests in the canonical (OpenAI chat) form.

:func:`to_canonical` is the translation a Gemini request goes through when the deployment
that answers does not speak Gemini's API (a ``google-genai`` client answered by a GPT
deployment). A request a Gemini deployment answers never comes here: it goes upstream as the
client sent it (the native lane). Gemini names the model and whether it streams in the URL
(``models/<model>:streamGenerateContent``), so both are parameters here.

Gemini's REST API reads every field in camelCase or snake_case (``systemInstruction`` or
``system_instruction``); so does this module. It reads strictly where a mistake would change
the answer: a malformed field raises ``ValueError`` whose message starts with the field's
path (``contents.1.parts.0.text: ...``) and says what is accepted.

What maps to what: ``systemInstruction`` becomes the system turn; ``contents`` with role
``user`` user turns (text parts, ``inlineData`` as ``data:`` URL images, ``input_audio`` or
files, ``fileData`` images by URL), their ``functionResponse`` parts tool turns (first: they
answer the model turn before; ``{"result": text}`` is the text, another response its JSON)
matched to the call they answer by ``id``, else by name in order; role ``model`` assistant
turns (texts joined, ``thought`` parts as ``reasoning_content``, ``functionCall`` parts as
``tool_calls`` with their ``thoughtSignature`` in ``extra_content.google``; a call without
an id gets ``call_<turn>_<n>``). ``functionDeclarations`` become function tools
(``parameters`` from Gemini's schema subset back to JSON Schema, :mod:`.schema`;
``parametersJsonSchema`` as it is), ``functionCallingConfig`` ``tool_choice`` (``ANY`` with
one allowed name forces it; several allowed names keep only those tools).
``generationConfig``: ``maxOutputTokens``, ``temperature``, ``topP``, ``topK``,
``stopSequences``, ``candidateCount`` (``n``), ``seed``, penalties, ``responseMimeType``
with ``responseSchema``/``responseJsonSchema`` (``response_format``), ``thinkingConfig``
(``reasoning_effort``: a level as it is, a budget as the largest effort of
:data:`~.request_encode.THINKING_BUDGETS` not above it, 0 as ``none``).

What has no canonical form follows the :mod:`~msgflux.formats.policy`: hints are dropped and
reported (``safetySettings``, ``labels``, a dynamic thinking budget, thought signatures on
text, media resolution, fields this module does not know); what would change the answer
refuses by default (``cachedContent``, whose cached turns another family cannot read;
Gemini's own tools such as ``googleSearch`` and code execution; logprobs; audio or image
output; an output type other than JSON).
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.common import unsupported
from msgflux.formats.gemini.config_decode import generation_config, tool_config
from msgflux.formats.gemini.read import (
    TARGET,
    drop,
    fail,
    kind_of,
    non_empty,
    obj,
    string,
)
from msgflux.formats.gemini.schema import json_schema
from msgflux.formats.policy import Translation

__all__ = ["to_canonical"]

_FIELDS = frozenset(
    ("model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig")
)
_HINTS = {
    "safetySettings": ("safety_settings", "apply Gemini's safetySettings"),
    "labels": ("metadata", "take Gemini's labels"),
    "cachedContent": ("cached_content", "read Gemini's cached content (cachedContent)"),
}
"""Top-level fields with no canonical form -> (feature, what the target cannot do)."""
_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
_PART_HINTS = ("videoMetadata", "mediaResolution", "partMetadata")
_AUDIO = {"mpeg": "mp3", "x-wav": "wav", "wave": "wav"}
_GEMINI_FILES = ("gs://", "https://generativelanguage.googleapis.com/")
"""URIs only a Gemini deployment can read (Cloud Storage, the Files API)."""


# -- the request --------------------------------------------------------------------------------
def to_canonical(
    payload: Any, ctx: Translation, *, model: str, stream: bool = False
) -> dict[str, Any]:
    """The canonical chat body for a ``generateContent`` body: ``model`` is the one the URL
    names, ``stream`` whether the client called ``streamGenerateContent`` (see the module
    docstring)."""
    body = obj(payload, "body")
    for name in body:
        if name not in _FIELDS:
            feature, why = _HINTS.get(name, ("unknown_fields", f"take Gemini's {name}"))
            ctx.lose(feature, name, TARGET, why)
    messages: list[dict[str, Any]] = []
    if body.get("systemInstruction") is not None:
        messages.append(_system(body["systemInstruction"]))
    pending: list[tuple[str, str]] = []
    contents = non_empty(body.get("contents"), "contents", "{role, parts} objects")
    for i, content in enumerate(contents):
        _content(content, i, messages, pending, ctx)
    out: dict[str, Any] = {"model": string(model, "model"), "messages": messages}
    if body.get("tools") is not None:
        tools = _tools(body["tools"], ctx)
        if tools:
            out["tools"] = tools
    if body.get("toolConfig") is not None:
        tool_config(body["toolConfig"], out, ctx)
    if body.get("generationConfig") is not None:
        generation_config(obj(body["generationConfig"], "generationConfig"), out, ctx)
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # every Gemini event carries usage
    return out


def _system(value: Any) -> dict[str, Any]:
    system = obj(value, "systemInstruction")
    texts = []
    for j, part in enumerate(non_empty(system.get("parts"), "systemInstruction.parts", "parts")):
        part = obj(part, f"systemInstruction.parts.{j}")
        texts.append(string(part.get("text"), f"systemInstruction.parts.{j}.text"))
    if len(texts) == 1:
        return {"role": "system", "content": texts[0]}
    return {"role": "system", "content": [{"type": "text", "text": t} for t in texts]}


def _content(
    value: Any,
    i: int,
    messages: list[dict[str, Any]],
    pending: list[tuple[str, str]],
    ctx: Translation,
) -> None:
    """Append the canonical messages of ``contents[i]``; ``pending`` holds the ``(id, name)``
    of the calls the last model turn made and no response answered yet."""
    where = f"contents.{i}"
    content = obj(value, where)
    for key in content:
        if key not in ("role", "parts"):
            raise fail(f"{where}.{key}", "Unknown name (a content has a role and parts)")
    role = content.get("role", "user")
    if role not in ("user", "model", "function"):
        raise fail(f"{where}.role", "must be 'user' or 'model'", role)
    parts = [
        _part(part, f"{where}.parts.{j}", ctx)
        for j, part in enumerate(non_empty(content.get("parts"), f"{where}.parts", "parts"))
    ]
    if role == "model":
        pending.clear()
        messages.append(_model_turn(parts, i, pending, ctx))
    else:
        _user_turn(parts, messages, pending)


def _part(value: Any, where: str, ctx: Translation) -> tuple[str, dict[str, Any], str]:
    """``(kind, part, where)``: the part's data field and the part in camelCase."""
    part = obj(value, where)
    data = [key for key in part if key in _DATA]
    if len(data) != 1:
        raise fail(where, f"a part must hold exactly one of {', '.join(_DATA)}", sorted(part))
    for key in part:
        if key in _PART_HINTS:
            drop(ctx, "unknown_fields", f"{where}.{key}")
        elif key not in _DATA and key not in ("thought", "thoughtSignature"):
            raise fail(f"{where}.{key}", "Unknown name (not a field of a part)")
    thought = part.get("thought")
    if thought is not None and type(thought) is not bool:
        raise fail(f"{where}.thought", "must be a boolean", thought)
    signature = part.get("thoughtSignature")
    if signature is not None:
        string(signature, f"{where}.thoughtSignature")
    kind = data[0]
    if kind in ("executableCode", "codeExecutionResult"):
        ctx.lose("builtin_tools", f"{where}.{kind}", TARGET, "take Gemini's code execution parts")
    return kind, part, where


def _model_turn(
    parts: list[tuple[str, dict[str, Any], str]],
    i: int,
    pending: list[tuple[str, str]],
    ctx: Translation,
) -> dict[str, Any]:
    """The assistant message of ``contents[i]`` (its calls noted in ``pending``)."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for kind, part, at in parts:
        if kind == "functionCall":
            call = _call(part, at, f"call_{i}_{len(calls)}")
            calls.append(call)
            pending.append((call["id"], call["function"]["name"]))
            continue
        if "thoughtSignature" in part:
            ctx.lose(
                "thinking_blocks", f"{at}.thoughtSignature", TARGET, "take Gemini's signatures"
            )
        if kind == "text":
            text = string(part["text"], f"{at}.text")
            (thoughts if part.get("thought") else texts).append(text)
        elif kind in ("inlineData", "fileData"):
            raise unsupported(TARGET, f"take media in a model turn ({at}.{kind})")
        elif kind == "functionResponse":
            raise fail(f"{at}.functionResponse", "belongs to a user turn, not a model turn")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return message


def _call(part: dict[str, Any], where: str, default_id: str) -> dict[str, Any]:
    fc = obj(part["functionCall"], f"{where}.functionCall")
    name = string(fc.get("name"), f"{where}.functionCall.name", empty=False)
    args = fc.get("args")
    if args is None:
        args = {}
    elif type(args) is not dict:
        raise fail(f"{where}.functionCall.args", f"must be an object, got {kind_of(args)}")
    ident = fc.get("id")
    if ident is not None:
        string(ident, f"{where}.functionCall.id")
    function = {"name": name, "arguments": orjson.dumps(args).decode()}
    call: dict[str, Any] = {"id": ident or default_id, "type": "function", "function": function}
    signature = part.get("thoughtSignature")
    if signature is not None:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _user_turn(
    parts: list[tuple[str, dict[str, Any], str]],
    messages: list[dict[str, Any]],
    pending: list[tuple[str, str]],
) -> None:
    """Function responses become tool turns (first: they answer the model turn before), the
    other parts one user turn after them."""
    out: list[dict[str, Any]] = []
    for kind, part, at in parts:
        if kind == "functionResponse":
            messages.append(_tool_turn(part, at, pending))
        elif kind == "text":
            out.append({"type": "text", "text": string(part["text"], f"{at}.text")})
        elif kind == "inlineData":
            out.append(_inline(obj(part[kind], f"{at}.{kind}"), f"{at}.{kind}"))
        elif kind == "fileData":
            out.append(_file(obj(part[kind], f"{at}.{kind}"), f"{at}.{kind}"))
        elif kind == "functionCall":
            raise fail(f"{at}.functionCall", "belongs to a model turn, not a user turn")
    if len(out) == 1 and out[0]["type"] == "text":
        messages.append({"role": "user", "content": out[0]["text"]})
    elif out:
        messages.append({"role": "user", "content": out})


def _tool_turn(part: dict[str, Any], where: str, pending: list[tuple[str, str]]) -> dict[str, Any]:
    """The tool message of a ``functionResponse``: the call it answers is the pending one with
    its ``id``, else the first pending one with its name (Gemini pairs them in order)."""
    at = f"{where}.functionResponse"
    fr = obj(part["functionResponse"], at)
    name = string(fr.get("name"), f"{at}.name", empty=False)
    ident = fr.get("id")
    if ident is not None:
        string(ident, f"{at}.id")
    match = next((k for k, (i, _) in enumerate(pending) if ident and i == ident), None)
    if match is None:
        match = next((k for k, (_, n) in enumerate(pending) if n == name), None)
    if match is None:
        raise fail(f"{at}.name", "answers no functionCall of the model turn before it", name)
    call_id = pending.pop(match)[0]
    if fr.get("parts"):
        raise unsupported(TARGET, f"take media in a function response ({at}.parts)")
    response = fr.get("response")
    if response is None:
        response = {}
    elif type(response) is not dict:
        raise fail(f"{at}.response", f"must be an object, got {kind_of(response)}")
    result = response.get("result")
    plain = len(response) == 1 and type(result) is str  # how request_encode sends a text
    text = result if plain else orjson.dumps(response).decode()
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _mime(blob: dict[str, Any], where: str, required: bool) -> str:
    mime = blob.get("mimeType")
    if mime is None and not required:
        return ""
    return string(mime, f"{where}.mimeType", empty=False).lower()


def _inline(blob: dict[str, Any], where: str) -> dict[str, Any]:
    mime = _mime(blob, where, True)
    data = string(blob.get("data"), f"{where}.data", empty=False)
    major, _, minor = mime.partition("/")
    if major == "image":
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if major == "audio":
        audio = {"data": data, "format": _AUDIO.get(minor, minor)}
        return {"type": "input_audio", "input_audio": audio}
    return {"type": "file", "file": {"file_data": f"data:{mime};base64,{data}"}}


def _file(blob: dict[str, Any], where: str) -> dict[str, Any]:
    mime = _mime(blob, where, False)
    uri = string(blob.get("fileUri"), f"{where}.fileUri", empty=False)
    if uri.startswith(_GEMINI_FILES):
        raise unsupported(TARGET, f"read a file stored with Gemini ({where}.fileUri)")
    if not mime.startswith("image/") or not uri.startswith(("https://", "http://")):
        raise unsupported(TARGET, f"take a {mime or 'file'} by URI ({where}); only images")
    return {"type": "image_url", "image_url": {"url": uri}}


# -- tools --------------------------------------------------------------------------------------
def _tools(value: Any, ctx: Translation) -> list[dict[str, Any]]:
    if type(value) is not list:
        raise fail("tools", f"must be an array of Tool objects, got {kind_of(value)}")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        for key, spec in obj(tool, where).items():
            if key != "functionDeclarations":
                # One of Gemini's own tools (googleSearch, codeExecution, urlContext, ...):
                # only a Gemini deployment runs it, and that one takes the native lane.
                ctx.lose("builtin_tools", f"{where}.{key}", TARGET, f"run Gemini's {key} tool")
                continue
            if type(spec) is not list:
                raise fail(f"{where}.{key}", f"must be an array, got {kind_of(spec)}")
            out.extend(_declaration(d, f"{where}.{key}.{k}", ctx) for k, d in enumerate(spec))
    return out


def _declaration(value: Any, where: str, ctx: Translation) -> dict[str, Any]:
    declaration = obj(value, where)
    function: dict[str, Any] = {
        "name": string(declaration.get("name"), f"{where}.name", empty=False)
    }
    description = declaration.get("description")
    if description is not None:
        function["description"] = string(description, f"{where}.description")
    params = declaration.get("parameters")
    raw = declaration.get("parametersJsonSchema")
    if params is not None and raw is not None:
        raise fail(where, "parameters and parametersJsonSchema are exclusive")
    if params is not None:
        function["parameters"] = json_schema(params, f"{where}.parameters")
    elif raw is not None:
        if type(raw) is not dict:
            raise fail(f"{where}.parametersJsonSchema", f"must be an object, got {kind_of(raw)}")
        function["parameters"] = raw
    for key in declaration:
        if key not in ("name", "description", "parameters", "parametersJsonSchema"):
            drop(ctx, "unknown_fields", f"{where}.{key}")  # response schemas, behavior
    return {"type": "function", "function": function}
