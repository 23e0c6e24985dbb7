"""OpenAI Responses API requests in the canonical (OpenAI chat) form.

:func:`to_canonical` is the translation a ``POST /v1/responses`` body goes through when the
deployment that answers does not speak the Responses API (a Codex CLI request answered by
Claude or Gemini). A request a Responses deployment answers never comes here: it goes
upstream as the client sent it (the native lane).

What maps to what: ``instructions`` becomes a leading system turn and ``input`` the
conversation (:mod:`.input_decode`); function tools become chat function tools, and the
functions of a ``namespace`` tool (how Codex CLI groups an MCP server's tools) each one named
``NS__name``; ``tool_choice``, ``parallel_tool_calls``, ``text.format`` (``response_format``),
``text.verbosity``, ``reasoning.effort`` (``reasoning_effort``), ``max_output_tokens``
(``max_tokens``), ``temperature``, ``top_p``, ``user``/``safety_identifier`` (``user``),
``service_tier`` and ``prompt_cache_key`` keep their meaning under chat's names (a target
without them drops them). An ``allowed_tools`` choice becomes the tools it allows: the
model can call no other, as the Responses API promises.

The rest follows the :mod:`~msgflux.formats.policy`. Hosted tools the model may use but need
not (``web_search`` comes with every Codex request) are dropped (``hosted_tools``) unless
``tool_choice`` forces one (``tool_choice``, refused by default); ``custom`` (free-form)
tools refuse (``builtin_tools``); ``background`` refuses; ``metadata``, ``store: true``,
``include``, ``reasoning.summary``, ``truncation: "auto"``, ``client_metadata`` and fields
this module does not know are dropped and named. ``previous_response_id`` and
``conversation`` name stored turns: the caller resolves them (:func:`.expand.expand`) before
translating, so one still here is a ``ValueError``. A malformed field raises
``ValueError``/``TypeError`` whose message starts with its path (``tools.2.name: ...``).
"""

from __future__ import annotations

import re
from typing import Any

from msgflux.formats.openai_responses.checks import (
    TARGET,
    boolean,
    drop,
    fail,
    integer,
    kind_of,
    number,
    obj,
    one_of,
    string,
)
from msgflux.formats.openai_responses.input_decode import input_messages, namespaced
from msgflux.formats.policy import Translation

__all__ = ["EFFORTS", "to_canonical"]

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""``reasoning.effort`` values (the canonical ``reasoning_effort`` takes the same)."""

_DATED = re.compile(r"_\d{4}_\d{2}_\d{2}$")
"""A hosted tool type's version date (``web_search_preview_2025_03_11``)."""
_TOOL_KEYS = frozenset(("type", "name", "description", "parameters", "strict"))
_HINTS = {
    "metadata": "metadata",
    "client_metadata": "metadata",
    "prompt_cache_retention": "prompt_cache_key",
    "prompt_cache_options": "prompt_cache_key",
    "context_management": "context_management",
    "max_tool_calls": "hosted_tools",
    "stream_options": "include",
}
"""Fields with no canonical form that change nothing a caller reads -> their feature."""
_HANDLED = frozenset(
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
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "store",
        "include",
        "top_logprobs",
        "truncation",
        "background",
        "prompt",
        "stream",
        *_HINTS,
    )
)


# -- the request --------------------------------------------------------------------------------
def to_canonical(payload: Any, ctx: Translation) -> dict[str, Any]:
    """The canonical chat body (``model`` and ``stream`` included, as the client sent them)
    for a Responses API body whose stored turns, if any, were resolved."""
    body = obj(payload, "body")
    for held in ("previous_response_id", "conversation"):
        if body.get(held) is not None:
            raise fail(held, "continues stored turns: it needs the response store (resolved first)")
    model = string(body.get("model"), "model", empty=False)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None and string(instructions, "instructions"):
        messages.append({"role": "system", "content": instructions})
    value = body.get("input")
    if value is not None:
        messages += input_messages(value, ctx)
    if not messages:
        raise fail("input", "is required: a string or an array of input items")
    out: dict[str, Any] = {"model": model, "messages": messages}
    if len(body) > 2:
        _options(body, out, ctx)
    stream = body.get("stream")
    if stream is not None and boolean(stream, "stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # response.completed carries it
    return out


def _options(body: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    """Every field but the model, the instructions and the input."""
    for name, value in body.items():
        if name not in _HANDLED:
            drop(ctx, "unknown_fields", name)
        elif name in _HINTS and value:
            drop(ctx, _HINTS[name], name)
    _tools_and_choice(body, out, ctx)
    text = body.get("text")
    if text is not None:
        _text(obj(text, "text"), out, ctx)
    reasoning = body.get("reasoning")
    if reasoning is not None:
        _reasoning(obj(reasoning, "reasoning"), out, ctx)
    tokens = body.get("max_output_tokens")
    if tokens is not None:
        out["max_tokens"] = integer(tokens, "max_output_tokens", 1)
    for field, high in (("temperature", 2.0), ("top_p", 1.0)):
        if body.get(field) is not None:
            out[field] = number(body[field], field, high)
    user = body.get("user")
    if user is None:
        user = body.get("safety_identifier")
        if user is not None:
            out["user"] = string(user, "safety_identifier")
    else:
        out["user"] = string(user, "user")
    for field in ("service_tier", "prompt_cache_key"):
        if body.get(field) is not None:
            out[field] = string(body[field], field)
    if body.get("store") is not None and boolean(body["store"], "store"):
        # Stored on OpenAI's side; the canonical form's default is not to store.
        drop(ctx, "store", "store")
    _extras(body, ctx)


def _extras(body: dict[str, Any], ctx: Translation) -> None:
    """What asks for more than an answer: extra output, logprobs, background mode, a
    stored prompt."""
    include = body.get("include")
    if include is not None:
        if type(include) is not list or not all(type(v) is str for v in include):
            raise fail("include", "must be an array of strings", include)
        for value in include:
            if value == "message.output_text.logprobs":
                ctx.lose("logprobs", "include", TARGET, "return logprobs")
            else:
                drop(ctx, "include", "include")
    top = body.get("top_logprobs")
    if top is not None and integer(top, "top_logprobs", 0):
        ctx.lose("logprobs", "top_logprobs", TARGET, "return logprobs")
    truncation = body.get("truncation")
    if truncation is not None and one_of(truncation, "truncation", ("auto", "disabled")) == "auto":
        drop(ctx, "truncation", "truncation")
    background = body.get("background")
    if background is not None and boolean(background, "background"):
        ctx.lose("background", "background", TARGET, "answer in background mode")
    if body.get("prompt") is not None:
        raise fail("prompt", "a stored prompt template needs OpenAI's store (send its text)")


# -- tools --------------------------------------------------------------------------------------
def _function(tool: dict[str, Any], where: str, ctx: Translation, ns: Any) -> dict[str, Any]:
    for key, value in tool.items():
        if key not in _TOOL_KEYS and value not in (None, False, [], {}):
            feature = "defer_loading" if key == "defer_loading" else "unknown_fields"
            drop(ctx, feature, f"{where}.{key}")
    name = string(tool.get("name"), f"{where}.name", empty=False)
    function: dict[str, Any] = {"name": namespaced(ns, name, f"{where}.name")}
    description = tool.get("description")
    if description is not None:
        function["description"] = string(description, f"{where}.description")
    parameters = tool.get("parameters")
    if parameters is not None:
        function["parameters"] = obj(parameters, f"{where}.parameters")
    strict = tool.get("strict")
    if strict is not None:
        function["strict"] = boolean(strict, f"{where}.strict")
    return {"type": "function", "function": function}


def _custom(where: str, ctx: Translation) -> None:
    ctx.lose("builtin_tools", where, TARGET, f"take a custom (free-form) tool ({where})")


def _tools(
    tools: Any, ctx: Translation, forced: str | None
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The canonical function tools, and each namespace's function names (for
    ``allowed_tools``). A hosted tool is lost under ``hosted_tools``, or under
    ``tool_choice`` when the choice forces its type."""
    if type(tools) is not list:
        raise fail("tools", f"must be an array of tools, got {kind_of(tools)}")
    out: list[dict[str, Any]] = []
    spaces: dict[str, list[str]] = {}
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        kind = obj(tool, where).get("type")
        if kind == "function":
            out.append(_function(tool, where, ctx, None))
        elif kind == "namespace":
            ns = string(tool.get("name"), f"{where}.name", empty=False)
            if tool.get("description"):
                drop(ctx, "tool_namespaces", f"{where}.description")
            inner = tool.get("tools")
            if type(inner) is not list:
                raise fail(f"{where}.tools", f"must be an array of tools, got {kind_of(inner)}")
            names = spaces.setdefault(ns, [])
            for j, fn in enumerate(inner):
                at = f"{where}.tools.{j}"
                fkind = one_of(obj(fn, at).get("type"), f"{at}.type", ("function", "custom"))
                if fkind == "custom":
                    _custom(at, ctx)
                    continue
                out.append(_function(fn, at, ctx, ns))
                names.append(out[-1]["function"]["name"])
        elif kind == "custom":
            _custom(where, ctx)
        elif type(kind) is str and kind:
            if forced is not None and _DATED.sub("", kind) == _DATED.sub("", forced):
                ctx.lose("tool_choice", where, TARGET, f"run the hosted tool {kind!r}")
            else:
                drop(ctx, "hosted_tools", kind)
        else:
            raise fail(f"{where}.type", "must name the tool type ('function', ...)", kind)
    return out, spaces


def _forced(choice: Any) -> str | None:
    """The hosted tool type a ``tool_choice`` forces, if it forces one."""
    if type(choice) is not dict:
        return None
    kind = choice.get("type")
    if type(kind) is str and kind not in ("function", "allowed_tools", "custom"):
        return kind
    return None


def _tools_and_choice(body: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    choice = body.get("tool_choice")
    forced = _forced(choice)
    tools: list[dict[str, Any]] = []
    spaces: dict[str, list[str]] = {}
    if body.get("tools") is not None:
        tools, spaces = _tools(body["tools"], ctx, forced)
    if forced is not None:
        ctx.lose("tool_choice", "tool_choice", TARGET, f"force the hosted tool {forced!r}")
        choice = None
    elif choice is not None:
        choice, tools = _tool_choice(choice, tools, spaces, ctx)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        boolean(parallel, "parallel_tool_calls")
    if not tools:
        if choice == "required":
            ctx.lose("tool_choice", "tool_choice", TARGET, "call a tool when it has none to call")
        return  # a choice or a promise about no tool changes nothing
    out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    if parallel is not None:
        out["parallel_tool_calls"] = parallel


def _allowed(
    entries: Any, tools: list[dict[str, Any]], spaces: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """The function tools an ``allowed_tools`` choice allows."""
    if type(entries) is not list:
        raise fail("tool_choice.tools", f"must be an array of tools, got {kind_of(entries)}")
    names: set[str] = set()
    for k, entry in enumerate(entries):
        at = f"tool_choice.tools.{k}"
        kind = obj(entry, at).get("type")
        if kind == "function":
            name = string(entry.get("name"), f"{at}.name", empty=False)
            names.add(namespaced(entry.get("namespace"), name, f"{at}.namespace"))
        elif kind == "namespace":
            names.update(spaces.get(string(entry.get("name"), f"{at}.name"), ()))
    return [tool for tool in tools if tool["function"]["name"] in names]


def _tool_choice(
    choice: Any, tools: list[dict[str, Any]], spaces: dict[str, list[str]], ctx: Translation
) -> tuple[Any, list[dict[str, Any]]]:
    """The canonical ``tool_choice`` and the tools it leaves the model."""
    if type(choice) is str:
        return one_of(choice, "tool_choice", ("auto", "none", "required")), tools
    kind = obj(choice, "tool_choice").get("type")
    if kind == "function":
        name = string(choice.get("name"), "tool_choice.name", empty=False)
        name = namespaced(choice.get("namespace"), name, "tool_choice.namespace")
        if not any(tool["function"]["name"] == name for tool in tools):
            raise fail("tool_choice.name", "names no function of tools", name)
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        mode = one_of(choice.get("mode"), "tool_choice.mode", ("auto", "required"))
        return mode, _allowed(choice.get("tools"), tools, spaces)
    ctx.lose("tool_choice", "tool_choice", TARGET, f"force the {kind!r} tool")
    return None, tools


# -- text and reasoning -------------------------------------------------------------------------
def _text(text: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    for key in text:
        if key not in ("format", "verbosity"):
            drop(ctx, "unknown_fields", f"text.{key}")
    fmt = text.get("format")
    if fmt is not None:
        fmt = obj(fmt, "text.format")
        kind = one_of(fmt.get("type"), "text.format.type", ("text", "json_object", "json_schema"))
        if kind == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif kind == "json_schema":
            spec: dict[str, Any] = {
                "name": string(fmt.get("name"), "text.format.name", empty=False),
                "schema": obj(fmt.get("schema"), "text.format.schema"),
            }
            if fmt.get("strict") is not None:
                spec["strict"] = boolean(fmt["strict"], "text.format.strict")
            if fmt.get("description") is not None:
                spec["description"] = string(fmt["description"], "text.format.description")
            out["response_format"] = {"type": "json_schema", "json_schema": spec}
    verbosity = text.get("verbosity")
    if verbosity is not None:
        out["verbosity"] = one_of(verbosity, "text.verbosity", ("low", "medium", "high"))


def _reasoning(reasoning: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    for key, value in reasoning.items():
        if value is None:
            continue
        if key == "effort":
            out["reasoning_effort"] = one_of(value, "reasoning.effort", EFFORTS)
        elif key in ("summary", "generate_summary"):
            one_of(value, f"reasoning.{key}", ("auto", "concise", "detailed"))
            drop(ctx, "reasoning_summary", f"reasoning.{key}")
        elif key == "context":
            drop(ctx, "reasoning_items", "reasoning.context")
        else:
            drop(ctx, "unknown_fields", f"reasoning.{key}")
