"""Anthropic Messages API answers, both ways, with no I/O.

* :func:`to_completion`: an upstream's ``message`` -> the canonical chat completion (text blocks
  join into ``content``, ``tool_use`` blocks become ``tool_calls``, thinking becomes
  ``reasoning_content`` and ``thinking_blocks`` with their signatures, ``stop_reason`` maps to
  ``finish_reason``; ``refusal`` raises :class:`~msgflux.exceptions.ContentPolicyError`);
* :func:`to_message`: a canonical completion -> the ``message`` a Messages API client reads;
* usage both ways: :func:`anthropic_usage` (OpenAI's ``prompt_tokens`` counts cached tokens
  too, the cache fields are kept) and its inverse :func:`message_usage`.

:data:`FINISH_REASONS` and :data:`STOP_REASONS` are one table read both ways, so the two
directions cannot disagree.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux.formats.anthropic.request_encode import JSON_TOOL
from msgflux.formats.common import Who, bad, int_of, now, policy_error

__all__ = [
    "FINISH_REASONS",
    "STOP_REASONS",
    "anthropic_usage",
    "message_usage",
    "to_completion",
    "to_message",
]

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


STOP_REASONS: dict[str, str] = {}
"""OpenAI ``finish_reason`` -> Anthropic ``stop_reason``: the first reason of the provider's
table that maps to it (``stop`` -> ``end_turn``, ``length`` -> ``max_tokens``, ...)."""
for _reason, _finish_reason in FINISH_REASONS.items():
    STOP_REASONS.setdefault(_finish_reason, _reason)
STOP_REASONS.setdefault("function_call", "tool_use")
del _reason, _finish_reason


# -- upstream answers -> canonical ----------------------------------------------------------
def anthropic_usage(usage: Any, who: Who) -> dict[str, Any] | None:
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


def _finish(stop: Any, who: Who, body: Any) -> str:
    if stop is None:
        return "stop"
    if not isinstance(stop, str):
        raise bad(who, "stop_reason must be a str", stop)
    finish = FINISH_REASONS.get(stop, "stop")
    if finish == "content_filter":
        raise policy_error(who, f"the model stopped the answer: {stop}", body)
    return finish


def _obj(value: Any, who: Who, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(who, f"{what} must be an object", value)
    return value


def _str(block: dict[str, Any], key: str, who: Who) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise bad(who, f"a {block.get('type')} block needs a str {key!r}", block)
    return value


def to_completion(payload: Any, who: Who, *, json_tool: bool = False) -> dict[str, Any]:
    """The canonical completion of a Messages API answer (``json_tool``: the request carried
    its JSON answer in the forced :data:`~.request_encode.JSON_TOOL`, whose input is the
    text)."""
    message = _obj(payload, who, "a Messages API answer")
    content = message.get("content")
    if not isinstance(content, list):
        raise bad(who, "a Messages API answer needs a content list", payload)
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
        "model": model if isinstance(model, str) else who[1],
        "choices": [{"index": 0, "message": answer, "finish_reason": finish, "logprobs": None}],
        "usage": anthropic_usage(message.get("usage"), who),
    }


# -- canonical -> Messages API answers ------------------------------------------------------
def message_usage(usage: Any) -> dict[str, Any]:
    """Anthropic's usage for OpenAI's (the inverse of the provider's ``anthropic_usage``):
    ``input_tokens`` counts only uncached tokens; the cache fields are there when known.
    A deployment that reported no usage gives zeros."""
    if type(usage) is not dict:
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = usage.get("prompt_tokens") or 0
    read = usage.get("cache_read_input_tokens")
    if read is None:
        details = usage.get("prompt_tokens_details")
        read = details.get("cached_tokens") if type(details) is dict else None
    created = usage.get("cache_creation_input_tokens")
    out: dict[str, Any] = {
        "input_tokens": max(0, prompt - (read or 0) - (created or 0)),
        "output_tokens": usage.get("completion_tokens") or 0,
    }
    if created is not None:
        out["cache_creation_input_tokens"] = created
    if read is not None:
        out["cache_read_input_tokens"] = read
    return out


def _input(arguments: Any, where: str) -> dict[str, Any]:
    if type(arguments) is dict:
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if type(value) is not dict:
        raise ValueError(f"the deployment's {where} is not a JSON object: {arguments!r:.80}")
    return value


def _thoughts(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if blocks:
        return list(blocks)  # an Anthropic deployment's, signatures kept
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def to_message(completion: Any, name: str) -> dict[str, Any]:
    """The Anthropic ``message`` for a canonical chat completion (``model``: the gateway name);
    raises ``ValueError`` for a completion that is not one."""
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            f"the deployment's answer has no choices[0].message: {completion!r:.120}"
        ) from None
    content = _thoughts(message)
    text = message.get("content")
    if type(text) is list:
        text = "".join(p.get("text") or "" for p in text if type(p) is dict)
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{j}",
                "name": function.get("name"),
                "input": _input(function.get("arguments"), f"tool_calls[{j}].function.arguments"),
            }
        )
    finish = choice.get("finish_reason")
    stop = "refusal" if refusal else STOP_REASONS.get(finish, "end_turn")
    return {
        "id": completion.get("id") or "msg",
        "type": "message",
        "role": "assistant",
        "model": name,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": message_usage(completion.get("usage")),
    }
