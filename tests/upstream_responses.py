"""OpenAI's Responses API (``POST /v1/responses``) in the test upstream, written by hand from
the API reference (the ``openai`` SDK's types), independently of the gateway's own encoder.

:func:`check` refuses what OpenAI refuses (unknown top-level fields, a malformed ``input``, a
``previous_response_id`` it never stored), :func:`response` answers with a ``response``
object and :func:`frames` with its event stream: ``response.created``, ``in_progress``, the
output items (reasoning summary, message text deltas, function calls with argument deltas)
and ``response.completed``, each with its ``sequence_number``. A response created with
``store`` (default true) is remembered by the upstream, so a later ``previous_response_id``
naming it is accepted (what a native lane passes through) and any other id is a 400.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["FIELDS", "Invalid", "check", "frames", "response"]

FIELDS = frozenset(
    (
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "max_output_tokens",
        "max_tool_calls",
        "temperature",
        "top_p",
        "top_logprobs",
        "metadata",
        "store",
        "include",
        "prompt_cache_key",
        "previous_response_id",
        "conversation",
        "user",
        "safety_identifier",
        "service_tier",
        "truncation",
        "stream",
        "stream_options",
        "background",
        "client_metadata",
        "prompt",
    )
)
_ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
)


class Invalid(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }
        return orjson.dumps({"error": error})


def _need(condition: bool, message: str, param: str | None = None) -> None:
    if not condition:
        raise Invalid(message, param)


def check(payload: Any, stored: set[str]) -> None:
    """Raise :class:`Invalid` for what OpenAI would refuse."""
    _need(isinstance(payload, dict), "the body must be a JSON object")
    for name in payload:
        _need(name in FIELDS, f"Unknown parameter: '{name}'.", name)
    _need(isinstance(payload.get("model"), str), "Missing required parameter: 'model'.", "model")
    data = payload.get("input")
    if data is not None and not isinstance(data, str):
        _need(isinstance(data, list), "Invalid type for 'input'.", "input")
        for i, item in enumerate(data):
            _need(isinstance(item, dict), f"Invalid type for 'input[{i}]'.", f"input[{i}]")
            kind = item.get("type", "message" if "role" in item else None)
            _need(kind in _ITEM_TYPES, f"Invalid value: '{kind}' for 'input[{i}].type'.")
            if kind == "message":
                _need(
                    item.get("role") in ("user", "assistant", "system", "developer"),
                    f"Invalid value for 'input[{i}].role'.",
                    f"input[{i}].role",
                )
            if kind == "function_call":
                for key in ("call_id", "name", "arguments"):
                    _need(
                        isinstance(item.get(key), str),
                        f"Missing required parameter: 'input[{i}].{key}'.",
                    )
    for i, tool in enumerate(payload.get("tools") or ()):
        _need(isinstance(tool, dict) and "type" in tool, f"Missing 'tools[{i}].type'.")
        if tool["type"] == "function":
            _need(isinstance(tool.get("name"), str), f"Missing 'tools[{i}].name'.")
    previous = payload.get("previous_response_id")
    if previous is not None and previous not in stored:
        raise Invalid(
            f"Previous response with id '{previous}' not found.",
            "previous_response_id",
            "previous_response_not_found",
        )


_ids = itertools.count(1)


def _usage(prompt_words: int, output: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_words,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_words + output,
    }


def _prompt_words(payload: dict[str, Any]) -> int:
    data = payload.get("input")
    if isinstance(data, str):
        return len(data.split())
    words = 0
    for item in data or ():
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            words += sum(len(str(p.get("text") or "").split()) for p in content)
    return words


def _output(
    ident: int, text: str | None, calls: list[dict[str, Any]], reasoning: str | None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reasoning:
        items.append(
            {
                "id": f"rs_{ident:04d}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reasoning}],
            }
        )
    if text is not None and (text or not calls):
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        items.append(
            {
                "id": f"msg_{ident:04d}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for j, call in enumerate(calls):
        items.append(
            {
                "id": f"fc_{ident:04d}_{j}",
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    return items


def response(
    payload: dict[str, Any],
    text: str | None,
    calls: list[dict[str, Any]],
    reasoning: str | None,
    status: str = "completed",
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object of a whole answer (``usage``: merged over the computed one)."""
    ident = next(_ids)
    output = _output(ident, text, calls, reasoning)
    words = len((text or "").split()) + len(calls)
    return {
        "id": f"resp_up{ident:06d}",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "error": None,
        "incomplete_details": None if status == "completed" else {"reason": "max_output_tokens"},
        "model": payload.get("model"),
        "output": output,
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "store": payload.get("store", True),
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools", []),
        "usage": {**_usage(_prompt_words(payload), words), **(usage or {})},
        "metadata": payload.get("metadata", {}),
    }


def _event(kind: str, seq: int, **data: Any) -> bytes:
    return (
        b"event: "
        + kind.encode()
        + b"\ndata: "
        + orjson.dumps({"type": kind, "sequence_number": seq, **data})
        + b"\n\n"
    )


def frames(
    payload: dict[str, Any],
    pieces: list[str],
    calls: list[dict[str, Any]],
    reasoning: str | None,
    usage: Mapping[str, Any] | None = None,
) -> tuple[list[tuple[bytes, bool]], bytes, dict[str, Any]]:
    """``(frames, error frame, the final response)``: each frame with whether it is content
    (what ``cut_after`` counts)."""
    whole = response(payload, "".join(pieces), calls, reasoning, usage=usage)
    seq = itertools.count()
    started = {**whole, "status": "in_progress", "output": [], "usage": None}
    out: list[tuple[bytes, bool]] = [
        (_event("response.created", next(seq), response=started), False),
        (_event("response.in_progress", next(seq), response=started), False),
    ]
    for index, item in enumerate(whole["output"]):
        if item["type"] == "reasoning":
            empty = {**item, "summary": []}
            out.append(
                (
                    _event("response.output_item.added", next(seq), output_index=index, item=empty),
                    False,
                )
            )
            summary = item["summary"][0]["text"]
            out.append(
                (
                    _event(
                        "response.reasoning_summary_text.delta",
                        next(seq),
                        item_id=item["id"],
                        output_index=index,
                        summary_index=0,
                        delta=summary,
                    ),
                    True,
                )
            )
        elif item["type"] == "message":
            empty = {**item, "status": "in_progress", "content": []}
            out.append(
                (
                    _event("response.output_item.added", next(seq), output_index=index, item=empty),
                    False,
                )
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                (
                    _event(
                        "response.content_part.added",
                        next(seq),
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=part,
                    ),
                    False,
                )
            )
            for piece in pieces:
                out.append(
                    (
                        _event(
                            "response.output_text.delta",
                            next(seq),
                            item_id=item["id"],
                            output_index=index,
                            content_index=0,
                            delta=piece,
                            logprobs=[],
                        ),
                        True,
                    )
                )
            text = item["content"][0]["text"]
            out.append(
                (
                    _event(
                        "response.output_text.done",
                        next(seq),
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    ),
                    False,
                )
            )
        else:
            empty = {**item, "status": "in_progress", "arguments": ""}
            out.append(
                (
                    _event("response.output_item.added", next(seq), output_index=index, item=empty),
                    True,
                )
            )
            out.append(
                (
                    _event(
                        "response.function_call_arguments.delta",
                        next(seq),
                        item_id=item["id"],
                        output_index=index,
                        delta=item["arguments"],
                    ),
                    True,
                )
            )
            out.append(
                (
                    _event(
                        "response.function_call_arguments.done",
                        next(seq),
                        item_id=item["id"],
                        output_index=index,
                        arguments=item["arguments"],
                    ),
                    False,
                )
            )
        out.append(
            (_event("response.output_item.done", next(seq), output_index=index, item=item), False)
        )
    out.append((_event("response.completed", next(seq), response=whole), False))
    error = _event(
        "error", 10_000, code="server_error", message="The server had an error.", param=None
    )
    return out, error, whole
