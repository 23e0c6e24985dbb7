"""What a translated ``POST /v1/messages`` costs over ``/v1/chat/completions``: the Anthropic
translation's per-request work (a Messages request answered by an OpenAI deployment) against
the OpenAI endpoint's, same request, same answer, same run.

    .venv/bin/python -m bench.messages            # print
    .venv/bin/python -m bench.messages --write    # ... and update BENCHMARKS.md

No network and no gateway (both endpoints share those, :func:`msgflux.server.endpoints.relay`):
only what differs per request. The OpenAI endpoint: ``orjson.loads`` of the body,
``from_openai`` (the canonical request), the answer's ``model`` set and ``orjson.dumps``
(a stream: each chunk as ``data: ...``). The Messages endpoint: ``orjson.loads``,
``to_request`` (validate and translate), ``to_message`` and ``orjson.dumps`` (a stream: each
chunk through ``MessageEvents``). Rounds alternate the two; a ratio is the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench.common import write_section
from msgflux.formats.anthropic import MessageEvents, to_canonical, to_message
from msgflux.formats.policy import Translation
from msgflux.models.request import CHAT, Request, from_openai


def to_request(payload: dict[str, Any]) -> tuple[str, Request]:
    """The translated lane's request path: the Messages body into the canonical request."""
    body = to_canonical(payload, Translation())
    return body.pop("model"), from_openai(CHAT, body)


SECTION = "## Anthropic Messages API on the server (issue 13)"
COMMAND = ".venv/bin/python -m bench.messages --write"

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS_A = [
    {"name": "get_weather", "description": "The weather in a city.", "input_schema": SCHEMA},
    {"name": "get_time", "description": "The time in a city.", "input_schema": SCHEMA},
]
TOOLS_O = [
    {
        "type": "function",
        "function": {"name": t["name"], "description": t["description"], "parameters": SCHEMA},
    }
    for t in TOOLS_A
]
SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTION = "Who was Frank Rosenblatt?"


def requests() -> dict[str, tuple[bytes, bytes]]:
    """Scenario -> (OpenAI body, Anthropic body), the same request in each format."""
    text_o = {
        "model": "chat",
        "max_tokens": 256,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    }
    text_a = {
        "model": "chat",
        "max_tokens": 256,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    tools_o = {
        "model": "chat",
        "max_tokens": 256,
        "tools": TOOLS_O,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
            {"role": "user", "content": "And the time there?"},
        ],
    }
    tools_a = {
        "model": "chat",
        "max_tokens": 256,
        "tools": TOOLS_A,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                    {"type": "text", "text": "And the time there?"},
                ],
            },
        ],
    }
    stream_o = {**text_o, "stream": True, "stream_options": {"include_usage": True}}
    stream_a = {**text_a, "stream": True}
    return {
        "text": (orjson.dumps(text_o), orjson.dumps(text_a)),
        "tools": (orjson.dumps(tools_o), orjson.dumps(tools_a)),
        "stream": (orjson.dumps(stream_o), orjson.dumps(stream_a)),
    }


USAGE = {"prompt_tokens": 25, "completion_tokens": 12, "total_tokens": 37}


def completion(tools: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "Frank Rosenblatt built the perceptron.",
    }
    finish = "stop"
    if tools:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": USAGE,
    }


def chunks(pieces: int = 40) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": f" word{i}"}) for i in range(pieces)]
    out.append(chunk({}, "stop"))
    out.append({**base, "choices": [], "usage": USAGE})
    return out


def openai_path(raw: bytes, answer: Any) -> Callable[[], Any]:
    if isinstance(answer, list):

        def stream() -> bytes:
            from_openai(CHAT, orjson.loads(raw))
            parts = []
            for chunk in answer:
                chunk["model"] = "chat"
                parts.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
            return b"".join(parts) + b"data: [DONE]\n\n"

        return stream

    def call() -> bytes:
        from_openai(CHAT, orjson.loads(raw))
        answer["model"] = "chat"
        return orjson.dumps(answer)

    return call


def messages_path(raw: bytes, answer: Any) -> Callable[[], Any]:
    if isinstance(answer, list):

        def stream() -> bytes:
            name, _ = to_request(orjson.loads(raw))
            events = MessageEvents(name)
            return b"".join([events.feed(chunk) for chunk in answer]) + events.end()

        return stream

    def call() -> bytes:
        name, _ = to_request(orjson.loads(raw))
        return orjson.dumps(to_message(answer, name))

    return call


def per_call(fn: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def measure(calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    answers = {"text": completion(False), "tools": completion(True), "stream": chunks()}
    out: dict[str, dict[str, list[float]]] = {}
    for scenario, (raw_o, raw_a) in requests().items():
        fns = {
            "openai": openai_path(raw_o, answers[scenario]),
            "messages": messages_path(raw_a, answers[scenario]),
        }
        for fn in fns.values():
            per_call(fn, calls // 10)  # warm-up
        times: dict[str, list[float]] = {"openai": [], "messages": []}
        for r in range(rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for name in order:
                times[name].append(per_call(fns[name], calls))
        out[scenario] = times
    return out


def report(results: dict[str, dict[str, list[float]]], calls: int, rounds: int) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` ({rounds} alternating rounds of {calls} requests per scenario, "
        "one process, no network). What differs per request between the two endpoints on the "
        "same gateway path: `/v1/chat/completions` parses the body, builds the canonical "
        "request (`from_openai`) and serializes the answer (a stream: 40 text chunks, the "
        "finish and the usage, as `data:` lines); `/v1/messages` parses the Anthropic body, "
        "validates and translates it (`to_request`), and translates the answer (`to_message`; "
        "a stream: the same chunks through `MessageEvents` into Anthropic's named events).",
        "",
        "| scenario | /v1/chat/completions | /v1/messages | added | ratio |",
        "|---|---|---|---|---|",
    ]
    for scenario, times in results.items():
        o = statistics.median(times["openai"]) * 1e6
        m = statistics.median(times["messages"]) * 1e6
        ratio = statistics.median(
            b / a for a, b in zip(times["openai"], times["messages"], strict=True)
        )
        lines.append(f"| {scenario} | {o:.1f} µs | {m:.1f} µs | +{m - o:.1f} µs | {ratio:.2f}x |")
    lines += [
        "",
        "`text`: a system prompt and one question, a one-sentence answer. `tools`: a "
        "three-turn conversation (a tool call and its result, a cached system block) with two "
        "tools, answered with a tool call. `stream`: the `text` request answered in 40 pieces. "
        "For scale: `msgflux serve` adds about 1,500 µs to a request at c=1 (`+p50` in the "
        "Server section), so the translation is about 1% of the server's own time per request.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    text = report(measure(args.calls, args.rounds), args.calls, args.rounds)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
