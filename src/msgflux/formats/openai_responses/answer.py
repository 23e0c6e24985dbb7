"""Responses API answers, both ways, with no I/O.

* :func:`to_completion`: a Responses ``response`` object -> the canonical chat completion
  (``output_text`` parts join into ``content``, ``refusal`` parts into ``refusal``,
  ``function_call`` items become ``tool_calls``, a namespaced function named ``NS__name``, a
  reasoning summary becomes ``reasoning_content``; ``status`` gives the finish reason, or the
  typed error of a failed response);
* :func:`to_response`: a canonical completion -> the ``response`` object a Responses client
  reads, echoing the client's request (its tools, its namespaces split back);
* usage both ways (:func:`canonical_usage`, :func:`responses_usage`): OpenAI counts cached
  tokens among the input tokens in both APIs, so the mapping is one of names.

:func:`response_object` is the envelope :mod:`.stream_encode` sends too, so a streamed
answer's ``response.completed`` is the answer :func:`to_response` gives.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from msgflux.formats.common import Who, bad, int_of, now, policy_error
from msgflux.formats.openai_responses.errors import response_error

__all__ = [
    "ECHOED",
    "Namespaces",
    "canonical_usage",
    "finish_of",
    "function_item",
    "namespaces_of",
    "new_id",
    "reasoning_item",
    "response_object",
    "responses_usage",
    "split_name",
    "to_completion",
    "to_response",
]

ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
"""Request fields a ``response`` object echoes -> the API's default when the request has
none."""


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style (``resp_``, ``msg_``, ``fc_``, ``rs_`` + hex)."""
    return prefix + secrets.token_hex(16)


# -- usage --------------------------------------------------------------------------------------
def _detail(details: Any, key: str, who: Who, what: str) -> int:
    return int_of(details.get(key), who, what) if isinstance(details, dict) else 0


def canonical_usage(usage: Any, who: Who) -> dict[str, Any] | None:
    """OpenAI chat's usage for a Responses ``usage``."""
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise bad(who, "usage must be an object", usage)
    prompt = int_of(usage.get("input_tokens"), who, "input_tokens")
    completion = int_of(usage.get("output_tokens"), who, "output_tokens")
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": _detail(inputs, "cached_tokens", who, "cached_tokens")
        },
        "completion_tokens_details": {
            "reasoning_tokens": _detail(outputs, "reasoning_tokens", who, "reasoning_tokens")
        },
    }
    written = _detail(inputs, "cache_write_tokens", who, "cache_write_tokens")
    if written:
        out["cache_creation_input_tokens"] = written
    return out


def responses_usage(usage: Any) -> dict[str, Any]:
    """The Responses ``usage`` for a canonical one (zeros when the deployment reported none;
    Anthropic's cache fields, where a completion carries them, as cached and written
    tokens)."""
    if type(usage) is not dict:
        usage = {}
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if type(details) is dict else None
    if cached is None:
        cached = usage.get("cache_read_input_tokens")
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if type(details) is dict else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": cached or 0,
            "cache_write_tokens": usage.get("cache_creation_input_tokens") or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


# -- namespaces ---------------------------------------------------------------------------------
Namespaces = dict[str, frozenset[str]]
"""A request's namespace tools: namespace -> the names of its functions."""


def namespaces_of(request: Mapping[str, Any] | None) -> Namespaces:
    """The namespace tools of a Responses request (the canonical form names their functions
    ``NS__name``; an answer names them back as the client declared them)."""
    tools = request.get("tools") if request is not None else None
    out: Namespaces = {}
    if type(tools) is not list:
        return out
    for tool in tools:
        if type(tool) is dict and tool.get("type") == "namespace":
            name, inner = tool.get("name"), tool.get("tools")
            if type(name) is str and type(inner) is list:
                out[name] = frozenset(
                    fn["name"] for fn in inner if type(fn) is dict and type(fn.get("name")) is str
                )
    return out


def split_name(name: str, spaces: Namespaces) -> tuple[str, str | None]:
    """``(name, namespace)`` of a canonical function name: ``NS__name`` is split when NS is
    one of the request's namespaces and declares that name (a plain name with ``__`` in it
    stays whole)."""
    if spaces and "__" in name:
        for ns, names in spaces.items():
            if name.startswith(ns + "__") and name[len(ns) + 2 :] in names:
                return name[len(ns) + 2 :], ns
    return name, None


def function_item(
    ident: str, call_id: str, name: str, arguments: str, spaces: Namespaces, status: str
) -> dict[str, Any]:
    """A ``function_call`` output item (its namespace split off the canonical name)."""
    plain, ns = split_name(name, spaces)
    item: dict[str, Any] = {
        "id": ident,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": plain,
        "arguments": arguments,
    }
    if ns is not None:
        item["namespace"] = ns
    return item


# -- Responses answers -> canonical -------------------------------------------------------------
def finish_of(response: dict[str, Any], called: bool, who: Who) -> str:
    """The canonical finish reason of a finished ``response`` (``called``: it holds a
    function call); a failed one raises its typed error, one stopped by a content filter
    :class:`~msgflux.exceptions.ContentPolicyError`."""
    status = response.get("status")
    if status == "completed" or status is None:
        return "tool_calls" if called else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        if reason == "content_filter":
            raise policy_error(who, "the model stopped the answer: content_filter", response)
        return "length"
    if status == "failed":
        raise response_error(response, who)
    raise bad(who, f"a response that is not finished (status {status!r})", response)


def _text_of(item: dict[str, Any], who: Who) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    refusals: list[str] = []
    content = item.get("content")
    if not isinstance(content, list):
        raise bad(who, "a message item needs a content list", item)
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "output_text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(who, "an output_text part needs a str 'text'", part)
            texts.append(text)
        elif kind == "refusal":
            refusal = part.get("refusal")
            if not isinstance(refusal, str):
                raise bad(who, "a refusal part needs a str 'refusal'", part)
            refusals.append(refusal)
    return texts, refusals


def _call_of(item: dict[str, Any], who: Who) -> dict[str, Any]:
    name, call_id, arguments = item.get("name"), item.get("call_id"), item.get("arguments")
    if not isinstance(name, str) or not isinstance(call_id, str):
        raise bad(who, "a function_call item needs a str call_id and name", item)
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode() if isinstance(arguments, dict) else ""
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = f"{namespace}__{name}"
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _summary(item: dict[str, Any]) -> list[str]:
    for key in ("summary", "content"):
        parts = item.get(key)
        if isinstance(parts, list):
            texts = [
                p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
            if any(texts):
                return [t for t in texts if t]
    return []


def to_completion(payload: Any, who: Who) -> dict[str, Any]:
    """The canonical completion of a Responses API ``response`` object."""
    if not isinstance(payload, dict):
        raise bad(who, "a Responses API answer must be a JSON object", payload)
    output = payload.get("output")
    if payload.get("status") == "failed":
        raise response_error(payload, who)
    if not isinstance(output, list):
        raise bad(who, "a Responses API answer needs an output list", payload)
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            raise bad(who, "an output item must be an object", item)
        kind = item.get("type")
        if kind == "message":
            text, refusal = _text_of(item, who)
            texts += text
            refusals += refusal
        elif kind == "function_call":
            calls.append(_call_of(item, who))
        elif kind == "reasoning":
            thoughts += _summary(item)
    finish = finish_of(payload, bool(calls), who)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "\n\n".join(thoughts)
    ident, model, created = payload.get("id"), payload.get("model"), payload.get("created_at")
    return {
        "id": ident if isinstance(ident, str) else "resp",
        "object": "chat.completion",
        "created": int(created) if isinstance(created, (int, float)) else now(),
        "model": model if isinstance(model, str) else who[1],
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": canonical_usage(payload.get("usage"), who),
    }


# -- canonical -> Responses answers -------------------------------------------------------------
def response_object(
    ident: str,
    created: int,
    model: str,
    request: Mapping[str, Any] | None,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    finish: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object: its own fields, then the request's echoed (their defaults
    when it has none). ``finish`` ``length`` or ``content_filter`` makes a finished answer
    ``incomplete``."""
    incomplete = None
    if status == "completed" and finish in ("length", "content_filter"):
        status = "incomplete"
        reason = "max_output_tokens" if finish == "length" else "content_filter"
        incomplete = {"reason": reason}
    out: dict[str, Any] = {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
    }
    if status == "completed":
        out["completed_at"] = now()
    for field, default in ECHOED.items():
        value = request.get(field) if request is not None else None
        if value is None and type(default) is dict:
            value = orjson.loads(orjson.dumps(default))  # each answer its own (mutable) copy
        out[field] = default if value is None else value
    out["usage"] = usage
    return out


def _message_item(texts: list[str], refusal: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "output_text", "text": text, "annotations": [], "logprobs": []} for text in texts
    ]
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "id": new_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": content,
    }


def reasoning_item(ident: str, text: str) -> dict[str, Any]:
    return {"id": ident, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    return orjson.dumps(raw).decode() if raw is not None else ""


def to_response(
    completion: Any, model: str, request: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Responses ``response`` for a canonical completion (``model``: the gateway name,
    ``request``: the client's Responses body, echoed); raises ``ValueError`` for a completion
    that is not one."""
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            f"the deployment's answer has no choices[0].message: {completion!r:.120}"
        ) from None
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        output.append(reasoning_item(new_id("rs_"), reasoning))
    text = message.get("content")
    if type(text) is list:
        text = "".join(p.get("text") or "" for p in text if type(p) is dict)
    calls = message.get("tool_calls") or ()
    refusal = message.get("refusal")
    if text or refusal or not calls:
        output.append(_message_item([text or ""] if text or not refusal else [], refusal))
    spaces = namespaces_of(request)
    for j, call in enumerate(calls):
        function = call.get("function") or {}
        output.append(
            function_item(
                new_id("fc_"),
                call.get("id") or f"call_{j}",
                function.get("name") or "",
                _arguments(function.get("arguments")),
                spaces,
                "completed",
            )
        )
    created = completion.get("created")
    return response_object(
        new_id("resp_"),
        created if isinstance(created, int) else now(),
        model,
        request,
        status="completed",
        output=output,
        usage=responses_usage(completion.get("usage")),
        finish=choice.get("finish_reason"),
    )
