"""A Responses request's ``input`` items as canonical (OpenAI chat) messages.

The Responses API sends a conversation as a flat list of items where the chat form has turns:
an assistant turn is a ``message`` item, then one ``function_call`` item per call (each with
its ``call_id``), each result a ``function_call_output`` item, and the model's reasoning a
``reasoning`` item before the output it led to. :func:`input_messages` folds them back into
turns: consecutive calls (and the assistant message before them) become one assistant turn
with several ``tool_calls``; a reasoning item's summary becomes that turn's
``reasoning_content``; a ``developer`` message becomes a ``system`` turn where it stands.

What the canonical form has no place for follows the policy: the encrypted reasoning of an
earlier turn (``reasoning_items``), a message's ``phase`` (``message_phase``), the calls of a
hosted tool (``hosted_tools``: the message after them says what the model made of them), a
call of a tool type other families lack (``builtin_tools``, refused by default). An
``item_reference``, a file of OpenAI's Files API or a compaction item cannot be read without
OpenAI's own stores: a ``ValueError`` naming the item.
"""

from __future__ import annotations

from typing import Any

from msgflux.formats.common import data_url
from msgflux.formats.openai_responses.checks import (
    TARGET,
    drop,
    fail,
    kind_of,
    obj,
    one_of,
    string,
)
from msgflux.formats.policy import Translation

__all__ = ["HOSTED_CALLS", "TOOL_CALLS", "input_messages", "namespaced"]

HOSTED_CALLS = frozenset(
    (
        "web_search_call",
        "file_search_call",
        "image_generation_call",
        "code_interpreter_call",
        "mcp_list_tools",
        "mcp_call",
        "mcp_approval_request",
        "mcp_approval_response",
        "tool_search_call",
        "tool_search_output",
    )
)
"""Items of a hosted tool's run: OpenAI ran it, the model's next message holds its result."""

TOOL_CALLS = frozenset(
    (
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "computer_call",
        "computer_call_output",
        "program",
        "program_output",
    )
)
"""Calls (and results) of tool types with no canonical form: the client ran them."""

_ROLES = ("user", "assistant", "system", "developer")
_MESSAGE_KEYS = frozenset(("type", "role", "content", "id", "status", "phase"))
_CALL_KEYS = frozenset(("type", "call_id", "name", "arguments", "namespace", "id", "status"))
_OUTPUT_KEYS = frozenset(("type", "call_id", "output", "id", "status", "name", "namespace"))
_DETAILS = ("auto", "low", "high", "original")
_ITEMS = ("message", "function_call", "function_call_output", "reasoning")


def namespaced(namespace: Any, name: str, where: str) -> str:
    """The canonical name of a function of a namespace: ``NS__name`` (chat function names
    take ``[a-zA-Z0-9_-]``, so the namespace joins the name rather than a dot)."""
    if namespace is None:
        return name
    return f"{string(namespace, where, empty=False)}__{name}"


def _part(part: Any, where: str, ctx: Translation) -> dict[str, Any]:
    """One input content part (of a user, system or developer message, or a tool result)."""
    kind = obj(part, where).get("type")
    if part.get("prompt_cache_breakpoint") is not None:
        drop(ctx, "cache_control", "prompt_cache_breakpoint")
    if kind == "input_text":
        return {"type": "text", "text": string(part.get("text"), f"{where}.text")}
    if kind == "input_image":
        if part.get("file_id") is not None:
            raise fail(f"{where}.file_id", "a file of OpenAI's Files API has no other form")
        url = string(part.get("image_url"), f"{where}.image_url", empty=False)
        image: dict[str, Any] = {"url": url}
        detail = part.get("detail")
        if detail is not None and one_of(detail, f"{where}.detail", _DETAILS) != "auto":
            # "original" (no downscaling) has no canonical form: "high" is the closest.
            image["detail"] = "high" if detail == "original" else detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_id") is not None:
            raise fail(f"{where}.file_id", "a file of OpenAI's Files API has no other form")
        if part.get("file_url") is not None:
            raise fail(f"{where}.file_url", "a file by URL has no canonical form (send file_data)")
        data = string(part.get("file_data"), f"{where}.file_data", empty=False)
        if data_url(data, f"{where}.file_data") is None:
            raise fail(f"{where}.file_data", "must be a base64 data URL (data:<mime>;base64,...)")
        file: dict[str, Any] = {"file_data": data}
        if part.get("filename") is not None:
            file["filename"] = string(part["filename"], f"{where}.filename")
        return {"type": "file", "file": file}
    if kind == "input_audio":
        audio = obj(part.get("input_audio"), f"{where}.input_audio")
        data = string(audio.get("data"), f"{where}.input_audio.data", empty=False)
        fmt = one_of(audio.get("format"), f"{where}.input_audio.format", ("mp3", "wav"))
        return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
    raise fail(
        f"{where}.type",
        "must be one of 'input_text', 'input_image', 'input_file', 'input_audio'",
        kind,
    )


def _parts(content: Any, where: str, ctx: Translation) -> str | list[dict[str, Any]]:
    if type(content) is str:
        return content
    if type(content) is not list or not content:
        raise fail(where, f"must be a string or a non-empty array of parts, got {kind_of(content)}")
    return [_part(part, f"{where}.{j}", ctx) for j, part in enumerate(content)]


class _Turns:
    """The canonical messages being built, and the reasoning waiting for its turn."""

    __slots__ = ("ctx", "out", "reasoning")

    def __init__(self, ctx: Translation) -> None:
        self.ctx = ctx
        self.out: list[dict[str, Any]] = []
        self.reasoning: list[str] = []

    def _extra(self, item: dict[str, Any], known: frozenset[str], where: str) -> None:
        for key in item:
            if key not in known:
                drop(self.ctx, "unknown_fields", f"{where}.{key}")

    def _orphan(self) -> None:
        """Reasoning with no assistant output after it: it has no turn to belong to."""
        if self.reasoning:
            self.reasoning = []
            drop(self.ctx, "reasoning_items", "reasoning")

    def _think(self, turn: dict[str, Any]) -> dict[str, Any]:
        if self.reasoning:
            earlier = turn.get("reasoning_content")
            turn["reasoning_content"] = "\n\n".join(
                [earlier, *self.reasoning] if earlier else self.reasoning
            )
            self.reasoning = []
        return turn

    def item(self, item: Any, where: str) -> None:
        kind = obj(item, where).get("type")
        if kind is None and "role" in item:
            kind = "message"  # an EasyInputMessage
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            self._call(item, where)
        elif kind == "function_call_output":
            self._orphan()
            self._output(item, where)
        elif kind == "reasoning":
            self._reasoning(item, where)
        elif kind in HOSTED_CALLS:
            drop(self.ctx, "hosted_tools", kind)
        elif kind in TOOL_CALLS:
            self.ctx.lose("builtin_tools", kind, TARGET, f"take a {kind} item ({where})")
        elif kind == "item_reference":
            raise fail(f"{where}.type", "'item_reference' needs the response store (send the item)")
        elif kind == "compaction":
            raise fail(
                f"{where}.type",
                "'compaction' (turns OpenAI compacted, encrypted) has no other form",
            )
        else:
            raise fail(f"{where}.type", f"must be one of {', '.join(map(repr, _ITEMS))}", kind)

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = one_of(item.get("role"), f"{where}.role", _ROLES)
        if len(item) > 3:
            self._extra(item, _MESSAGE_KEYS, where)
            if item.get("phase") is not None:
                drop(self.ctx, "message_phase", "phase")
        content = item.get("content")
        if role == "assistant":
            self._assistant(content, f"{where}.content")
            return
        self._orphan()
        parts = _parts(content, f"{where}.content", self.ctx)
        self.out.append({"role": "user" if role == "user" else "system", "content": parts})

    def _assistant(self, content: Any, where: str) -> None:
        texts: list[str] = []
        refusals: list[str] = []
        if type(content) is str:
            texts.append(content)
        elif type(content) is list:
            for j, part in enumerate(content):
                at = f"{where}.{j}"
                kind = obj(part, at).get("type")
                if kind in ("output_text", "input_text"):
                    texts.append(string(part.get("text"), f"{at}.text"))
                elif kind == "refusal":
                    refusals.append(string(part.get("refusal"), f"{at}.refusal"))
                else:
                    raise fail(f"{at}.type", "must be 'output_text' or 'refusal'", kind)
        else:
            raise fail(where, f"must be a string or an array of parts, got {kind_of(content)}")
        text = "".join(texts)
        turn: dict[str, Any] = {"role": "assistant"}
        if refusals:
            # The chat form's refusal part: every family reads it (as text where it has none).
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            parts.append({"type": "refusal", "refusal": "".join(refusals)})
            turn["content"] = parts
        else:
            turn["content"] = text if texts else None
        self.out.append(self._think(turn))

    def _call(self, item: dict[str, Any], where: str) -> None:
        if len(item) > 4:
            self._extra(item, _CALL_KEYS, where)
        call_id = string(item.get("call_id"), f"{where}.call_id", empty=False)
        name = string(item.get("name"), f"{where}.name", empty=False)
        name = namespaced(item.get("namespace"), name, f"{where}.namespace")
        arguments = item.get("arguments")
        arguments = "" if arguments is None else string(arguments, f"{where}.arguments")
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = self.out[-1] if self.out else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            self._think(last)
        else:
            self.out.append(
                self._think({"role": "assistant", "content": None, "tool_calls": [call]})
            )

    def _output(self, item: dict[str, Any], where: str) -> None:
        if len(item) > 3:
            self._extra(item, _OUTPUT_KEYS, where)
        call_id = string(item.get("call_id"), f"{where}.call_id", empty=False)
        content = _parts(item.get("output"), f"{where}.output", self.ctx)
        self.out.append({"role": "tool", "tool_call_id": call_id, "content": content})

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        texts: list[str] = []
        for key, part_type in (("summary", "summary_text"), ("content", "reasoning_text")):
            parts = item.get(key)
            if parts is None:
                continue
            if type(parts) is not list:
                raise fail(f"{where}.{key}", f"must be an array of {part_type} parts", parts)
            for j, part in enumerate(parts):
                at = f"{where}.{key}.{j}"
                one_of(obj(part, at).get("type"), f"{at}.type", (part_type,))
                text = string(part.get("text"), f"{at}.text")
                if text:
                    texts.append(text)
            if texts:
                break  # the summary when there is one, else the reasoning text itself
        if item.get("encrypted_content"):
            drop(self.ctx, "reasoning_items", "encrypted_content")
        if texts:
            self.reasoning.append("\n\n".join(texts))

    def done(self) -> list[dict[str, Any]]:
        self._orphan()
        return self.out


def input_messages(value: Any, ctx: Translation) -> list[dict[str, Any]]:
    """The canonical messages of a Responses ``input`` (a string: one user turn)."""
    if type(value) is str:
        return [{"role": "user", "content": value}]
    if type(value) is not list:
        raise fail("input", f"must be a string or an array of input items, got {kind_of(value)}")
    turns = _Turns(ctx)
    for i, item in enumerate(value):
        turns.item(item, f"input.{i}")
    return turns.done()
