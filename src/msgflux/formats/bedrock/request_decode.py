"""Bedrock Converse bodies as canonical (OpenAI chat) requests: the inverse of
:mod:`.request_encode`, with no I/O.

``system`` text blocks become one system turn; user turns' ``text``, ``image`` and
``document`` blocks become text, ``image_url`` (a ``data:`` URL) and ``file`` parts; assistant
turns' ``toolUse`` blocks ``tool_calls`` and ``reasoningContent`` ``thinking_blocks``;
``toolResult`` blocks one ``tool`` turn each (``is_error`` for ``status: error``); a
``cachePoint`` marks the block before it with ``cache_control``. ``inferenceConfig``,
``toolConfig`` and ``outputConfig.textFormat`` map back to their OpenAI fields;
``additionalModelRequestFields`` are spread at the top level (``top_k``, ``thinking``, vendor
fields), and Converse's other fields are kept as they are.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.bedrock.request_encode import CONVERSE_FIELDS

__all__ = ["from_converse"]

_MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
}
_CACHE = {"type": "ephemeral"}


def _part(block: dict[str, Any], where: str) -> dict[str, Any]:
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "image" in block:
        image = block["image"]
        url = f"data:{_MIME[image['format']]};base64,{image['source']['bytes']}"
        return {"type": "image_url", "image_url": {"url": url}}
    if "document" in block:
        doc = block["document"]
        data = f"data:{_MIME[doc['format']]};base64,{doc['source']['bytes']}"
        return {"type": "file", "file": {"filename": doc.get("name"), "file_data": data}}
    raise ValueError(f"{where} holds a block this decoder does not know: {sorted(block)}")


def _cached(parts: list[dict[str, Any]], blocks: list[dict[str, Any]], where: str) -> None:
    """Append the parts of ``blocks`` to ``parts``, a cache point marking the part before."""
    for j, block in enumerate(blocks):
        if "cachePoint" in block:
            if parts:
                parts[-1] = {**parts[-1], "cache_control": _CACHE}
            continue
        parts.append(_part(block, f"{where}[{j}]"))


def _plain(parts: list[dict[str, Any]]) -> Any:
    if len(parts) == 1 and parts[0].get("type") == "text" and len(parts[0]) == 2:
        return parts[0]["text"]
    return parts


def _user(turn: list[dict[str, Any]], i: int, out: list[dict[str, Any]]) -> None:
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(turn):
        if "toolResult" in block:
            result = block["toolResult"]
            content: list[dict[str, Any]] = []
            for k, inner in enumerate(result.get("content") or ()):
                if "json" in inner:
                    content.append({"type": "text", "text": orjson.dumps(inner["json"]).decode()})
                else:
                    content.append(_part(inner, f"messages[{i}].content[{j}].content[{k}]"))
            message: dict[str, Any] = {
                "role": "tool",
                "tool_call_id": result["toolUseId"],
                "content": _plain(content) if content else "",
            }
            if result.get("status") == "error":
                message["is_error"] = True
            out.append(message)
        else:
            _cached(parts, [block], f"messages[{i}].content[{j}]")
    if parts:
        out.append({"role": "user", "content": _plain(parts)})


def _assistant(turn: list[dict[str, Any]], i: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(turn):
        if "toolUse" in block:
            use = block["toolUse"]
            function = {"name": use["name"], "arguments": orjson.dumps(use["input"]).decode()}
            calls.append({"id": use["toolUseId"], "type": "function", "function": function})
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]
            text = reasoning.get("reasoningText")
            if text is not None:
                item = {"type": "thinking", "thinking": text.get("text", "")}
                if text.get("signature"):
                    item["signature"] = text["signature"]
                thinking.append(item)
            else:
                thinking.append({"type": "redacted_thinking", "data": reasoning["redactedContent"]})
        else:
            _cached(parts, [block], f"messages[{i}].content[{j}]")
    message: dict[str, Any] = {"role": "assistant", "content": _plain(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _tools(config: dict[str, Any], out: dict[str, Any]) -> None:
    tools: list[dict[str, Any]] = []
    for tool in config.get("tools") or ():
        if "cachePoint" in tool:
            if tools:
                tools[-1]["cache_control"] = _CACHE
            continue
        spec = tool["toolSpec"]
        function: dict[str, Any] = {"name": spec["name"], "parameters": spec["inputSchema"]["json"]}
        if spec.get("description"):
            function["description"] = spec["description"]
        if spec.get("strict") is True:
            function["strict"] = True
        tools.append({"type": "function", "function": function})
    if tools:
        out["tools"] = tools
    choice = config.get("toolChoice")
    if isinstance(choice, dict):
        if "auto" in choice:
            out["tool_choice"] = "auto"
        elif "any" in choice:
            out["tool_choice"] = "required"
        elif "tool" in choice:
            out["tool_choice"] = {"type": "function", "function": {"name": choice["tool"]["name"]}}


def from_converse(body: dict[str, Any]) -> dict[str, Any]:
    """The canonical chat body of a Converse body (see the module docstring)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise TypeError("a Converse body must be an object with a messages list")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        parts: list[dict[str, Any]] = []
        _cached(parts, system, "system")
        messages.append({"role": "system", "content": _plain(parts)})
    for i, turn in enumerate(body["messages"]):
        content = turn.get("content") or []
        if turn.get("role") == "assistant":
            messages.append(_assistant(content, i))
        else:
            _user(content, i, messages)
    out: dict[str, Any] = {"messages": messages}
    config = body.get("inferenceConfig") or {}
    for ours, theirs in (
        ("max_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop", "stopSequences"),
    ):
        if theirs in config:
            out[ours] = config[theirs]
    if isinstance(body.get("toolConfig"), dict):
        _tools(body["toolConfig"], out)
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        definition = text_format["structure"]["jsonSchema"]
        spec = {"name": definition.get("name"), "schema": orjson.loads(definition["schema"])}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    tier = body.get("serviceTier")
    if isinstance(tier, dict) and isinstance(tier.get("type"), str):
        out["service_tier"] = tier["type"]
    extra = body.get("additionalModelRequestFields")
    if isinstance(extra, dict):
        for name, value in extra.items():
            if name == "inferenceConfig" and isinstance(value, dict) and "topK" in value:
                out["top_k"] = value["topK"]
            else:
                out[name] = value
    for name in CONVERSE_FIELDS - {
        "inferenceConfig",
        "toolConfig",
        "outputConfig",
        "serviceTier",
        "additionalModelRequestFields",
    }:
        if name in body:
            out[name] = body[name]
    return out
