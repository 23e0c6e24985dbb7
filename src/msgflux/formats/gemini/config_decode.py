"""Gemini's ``toolConfig`` and ``generationConfig`` in the canonical (OpenAI chat) form, for
:mod:`.request_decode` (what maps to what is said there).

``functionCallingConfig`` becomes ``tool_choice`` (``ANY`` with one allowed name forces it;
several allowed names keep only those tools, since OpenAI's form names one at most);
``generationConfig`` the sampling fields, ``response_format`` (``responseMimeType`` with
``responseSchema`` back to JSON Schema, or ``responseJsonSchema`` as it is) and
``reasoning_effort`` (``thinkingConfig``). What has no canonical form is lost through the
:class:`~msgflux.formats.policy.Translation`.
"""

from __future__ import annotations

from typing import Any

from msgflux.formats.gemini.read import (
    TARGET,
    drop,
    fail,
    integer,
    kind_of,
    number,
    obj,
    string,
)
from msgflux.formats.gemini.request_encode import THINKING_BUDGETS
from msgflux.formats.gemini.schema import json_schema
from msgflux.formats.policy import Translation

__all__ = ["generation_config", "tool_config"]

_EFFORTS = sorted(
    ((budget, effort) for effort, budget in THINKING_BUDGETS.items() if budget), reverse=True
)
"""``(thinkingBudget, reasoning_effort)``, largest first."""
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")


# -- toolConfig ---------------------------------------------------------------------------------
def tool_config(value: Any, out: dict[str, Any], ctx: Translation) -> None:
    """Set ``tool_choice`` (and narrow ``out["tools"]``, read before) from ``toolConfig``."""
    config = obj(value, "toolConfig")
    for key in config:
        if key != "functionCallingConfig":
            drop(ctx, "unknown_fields", f"toolConfig.{key}")  # retrievalConfig, ...
    if config.get("functionCallingConfig") is None:
        return
    where = "toolConfig.functionCallingConfig"
    calling = obj(config["functionCallingConfig"], where)
    mode = calling.get("mode", "MODE_UNSPECIFIED")
    if mode not in _MODES:
        raise fail(f"{where}.mode", f"must be one of {', '.join(_MODES)}", mode)
    names = calling.get("allowedFunctionNames")
    if names is not None and (type(names) is not list or not all(type(n) is str for n in names)):
        raise fail(f"{where}.allowedFunctionNames", "must be an array of strings", names)
    if mode == "NONE":
        out["tool_choice"] = "none"
        return
    if names:
        tools = out.get("tools") or []
        kept = [t for t in tools if t["function"]["name"] in names]
        if len(kept) != len(set(names)):
            raise fail(f"{where}.allowedFunctionNames", "names a function not declared", names)
        if mode == "ANY" and len(kept) == 1:
            out["tool_choice"] = {"type": "function", "function": {"name": names[0]}}
            return
        out["tools"] = kept  # the model may call these only: the others are not offered
    if mode == "ANY":
        out["tool_choice"] = "required"
    elif mode != "MODE_UNSPECIFIED":
        out["tool_choice"] = "auto"


# -- generationConfig ---------------------------------------------------------------------------
_RESPONSE = ("responseMimeType", "responseSchema", "responseJsonSchema")
"""The ``generationConfig`` fields of the output format, read together."""


def generation_config(config: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    """Set the canonical fields of ``generationConfig`` (its keys in camelCase) in ``out``;
    an output modality other than text, logprobs and an output type other than JSON are lost
    through ``ctx`` (refused by default), the rest of what has no form is dropped."""
    at = "generationConfig."
    for key, value in config.items():
        if value is None:
            continue
        where = at + key
        if key == "maxOutputTokens":
            out["max_tokens"] = integer(value, where, 1)
        elif key == "temperature":
            out["temperature"] = number(value, where, 0, 2)
        elif key == "topP":
            out["top_p"] = number(value, where, 0, 1)
        elif key == "topK":
            out["top_k"] = integer(value, where, 1)
        elif key == "seed":
            out["seed"] = integer(value, where, -(2**31))
        elif key in ("presencePenalty", "frequencyPenalty"):
            name = "presence_penalty" if key == "presencePenalty" else "frequency_penalty"
            out[name] = number(value, where, -2, 2)
        elif key == "candidateCount":
            if integer(value, where, 1) != 1:
                out["n"] = value
        elif key == "stopSequences":
            if type(value) is not list or not all(type(s) is str for s in value):
                raise fail(where, "must be an array of strings", value)
            if value:
                out["stop"] = value
        elif key == "thinkingConfig":
            _thinking(obj(value, where), out, ctx)
        elif key == "responseModalities":
            if type(value) is not list:
                raise fail(where, "must be an array of modalities", value)
            if any(str(m).upper() != "TEXT" for m in value):
                ctx.lose("audio", where, TARGET, f"produce {value} output (only text)")
        elif key in ("responseLogprobs", "logprobs"):
            if value:
                ctx.lose("logprobs", where, TARGET, "return logprobs in Gemini's form")
        elif key not in _RESPONSE:
            drop(ctx, "unknown_fields", where)  # speechConfig, mediaResolution, ...
    if any(key in config for key in _RESPONSE):
        _response_format(config, out, ctx)


def _response_format(config: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    mime = config.get("responseMimeType")
    if mime is not None:
        mime = string(mime, "generationConfig.responseMimeType")
    schema = config.get("responseSchema")
    raw = config.get("responseJsonSchema")
    if schema is not None and raw is not None:
        raise fail("generationConfig", "responseSchema and responseJsonSchema are exclusive")
    if mime in (None, "", "text/plain") and schema is None and raw is None:
        return
    if mime not in (None, "application/json"):
        why = f"give {mime} output (only text and JSON)"
        ctx.lose("response_format", "generationConfig.responseMimeType", TARGET, why)
        return
    if schema is not None:
        raw = json_schema(schema, "generationConfig.responseSchema")
    elif raw is not None and type(raw) is not dict:
        raise fail("generationConfig.responseJsonSchema", f"must be an object, got {kind_of(raw)}")
    if raw is None:
        out["response_format"] = {"type": "json_object"}
    else:
        spec = {"name": "response", "schema": raw}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}


def _thinking(config: dict[str, Any], out: dict[str, Any], ctx: Translation) -> None:
    """A thinking level as the same ``reasoning_effort``; a budget as the largest effort whose
    budget is not above it (0: ``none``); a dynamic budget (-1) has no effort: a hint,
    dropped."""
    where = "generationConfig.thinkingConfig"
    level = config.get("thinkingLevel")
    budget = config.get("thinkingBudget")
    effort: str | None = None
    if level is not None and level != "THINKING_LEVEL_UNSPECIFIED":
        level = string(level, f"{where}.thinkingLevel").upper()
        if level not in _LEVELS:
            raise fail(f"{where}.thinkingLevel", f"must be one of {', '.join(_LEVELS)}", level)
        effort = level.lower()
    elif budget is not None:
        budget = integer(budget, f"{where}.thinkingBudget", -1)
        if budget == -1:
            drop(ctx, "thinking", f"{where}.thinkingBudget")
        elif budget == 0:
            effort = "none"
        else:
            effort = next((e for low, e in _EFFORTS if low <= budget), "minimal")
    include = config.get("includeThoughts")
    if include is not None and type(include) is not bool:
        raise fail(f"{where}.includeThoughts", "must be a boolean", include)
    if include is False and effort not in (None, "none"):
        drop(ctx, "thinking", f"{where}.includeThoughts")
    for key in config:
        if key not in ("thinkingLevel", "thinkingBudget", "includeThoughts"):
            drop(ctx, "unknown_fields", f"{where}.{key}")
    if effort is not None:
        out["reasoning_effort"] = effort
