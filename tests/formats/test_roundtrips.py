"""Round trips through the canonical form, checked on generated requests, answers and streams:
family -> canonical -> family keeps every field the canonical form can express.

* Anthropic's Messages API (:mod:`msgflux.formats.anthropic`): a Messages request to canonical
  and back, a canonical request to Messages and back, an answer to a completion and back,
  canonical chunks to SSE events and back, and events to chunks and back;
* the chat family (:mod:`msgflux.formats.openai_chat`): its ``to_canonical`` is the identity,
  and a completion replayed as chunks accumulates back into the completion.

Each property says in its docstring (or its normaliser's) what is compared normalised and why:
what is normalised is exactly what one side has no form for, nothing else. The unit tests at
the end pin the edge cases the properties met.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgflux._transport.sse import SSEDecoder
from msgflux.exceptions import ContentPolicyError
from msgflux.formats import CHAT, family
from msgflux.formats.anthropic import (
    FINISH_REASONS,
    STOP_REASONS,
    THINKING_BUDGETS,
    AnthropicEvents,
    MessageEvents,
    to_anthropic,
    to_canonical,
    to_completion,
    to_message,
)
from msgflux.formats.openai_chat import completion_chunks
from msgflux.formats.policy import Translation
from msgflux.models.chat import ChatStream
from msgflux.models.request import from_openai
from msgflux.models.response import ModelStreamResponse

ROUND_TRIPS = settings(max_examples=60, deadline=None)
WHO = ("anthropic", "claude-test")
MODEL = "claude-test"

# -- shared strategies ---------------------------------------------------------------------------
IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
TOOL_ID = st.from_regex(r"toolu_[A-Za-z0-9]{1,8}", fullmatch=True)
"""Anthropic's tool_use ids match ``^[a-zA-Z0-9_-]+$``."""
TEXT = st.text(max_size=12).map(str.strip).filter(bool)
"""A text the Messages API takes in any block: not empty, not only whitespace, and with no
whitespace at either end (a final assistant turn may not end with whitespace)."""
PIECE = st.text(max_size=6)
"""A piece of a stream: anything, empty included."""
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(IDENT, inner, max_size=3),
    max_leaves=6,
)
ARGS = st.dictionaries(IDENT, JSON_VALUE, max_size=3)
"""A tool call's input: a JSON object."""
CACHE = st.sampled_from([{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])
MEDIA = st.sampled_from(["image/jpeg", "image/png", "image/gif", "image/webp"])
B64 = st.binary(min_size=1, max_size=9).map(lambda b: base64.b64encode(b).decode())
COUNT = st.integers(0, 10**6)
PROPERTY = st.one_of(
    st.sampled_from(["string", "integer", "number", "boolean"]).map(lambda t: {"type": t}),
    st.just({"type": "array", "items": {"type": "string"}}),
)


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    properties = draw(st.dictionaries(IDENT, PROPERTY, max_size=3))
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties and draw(st.booleans()):
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


def marked(draw: st.DrawFn, block: dict[str, Any]) -> dict[str, Any]:
    """``block``, with a cache mark half of the time."""
    return {**block, "cache_control": draw(CACHE)} if draw(st.booleans()) else block


def signed_thinking(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return {"type": "redacted_thinking", "data": draw(B64)}
    return {"type": "thinking", "thinking": draw(st.text(max_size=12)), "signature": draw(B64)}


# == 1. Messages request -> canonical -> Messages request =========================================
def text_block(draw: st.DrawFn) -> dict[str, Any]:
    return marked(draw, {"type": "text", "text": draw(TEXT)})


def image_block(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        source = {"type": "base64", "media_type": draw(MEDIA), "data": draw(B64)}
    else:
        source = {"type": "url", "url": f"https://x.test/{draw(IDENT)}.png"}
    return marked(draw, {"type": "image", "source": source})


def document_block(draw: st.DrawFn) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "application/pdf", "data": draw(B64)}
    return marked(draw, {"type": "document", "source": source})


def user_block(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "text", "image", "document"]))
    return {"text": text_block, "image": image_block, "document": document_block}[kind](draw)


def tool_result(draw: st.DrawFn, ident: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": ident}
    kind = draw(st.sampled_from(["none", "str", "blocks"]))
    if kind == "str":
        block["content"] = draw(st.text(max_size=12))
    elif kind == "blocks":
        block["content"] = [
            text_block(draw) if draw(st.integers(0, 3)) else image_block(draw)
            for _ in range(draw(st.integers(0, 3)))
        ]
    error = draw(st.sampled_from([None, True, False]))
    if error is not None:
        block["is_error"] = error
    return marked(draw, block)


def assistant_turn(draw: st.DrawFn, names: list[str], calls: bool) -> tuple[Any, list[str]]:
    """An assistant turn's content and the ids of the tools it calls (none unless ``calls``)."""
    if not draw(st.integers(0, 3)):
        return draw(TEXT), []
    blocks = [signed_thinking(draw) for _ in range(draw(st.integers(0, 2)))]
    blocks += [text_block(draw) for _ in range(draw(st.integers(0, 2)))]
    idents: list[str] = []
    if calls and names:
        idents = draw(st.lists(TOOL_ID, max_size=2, unique=True))
        blocks += [
            {
                "type": "tool_use",
                "id": ident,
                "name": draw(st.sampled_from(names)),
                "input": draw(ARGS),
            }
            for ident in idents
        ]
    if not blocks:
        blocks = [text_block(draw)]
    blocks = draw(st.permutations(blocks))
    if blocks[-1]["type"] == "tool_use" and draw(st.booleans()):
        # A cache mark on the turn's last block (where Claude Code puts them).
        blocks[-1] = {**blocks[-1], "cache_control": draw(CACHE)}
    return blocks, idents


@st.composite
def messages_conversations(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    """User and assistant turns the Messages API takes: a user turn first; each assistant turn's
    tool calls answered first in the next user turn; consecutive turns of one role now and then
    (the API reads them as one turn), the calls only in the last of them."""
    turns: list[dict[str, Any]] = []
    pending: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        for extra in range(draw(st.integers(1, 2))):
            blocks = [tool_result(draw, ident) for ident in pending] if extra == 0 else []
            blocks += [user_block(draw) for _ in range(draw(st.integers(0 if blocks else 1, 3)))]
            if len(blocks) == 1 and blocks[0]["type"] == "text" and draw(st.booleans()):
                turns.append({"role": "user", "content": blocks[0]["text"]})
            else:
                turns.append({"role": "user", "content": blocks})
        pending = []
        if draw(st.integers(0, 4)):
            count = draw(st.integers(1, 2))
            for extra in range(count):
                content, pending = assistant_turn(draw, names, calls=extra == count - 1)
                turns.append({"role": "assistant", "content": content})
    return turns


@st.composite
def messages_bodies(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(IDENT, min_size=1, max_size=3, unique=True))
    with_tools = draw(st.booleans())
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": draw(messages_conversations(names if with_tools else [])),
    }
    system = draw(st.sampled_from(["none", "str", "blocks"]))
    if system == "str":
        body["system"] = draw(TEXT)
    elif system == "blocks":
        body["system"] = [text_block(draw) for _ in range(draw(st.integers(0, 3)))]
    thinking = draw(st.sampled_from(["none", "enabled", "disabled"]))
    budget = draw(st.integers(1024, 20000))
    if thinking == "enabled":
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body["max_tokens"] = draw(st.integers(budget + 1, budget + 32000))
    else:
        body["max_tokens"] = draw(st.integers(1, 64000))
        if thinking == "disabled":
            body["thinking"] = {"type": "disabled"}
    if with_tools:
        tools = []
        for name in names:
            tool: dict[str, Any] = {"name": name, "input_schema": draw(object_schemas())}
            if draw(st.booleans()):
                tool["description"] = draw(TEXT)
            if draw(st.booleans()):
                tool["strict"] = draw(st.booleans())
            tools.append(marked(draw, tool))
        body["tools"] = tools
        if draw(st.booleans()):
            # Extended thinking takes no forced tool call (the API refuses it).
            kinds = ["auto", "none"] if thinking == "enabled" else ["auto", "any", "tool", "none"]
            choice: dict[str, Any] = {"type": draw(st.sampled_from(kinds))}
            if choice["type"] == "tool":
                choice["name"] = draw(st.sampled_from(names))
            if draw(st.booleans()):
                choice["disable_parallel_tool_use"] = draw(st.booleans())
            body["tool_choice"] = choice
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(TEXT, max_size=3))
    if thinking == "enabled":
        # With extended thinking the API takes top_p from 0.95 on, and no temperature or top_k.
        if draw(st.booleans()):
            body["top_p"] = draw(st.floats(0.95, 1))
    else:
        for name, strategy in (
            ("temperature", st.floats(0, 1)),
            ("top_p", st.floats(0, 1)),
            ("top_k", st.integers(1, 500)),
        ):
            if draw(st.booleans()):
                body[name] = draw(strategy)
    if draw(st.booleans()):
        body["metadata"] = draw(st.sampled_from([{}, {"user_id": draw(IDENT)}]))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return body


_LEVELS = sorted(set(THINKING_BUDGETS.values()))


def _budget(budget: int) -> int:
    """The budget a thinking budget comes back as: the largest ``reasoning_effort`` level's
    budget not above it."""
    return max(level for level in _LEVELS if level <= budget)


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if type(content) is str else list(content)


def _joined_texts(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text blocks without a cache mark as one."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        plain = block["type"] == "text" and len(block) == 2
        if plain and out and out[-1]["type"] == "text" and len(out[-1]) == 2:
            out[-1] = {"type": "text", "text": out[-1]["text"] + block["text"]}
        else:
            out.append(block)
    return out


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in block.items() if k != "is_error" or v}
    out.setdefault("content", "")
    return out


def normalised_messages(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` in the form both sides of Messages -> canonical -> Messages are compared in.

    What the canonical form has no place for, or writes one way only:

    * a string ``content`` or ``system`` is its one text block: the canonical form writes a
      lone plain text as a string, and a string as one block;
    * consecutive turns of one role are one turn (the Messages API reads them so, and the
      canonical form's tool turns and user turn come back as one user turn);
    * an assistant turn is its thinking blocks, then its text, then its ``tool_use`` blocks,
      each in order, with adjacent texts without a cache mark joined: a canonical assistant
      message holds reasoning, one text (parts only when one carries a cache mark) and calls
      apart, so the interleaving of an assistant turn has no canonical form;
    * defaults written or not: ``is_error: false``, a ``tool_result`` without ``content``
      (``""``), ``strict: false``, ``disable_parallel_tool_use: false`` (and any with
      ``tool_choice`` ``none``: no call to parallelise), empty ``system``/``stop_sequences``/
      ``metadata``, ``thinking`` disabled, ``stream: false`` are no field;
    * ``thinking.budget_tokens`` is the budget of its ``reasoning_effort`` level
      (:data:`THINKING_BUDGETS`): the canonical form has levels, not budgets.
    """
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "system":
            value = _blocks(value)
        elif name == "messages":
            turns: list[dict[str, Any]] = []
            for turn in value:
                if turns and turns[-1]["role"] == turn["role"]:
                    turns[-1]["content"] += _blocks(turn["content"])
                else:
                    turns.append({"role": turn["role"], "content": _blocks(turn["content"])})
            for turn in turns:
                blocks = turn["content"]
                if turn["role"] == "user":
                    turn["content"] = [
                        _tool_result(b) if b["type"] == "tool_result" else b for b in blocks
                    ]
                    continue
                thinking = [b for b in blocks if b["type"] in ("thinking", "redacted_thinking")]
                texts = _joined_texts([b for b in blocks if b["type"] == "text"])
                calls = [b for b in blocks if b["type"] == "tool_use"]
                turn["content"] = thinking + texts + calls
            value = turns
        elif name == "tools":
            value = [
                {k: v for k, v in tool.items() if not (k == "strict" and v is False)}
                for tool in value
            ]
        elif name == "tool_choice":
            value = dict(value)
            if not value.get("disable_parallel_tool_use") or value["type"] == "none":
                value.pop("disable_parallel_tool_use", None)
        elif name == "thinking":
            if value["type"] == "disabled":
                continue
            value = {**value, "budget_tokens": _budget(value["budget_tokens"])}
        elif name == "stream" and not value:
            continue
        if value in ([], {}):
            continue
        out[name] = value
    return out


@ROUND_TRIPS
@given(messages_bodies())
def test_messages_request_to_canonical_and_back_keeps_every_field(body: dict[str, Any]) -> None:
    """A Messages request through the canonical form (as the gateway takes it: decoded, checked
    as a chat request, encoded for the model it names) comes back field for field, compared
    as :func:`normalised_messages` says; nothing is dropped either way."""
    read = Translation()
    canonical = to_canonical(orjson.loads(orjson.dumps(body)), read)
    model = canonical.pop("model")
    request = from_openai(CHAT, canonical)
    sent = Translation()
    back = to_anthropic(request.body, model_id=model, stream=request.stream, ctx=sent)
    back = orjson.loads(orjson.dumps(back))
    assert read.dropped == [] and sent.dropped == []
    assert normalised_messages(back) == normalised_messages(body)


# == 2. canonical request -> Messages -> canonical ================================================
@st.composite
def tool_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    tools = []
    for name in draw(st.lists(IDENT, min_size=1, max_size=3, unique=True)):
        function: dict[str, Any] = {"name": name}
        if draw(st.integers(0, 3)):
            function["parameters"] = draw(object_schemas())
        if draw(st.booleans()):
            function["description"] = draw(st.text(max_size=12))
        if draw(st.booleans()):
            function["strict"] = draw(st.booleans())
        tools.append(marked(draw, {"type": "function", "function": function}))
    return tools


def user_part(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "text", "data", "url"]))
    if kind == "text":
        return marked(draw, {"type": "text", "text": draw(TEXT)})
    url = (
        f"data:{draw(MEDIA)};base64,{draw(B64)}"
        if kind == "data"
        else f"https://x.test/{draw(IDENT)}.jpg"
    )
    return marked(draw, {"type": "image_url", "image_url": {"url": url}})


def text_content(draw: st.DrawFn) -> Any:
    """A str, or text parts (some with a cache mark)."""
    if draw(st.booleans()):
        return draw(TEXT)
    return [
        marked(draw, {"type": "text", "text": draw(TEXT)}) for _ in range(draw(st.integers(1, 3)))
    ]


@st.composite
def chat_conversations(draw: st.DrawFn, names: list[str], thinking: bool) -> list[dict[str, Any]]:
    """System turns first, then user turns, assistant turns (text, calls, signed thinking) and
    the tool turns that answer each call right after its assistant turn."""
    messages: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        role = draw(st.sampled_from(["system", "developer"]))
        message: dict[str, Any] = {"role": role, "content": text_content(draw)}
        messages.append(marked(draw, message))
    for _ in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(1, 2))):
            if draw(st.booleans()):
                content: Any = draw(TEXT)
            else:
                content = [user_part(draw) for _ in range(draw(st.integers(1, 3)))]
            messages.append(marked(draw, {"role": "user", "content": content}))
        if not draw(st.integers(0, 4)):
            continue
        kind = draw(st.sampled_from(["none", "str", "parts"]))
        message = {"role": "assistant", "content": None}
        if kind == "str":
            message["content"] = draw(TEXT)
        elif kind == "parts":
            message["content"] = text_content(draw)
        calls = []
        if names and draw(st.booleans()):
            for ident in draw(st.lists(TOOL_ID, min_size=1, max_size=2, unique=True)):
                arguments = orjson.dumps(draw(ARGS)).decode()
                function = {"name": draw(st.sampled_from(names)), "arguments": arguments}
                calls.append({"id": ident, "type": "function", "function": function})
            message["tool_calls"] = calls
        elif message["content"] is None:
            message["content"] = draw(TEXT)
        if thinking and draw(st.booleans()):
            message["thinking_blocks"] = [signed_thinking(draw)]
        messages.append(marked(draw, message))
        for call in calls:
            result = (
                draw(st.text(max_size=12))
                if draw(st.booleans())
                else [
                    marked(draw, {"type": "text", "text": draw(TEXT)})
                    for _ in range(draw(st.integers(0, 2)))
                ]
            )
            answer: dict[str, Any] = {"role": "tool", "tool_call_id": call["id"], "content": result}
            if draw(st.booleans()):
                answer["is_error"] = True
            messages.append(marked(draw, answer))
    return messages


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Canonical requests the Messages API can express."""
    tools = draw(tool_lists())
    names = [t["function"]["name"] for t in tools] if draw(st.booleans()) else []
    efforts = st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"])
    effort = draw(st.one_of(st.none(), efforts))
    thinking = effort not in (None, "none")
    body: dict[str, Any] = {"messages": draw(chat_conversations(names, thinking))}
    if effort is not None:
        body["reasoning_effort"] = effort
    if names:
        body["tools"] = tools
        choices: list[Any] = ["auto", "none"]
        if not thinking:  # a forced call while thinking is refused: not expressible
            choices += ["required", {"type": "function", "function": {"name": names[0]}}]
        if draw(st.booleans()):
            body["tool_choice"] = draw(st.sampled_from(choices))
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    limit = draw(st.sampled_from([None, "max_tokens", "max_completion_tokens"]))
    if limit is not None:
        body[limit] = draw(st.integers(1, 64000))
    if draw(st.booleans()):
        body["stop"] = draw(st.one_of(TEXT, st.lists(TEXT, min_size=1, max_size=3)))
    sampling: dict[str, st.SearchStrategy[Any]] = {"top_p": st.floats(0, 1)}
    if not thinking:  # the API takes no temperature or top_k with extended thinking
        sampling |= {"temperature": st.floats(0, 1), "top_k": st.integers(1, 500)}
    for name, strategy in sampling.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    user = draw(st.sampled_from([None, "user", "safety_identifier"]))
    if user is not None:
        body[user] = draw(IDENT)
    if draw(st.booleans()):
        schema = draw(object_schemas())
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": draw(IDENT), "schema": schema, "strict": True},
        }
    return body


def _parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if type(content) is str else list(content)


def _message_mark(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's content as parts, its cache mark on the last part."""
    parts = _parts(message["content"])
    if message.get("cache_control") is not None:
        parts[-1] = {**parts[-1], "cache_control": message["cache_control"]}
    return parts


def normalised_chat(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` in the form both sides of canonical -> Messages -> canonical are compared in.

    What the Messages API has no place for, or writes one way only:

    * system and developer turns are one ``system`` (text blocks): compared as one list of
      text parts, a turn's cache mark on its last part (where the Messages API holds it);
    * a user turn's content is a list of parts (a lone plain text block comes back as a
      string), its cache mark on its last part; consecutive user turns are one (the API
      reads them so);
    * an assistant turn is its text parts, then its calls (a call's arguments parsed: JSON
      text is written compact), its cache mark on the last of them (where the Messages API
      holds it), adjacent texts without a cache mark joined (the canonical form of an
      assistant text is one string unless a part carries a mark), an empty text none;
    * ``stop`` is a list; ``max_completion_tokens`` is ``max_tokens``, 4096 when absent, and
      raised by the thinking budget when not above it (the API needs room to answer);
      ``reasoning_effort`` ``minimal`` is ``low`` (one budget) and ``none`` no field;
      ``safety_identifier`` is ``user`` (one ``metadata.user_id``);
    * defaults written or not: ``parallel_tool_calls: true``, ``is_error``/``strict``
      false, an empty tool ``description`` and a tool without ``parameters`` (an empty
      object schema) are no field; ``parallel_tool_calls: false`` implies ``tool_choice``
      ``auto`` (and means nothing with ``none``);
    * a JSON schema ``response_format`` keeps its schema (Anthropic's ``output_config`` has
      no name, and is strict).
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system += _message_mark(message)
            continue
        last = turns[-1] if turns else None
        if role == "user":
            parts = _message_mark(message)
            if last is not None and last["role"] == "user":
                last["content"] += parts
            else:
                turns.append({"role": "user", "content": parts})
        elif role == "assistant":
            blocks = _parts(message.get("content") or [])
            blocks += [
                {
                    "id": c["id"],
                    "type": c["type"],
                    "name": c["function"]["name"],
                    "arguments": orjson.loads(c["function"]["arguments"]),
                }
                for c in message.get("tool_calls") or ()
            ]
            if message.get("cache_control") is not None:
                blocks[-1] = {**blocks[-1], "cache_control": message["cache_control"]}
            turns.append(
                {
                    "role": "assistant",
                    "blocks": _joined_texts(blocks),
                    "thinking_blocks": message.get("thinking_blocks") or [],
                }
            )
        else:
            turns.append({k: v for k, v in message.items() if k != "is_error" or v})
    out: dict[str, Any] = {"system": system, "turns": turns}
    effort = body.get("reasoning_effort")
    if effort == "minimal":
        effort = "low"
    if effort not in (None, "none"):
        out["reasoning_effort"] = effort
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    budget = THINKING_BUDGETS.get(effort or "none")
    if budget is not None and limit <= budget:
        limit += budget
    out["max_tokens"] = limit
    choice = body.get("tool_choice")
    if body.get("parallel_tool_calls") is False:
        if choice is None:
            choice = "auto"
        if choice != "none":
            out["parallel_tool_calls"] = False
    if choice is not None:
        out["tool_choice"] = choice
    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        out["user"] = user
    for name, value in body.items():
        if name in ("messages", "tool_choice", "parallel_tool_calls", "reasoning_effort"):
            continue
        if name in ("max_tokens", "max_completion_tokens", "user", "safety_identifier"):
            continue
        if name == "stop":
            value = [value] if type(value) is str else value
        elif name == "tools":
            value = [
                {
                    "function": {
                        "parameters": {"type": "object", "properties": {}},
                        **{
                            k: v
                            for k, v in t["function"].items()
                            if not (k in ("description", "strict") and not v)
                        },
                    },
                    **{k: v for k, v in t.items() if k != "function"},
                }
                for t in value
            ]
        elif name == "response_format":
            value = value["json_schema"]["schema"]
        out[name] = value
    return out


@ROUND_TRIPS
@given(chat_bodies(), st.booleans())
def test_canonical_request_to_messages_and_back_keeps_what_messages_express(
    chat: dict[str, Any], stream: bool
) -> None:
    """A canonical request through the Messages API comes back a valid canonical request with
    every field the API expresses, compared as :func:`normalised_chat` says; nothing is
    dropped either way, and a stream asks for its usage."""
    from_openai(CHAT, chat)
    sent = Translation()
    wire = to_anthropic(chat, model_id=MODEL, stream=stream, ctx=sent)
    wire = orjson.loads(orjson.dumps(wire))
    read = Translation()
    back = to_canonical(wire, read)
    assert sent.dropped == [] and read.dropped == []
    assert back.pop("model") == MODEL
    request = from_openai(CHAT, back)
    assert request.stream is stream
    if stream:
        assert back.pop("stream") is True
        assert back.pop("stream_options") == {"include_usage": True}
    assert normalised_chat(back) == normalised_chat(chat)


# == 3. Anthropic answer -> canonical -> Anthropic answer =========================================
STOPS = ["end_turn", "stop_sequence", "max_tokens", "tool_use", "pause_turn"]
STOPS += ["model_context_window_exceeded"]


@st.composite
def anthropic_usages(draw: st.DrawFn) -> dict[str, Any]:
    usage = {"input_tokens": draw(COUNT), "output_tokens": draw(COUNT)}
    for name in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        if draw(st.booleans()):
            usage[name] = draw(COUNT)
    return usage


@st.composite
def anthropic_answers(draw: st.DrawFn) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [signed_thinking(draw) for _ in range(draw(st.integers(0, 2)))]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            blocks.append({"type": "text", "text": draw(st.text(max_size=12))})
        else:
            blocks.append(
                {"type": "tool_use", "id": draw(TOOL_ID), "name": draw(IDENT), "input": draw(ARGS)}
            )
    stop = draw(st.sampled_from(STOPS))
    return {
        "id": "msg_" + draw(IDENT),
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": draw(TEXT) if stop == "stop_sequence" else None,
        "usage": draw(anthropic_usages()),
    }


def _stop_reason(stop: str, calls: bool) -> str:
    """The stop reason a completion gives back: one per ``finish_reason`` (``tool_use``
    without a call is the end of the turn)."""
    finish = FINISH_REASONS.get(stop, "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"
    return STOP_REASONS[finish]


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    names = ("input_tokens", "output_tokens")
    names += ("cache_creation_input_tokens", "cache_read_input_tokens")
    return {name: usage.get(name) or 0 for name in names}


def normalised_answer(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` in the form both sides of Messages answer -> completion -> Messages answer are
    compared in. A canonical message holds reasoning, one text and calls apart, so the blocks
    are the thinking blocks, then the texts joined (none when empty), then the ``tool_use``
    blocks; the stop reason is the one of its ``finish_reason`` (``stop_sequence`` and
    ``pause_turn`` are ``end_turn``, ``model_context_window_exceeded`` is ``max_tokens``) and
    ``stop_sequence`` is gone (a completion names no stop sequence); a usage count absent is
    0 (a completion always counts the cache). ``model`` is the gateway's name."""
    blocks = message["content"]
    thinking = [b for b in blocks if b["type"] in ("thinking", "redacted_thinking")]
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    calls = [b for b in blocks if b["type"] == "tool_use"]
    content = thinking + ([{"type": "text", "text": text}] if text else []) + calls
    return {
        "id": message["id"],
        "type": message["type"],
        "role": message["role"],
        "content": content,
        "stop_reason": _stop_reason(message["stop_reason"], bool(calls)),
        "usage": _usage(message["usage"]),
    }


@ROUND_TRIPS
@given(anthropic_answers())
def test_messages_answer_to_completion_and_back_keeps_every_block(answer: dict[str, Any]) -> None:
    """Thinking (with its signature), text, tool calls, the stop reason and the usage (cache
    counts included) come back, compared as :func:`normalised_answer` says."""
    completion = to_completion(answer, WHO)
    assert completion["model"] == "claude-upstream"
    back = to_message(completion, "gateway-name")
    assert back["model"] == "gateway-name" and back["stop_sequence"] is None
    assert normalised_answer(back) == normalised_answer(answer)


# == 4. streams ===================================================================================
def chunk_of(
    ident: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream",
        "choices": choices,
        **extra,
    }


def sse(pieces: list[bytes]) -> list[tuple[str | None, bytes]]:
    """The events of SSE bytes, written in ``pieces``, as the gateway's decoder reads them."""
    decoder = SSEDecoder()
    out = [e for piece in pieces for e in decoder.feed(piece)]
    return out + decoder.end()


def said_by_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What canonical chunks say, accumulated: text, reasoning, thinking blocks, tool calls by
    index (id, name, joined arguments), the finish reason and the usage counts (absent: 0,
    as a Messages API stream always counts)."""
    text = reasoning = ""
    blocks: list[Any] = []
    calls: dict[int, list[str]] = {}
    finish = None
    usage: dict[str, Any] = {}
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            blocks += delta.get("thinking_blocks") or ()
            for call in delta.get("tool_calls") or ():
                parts = calls.setdefault(call["index"], ["", "", ""])
                function = call.get("function") or {}
                parts[0] = call.get("id") or parts[0]
                parts[1] = function.get("name") or parts[1]
                parts[2] += function.get("arguments") or ""
            finish = choice["finish_reason"] or finish
    if finish == "tool_calls" and not calls:
        finish = "stop"
    details = usage.get("prompt_tokens_details") or {}
    cached = usage.get("cache_read_input_tokens", details.get("cached_tokens"))
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {
        "text": text,
        "reasoning": reasoning,
        "thinking_blocks": blocks,
        "calls": {i: tuple(p) for i, p in calls.items()},
        "finish": finish,
        "usage": (prompt, completion, cached or 0, usage.get("cache_creation_input_tokens") or 0),
    }


@st.composite
def chunk_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A canonical stream as an OpenAI-wire deployment sends one: the role, reasoning (maybe
    signed, maybe a redacted block), text, parallel tool calls one after the other with
    their arguments in pieces, the finish (alone or with the last piece) and the usage (its
    own chunk, with the finish, or none)."""
    ident = "chatcmpl-" + draw(IDENT)
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    reasoning = draw(st.lists(PIECE, max_size=3))
    deltas += [{"reasoning_content": piece} for piece in reasoning]
    if "".join(reasoning) and draw(st.booleans()):
        block = {"type": "thinking", "thinking": "".join(reasoning), "signature": draw(B64)}
        deltas.append({"thinking_blocks": [block]})
    if draw(st.integers(0, 3)) == 0:
        deltas.append({"thinking_blocks": [{"type": "redacted_thinking", "data": draw(B64)}]})
    deltas += [{"content": piece} for piece in draw(st.lists(PIECE, max_size=4))]
    calls = draw(st.integers(0, 3))
    for position in range(calls):
        text = orjson.dumps(draw(ARGS)).decode()
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=3)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        head = {"index": position, "id": draw(TOOL_ID), "type": "function"}
        function = {"name": draw(IDENT), "arguments": pieces[0]}
        deltas.append({"tool_calls": [{**head, "function": function}]})
        deltas += [
            {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
            for piece in pieces[1:]
        ]
    finish = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    chunks = [chunk_of(ident, delta) for delta in deltas]
    usage = None
    if draw(st.integers(0, 3)):
        prompt = draw(COUNT)
        completion = draw(COUNT)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        cached = draw(st.integers(0, prompt))
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        if draw(st.booleans()):  # an Anthropic deployment's counts, as the canonical form has them
            created = draw(st.integers(0, prompt - cached))
            usage["cache_creation_input_tokens"] = created
            usage["cache_read_input_tokens"] = cached
    where = draw(st.sampled_from(["own", "last", "finish"]))
    if where == "last" and len(chunks) > 1:
        chunks[-1]["choices"][0]["finish_reason"] = finish
    else:
        chunks.append(chunk_of(ident, {}, finish))
    if usage is not None:
        if where == "finish":
            chunks[-1]["usage"] = usage
        else:
            chunks.append(chunk_of(ident, None, usage=usage))
    return chunks


@ROUND_TRIPS
@given(chunk_streams())
def test_canonical_chunks_to_messages_events_and_back_say_the_same(
    chunks: list[dict[str, Any]],
) -> None:
    """Canonical chunks written as a Messages API stream (SSE bytes, read back by the gateway's
    SSE decoder) and translated back to chunks say what they said: the text, the reasoning
    and its signed blocks, each tool call (id, name, arguments joined), the finish reason and
    the usage counts (see :func:`said_by_chunks`). The stream is one message, the chunk id
    its id."""
    writer = MessageEvents(MODEL)
    pieces = [writer.feed(orjson.loads(orjson.dumps(c))) for c in chunks] + [writer.end()]
    reader = AnthropicEvents(WHO, json_tool=False, include_usage=True)
    back = [c for name, data in sse(pieces) for c, _ in reader.feed(name, data)]
    back += reader.end()
    assert reader.done
    assert {c["id"] for c in back} == {chunks[0]["id"]}
    assert said_by_chunks(back) == said_by_chunks(chunks)


@st.composite
def anthropic_streams(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    """A Messages API stream as Anthropic sends one: ``message_start`` (input and cache
    counts), a ``ping``, blocks (thinking with its signature, possibly empty as with
    ``display: omitted``; redacted thinking; text; ``tool_use`` with its input in pieces),
    each started, filled and stopped, then ``message_delta`` and ``message_stop``."""
    usage = draw(anthropic_usages())
    message = {
        "id": "msg_" + draw(IDENT),
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        ("ping", {"type": "ping"}),
    ]
    kinds = draw(st.lists(st.sampled_from(["thinking", "redacted"]), max_size=2))
    kinds += draw(st.lists(st.sampled_from(["text", "tool_use"]), max_size=4))
    for index, kind in enumerate(kinds):
        deltas: list[dict[str, Any]] = []
        if kind == "thinking":
            block: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas += [
                {"type": "thinking_delta", "thinking": piece}
                for piece in draw(st.lists(PIECE, max_size=3))
            ]
            deltas.append({"type": "signature_delta", "signature": draw(B64)})
        elif kind == "redacted":
            block = {"type": "redacted_thinking", "data": draw(B64)}
        elif kind == "text":
            block = {"type": "text", "text": ""}
            deltas += [
                {"type": "text_delta", "text": piece} for piece in draw(st.lists(PIECE, max_size=3))
            ]
        else:
            block = {"type": "tool_use", "id": draw(TOOL_ID), "name": draw(IDENT), "input": {}}
            text = orjson.dumps(draw(ARGS)).decode() if draw(st.integers(0, 4)) else ""
            cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=3)))
            deltas += [
                {"type": "input_json_delta", "partial_json": text[a:b]}
                for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = draw(st.sampled_from(STOPS))
    delta = {"stop_reason": stop, "stop_sequence": draw(TEXT) if stop == "stop_sequence" else None}
    end_usage: dict[str, Any] = {"output_tokens": draw(COUNT)}
    if draw(st.booleans()):  # today's API repeats the input counts at the end
        end_usage = {**usage, **end_usage}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": end_usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def said_by_events(events: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    """What a Messages API stream says, accumulated: the message id, its blocks (each with its
    text, thinking and signature, or input JSON joined), the stop reason and the usage as a
    client ends with it (``message_start``'s counts updated by ``message_delta``'s; absent
    counts are 0).

    A canonical stream has one text and no block boundaries inside it, so adjacent text blocks
    are one and an empty text block is none; the stop reason is the one of its
    ``finish_reason`` (see :func:`normalised_answer`)."""
    ident = None
    blocks: list[dict[str, Any]] = []
    stop = None
    usage: dict[str, Any] = {}
    for name, data in events:
        assert name == data["type"]
        if name == "message_start":
            ident = data["message"]["id"]
            usage.update(data["message"]["usage"])
        elif name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            key = {
                "text_delta": "text",
                "thinking_delta": "thinking",
                "signature_delta": "signature",
                "input_json_delta": "partial_json",
            }[delta["type"]]
            block[key] = block.get(key, "") + delta[key]
        elif name == "message_delta":
            stop = data["delta"]["stop_reason"]
            usage.update(data["usage"])
    merged: list[dict[str, Any]] = []
    for block in blocks:
        if block["type"] == "tool_use":
            block["partial_json"] = block.get("partial_json", "")
        if block["type"] == "text":
            if not block["text"]:
                continue
            if merged and merged[-1]["type"] == "text":
                merged[-1] = {"type": "text", "text": merged[-1]["text"] + block["text"]}
                continue
        merged.append(block)
    calls = any(b["type"] == "tool_use" for b in merged)
    return {
        "id": ident,
        "blocks": merged,
        "stop_reason": _stop_reason(stop, calls) if stop is not None else None,
        "usage": _usage(usage),
    }


@ROUND_TRIPS
@given(anthropic_streams())
def test_messages_events_to_chunks_and_back_say_the_same(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """A Messages API stream translated into canonical chunks and written back as a Messages API
    stream says what it said (see :func:`said_by_events`): every thinking block with its own
    signature, redacted blocks, text, each ``tool_use`` with its input, the stop reason and
    the counts."""
    reader = AnthropicEvents(WHO, json_tool=False, include_usage=True)
    writer = MessageEvents(MODEL)
    pieces = []
    for name, data in events:
        pieces += [writer.feed(c) for c, _ in reader.feed(name, orjson.dumps(data))]
    pieces += [writer.feed(c) for c in reader.end()] + [writer.end()]
    back = [(name, orjson.loads(data)) for name, data in sse(pieces) if name != "ping"]
    assert said_by_events(back) == said_by_events(events)


# == 5. the chat family ===========================================================================
@st.composite
def chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Chat requests as a client sends them: a canonical body, a model, maybe a stream flag,
    and fields the Messages API has no form for (they are the chat family's own)."""
    body = draw(chat_bodies())
    body["model"] = draw(IDENT)
    extra: dict[str, st.SearchStrategy[Any]] = {
        "stream": st.booleans(),
        "stream_options": st.just({"include_usage": True}),
        "n": st.integers(1, 4),
        "seed": st.integers(0, 2**31),
        "logprobs": st.booleans(),
        "presence_penalty": st.floats(-2, 2),
        "temperature": st.floats(0, 2),
        "response_format": st.just({"type": "json_object"}),
        "metadata": st.dictionaries(IDENT, IDENT, max_size=2),
        "store": st.booleans(),
        "stop": st.none(),
    }
    for name, strategy in extra.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@ROUND_TRIPS
@given(chat_requests())
def test_chat_family_to_canonical_is_the_identity(body: dict[str, Any]) -> None:
    """The canonical family's request is the canonical request: the same fields, less ``model``
    (the gateway the client named decides who answers) and the null fields (a null field is
    no field), ``stream`` kept only when true."""
    out = family(CHAT).to_canonical(orjson.loads(orjson.dumps(body)), Translation())
    expected = {
        k: v
        for k, v in body.items()
        if k != "model" and v is not None and not (k == "stream" and v is False)
    }
    assert out == expected


@st.composite
def completions(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.one_of(st.none(), PIECE))}
    if draw(st.integers(0, 3)) == 0:
        message["content"] = [
            {"type": "text", "text": draw(PIECE)} for _ in range(draw(st.integers(1, 3)))
        ]
    if draw(st.booleans()):
        message["reasoning_content"] = draw(PIECE)
    finish = draw(st.sampled_from(["stop", "length", "content_filter"]))
    if draw(st.booleans()):
        message["tool_calls"] = [
            {
                "id": draw(TOOL_ID),
                "type": "function",
                "function": {"name": draw(IDENT), "arguments": orjson.dumps(draw(ARGS)).decode()},
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        finish = "tool_calls"
    usage = None
    if draw(st.booleans()):
        prompt, completion = draw(COUNT), draw(COUNT)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return {
        "id": "chatcmpl-" + draw(IDENT),
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(IDENT),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


@ROUND_TRIPS
@given(completions())
def test_a_completion_replayed_as_chunks_accumulates_back(completion: dict[str, Any]) -> None:
    """A stored completion replayed as a stream (``completion_chunks``) and read the way every
    chat stream is read (``ChatStream``) gives back its text (parts joined: a stream has one
    text), its reasoning, its tool calls, its finish reason and its usage."""
    chunks = completion_chunks(completion)
    target = ModelStreamResponse()
    state = ChatStream(target, WHO)
    text = "".join(item for item in map(state.feed, chunks) if type(item) is str)
    calls = state.finish() or []
    choice = completion["choices"][0]
    message = choice["message"]
    content = message["content"]
    if type(content) is list:
        content = "".join(part["text"] for part in content)
    assert text == (content or "")
    assert target.metadata.get("reasoning") == (message.get("reasoning_content") or None)
    assert [(c.id, c.name, c.raw_arguments) for c in calls] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in message.get("tool_calls") or ()
    ]
    assert target.metadata["finish_reason"] == choice["finish_reason"]
    assert target.metadata["usage"] == completion["usage"]
    assert {c["id"] for c in chunks} == {completion["id"]}
    assert {c["model"] for c in chunks} == {completion["model"]}


# == unit tests: the edge cases the properties met ==============================================
def test_a_thinking_budget_comes_back_as_its_levels_budget() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 9000,
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "messages": [{"role": "user", "content": "Hi"}],
    }
    canonical = to_canonical(body, Translation())
    assert canonical["reasoning_effort"] == "medium"
    back = to_anthropic(canonical, model_id=MODEL, stream=False, ctx=Translation())
    assert back["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert back["max_tokens"] == 9000


CALL = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
MARK = {"type": "ephemeral"}


def with_call(assistant: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 16,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        ],
    }


def test_a_cache_mark_on_the_tool_use_that_ends_a_turn_comes_back() -> None:
    """It was lost without a word: a canonical call has no mark, so it is the turn's mark,
    which goes back on the turn's last block."""
    ctx = Translation()
    canonical = to_canonical(
        with_call([CALL, {**CALL, "id": "toolu_2", "cache_control": MARK}]), ctx
    )
    assert ctx.dropped == [] and canonical["messages"][1]["cache_control"] == MARK
    model = canonical.pop("model")
    back = to_anthropic(canonical, model_id=model, stream=False, ctx=Translation())
    assert back["messages"][1]["content"] == [
        CALL,
        {**CALL, "id": "toolu_2", "cache_control": MARK},
    ]


def test_a_cache_mark_on_a_tool_use_inside_a_turn_is_dropped_and_named() -> None:
    ctx = Translation()
    assistant = [{**CALL, "cache_control": MARK}, {"type": "text", "text": "Done."}]
    canonical = to_canonical(with_call(assistant), ctx)
    assert ctx.dropped == ["messages.1.content.0.cache_control"]
    assert "cache_control" not in canonical["messages"][1]


def messages_events(
    raw: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str | None, dict[str, Any]]]:
    """Anthropic events through the canonical chunks and back, as a client reads them."""
    reader = AnthropicEvents(WHO, json_tool=False, include_usage=True)
    writer = MessageEvents(MODEL)
    pieces = [
        writer.feed(c) for name, data in raw for c, _ in reader.feed(name, orjson.dumps(data))
    ]
    pieces += [writer.feed(c) for c in reader.end()] + [writer.end()]
    return [(name, orjson.loads(data)) for name, data in sse(pieces)]


def block_events(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[Any]:
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return [
        ("content_block_start", start),
        *[
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def test_each_signed_thinking_block_of_a_stream_stays_its_own_block() -> None:
    """Two thinking blocks in a row were written as one, with both signatures run together
    (a signature Anthropic refuses when the client sends the turn back), and an empty one
    (``display: omitted``) had no block at all."""
    empty = {"type": "thinking", "thinking": "", "signature": ""}
    message = {"id": "msg_1", "model": MODEL, "usage": {"input_tokens": 3, "output_tokens": 1}}
    raw = [
        ("message_start", {"type": "message_start", "message": message}),
        *block_events(
            0,
            empty,
            {"type": "thinking_delta", "thinking": "Hmm"},
            {"type": "signature_delta", "signature": "S1"},
        ),
        *block_events(1, empty, {"type": "signature_delta", "signature": "S2"}),
        *block_events(2, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Hi"}),
        *block_events(3, {"type": "redacted_thinking", "data": "R"}),
        *block_events(4, empty, {"type": "signature_delta", "signature": "S3"}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert said_by_events(messages_events(raw))["blocks"] == [
        {"type": "thinking", "thinking": "Hmm", "signature": "S1"},
        {"type": "thinking", "thinking": "", "signature": "S2"},
        {"type": "text", "text": "Hi"},
        {"type": "redacted_thinking", "data": "R"},
        {"type": "thinking", "thinking": "", "signature": "S3"},
    ]


def test_a_signed_thinking_block_given_whole_is_written_whole() -> None:
    """A chunk may carry a thinking block whose text was not streamed before it."""
    block = {"type": "thinking", "thinking": "Let me see.", "signature": "S"}
    writer = MessageEvents(MODEL)
    pieces = [writer.feed(chunk_of("c1", {"thinking_blocks": [block]})), writer.end()]
    events = [(name, orjson.loads(data)) for name, data in sse(pieces)]
    assert said_by_events(events)["blocks"] == [block]


def test_a_stream_without_usage_comes_back_with_zero_counts() -> None:
    """A Messages API stream always counts: a deployment that gave no usage counts zero."""
    writer = MessageEvents(MODEL)
    pieces = [writer.feed(chunk_of("c1", {"content": "Hi"}, "stop")), writer.end()]
    reader = AnthropicEvents(WHO, json_tool=False, include_usage=True)
    back = [c for name, data in sse(pieces) for c, _ in reader.feed(name, data)]
    usage = reader.end()[0]["usage"]
    assert said_by_chunks(back)["text"] == "Hi"
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 0)


def test_a_refusal_is_a_content_policy_error_when_read_back() -> None:
    """What the properties leave out: ``content_filter`` is Anthropic's ``refusal``, which a
    reader raises as the typed error instead of translating it."""
    message = {"role": "assistant", "content": "No."}
    completion = {"id": "c1", "choices": [{"message": message, "finish_reason": "content_filter"}]}
    answer = to_message(completion, MODEL)
    assert answer["stop_reason"] == "refusal"
    with pytest.raises(ContentPolicyError):
        to_completion(answer, WHO)
    writer = MessageEvents(MODEL)
    pieces = [writer.feed(chunk_of("c1", {"content": "No."}, "content_filter")), writer.end()]
    reader = AnthropicEvents(WHO, json_tool=False, include_usage=True)
    with pytest.raises(ContentPolicyError):
        for name, data in sse(pieces):
            reader.feed(name, data)


def test_the_chat_family_drops_null_fields_and_a_false_stream() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stop": None}
    assert family(CHAT).to_canonical({**body, "stream": False}, Translation()) == {
        "messages": body["messages"]
    }
    out = family(CHAT).to_canonical({**body, "stream": True}, Translation())
    assert out == {"messages": body["messages"], "stream": True}
