"""What a translation does with a field the target family cannot express.

A native lane sends the client's request as it is; a translated lane (a Claude Code request
answered by a GPT deployment, a chat request by Claude) must say what became of every field
the target has no form for. Two answers, per *feature*:

* ``drop``: the field is a hint (effort, thinking budgets, context management, cache markers,
  betas, metadata...): the request goes without it and the answer names it (the server's
  ``x-msgflux-dropped`` header, ``metadata["dropped"]`` in the library);
* ``refuse``: the field would change the answer (a second choice, logprobs, a tool type the
  target lacks, audio output...): the deployment is ineligible for this call
  (:class:`~msgflux.exceptions.UnsupportedFeatureError`, recorded as a skip, never as a
  failure) and the gateway moves on.

:data:`RULES` holds the defaults (the table in ``docs/providers.md``); a gateway overrides
any of them with ``translation={"top_k": "refuse", "n": "drop"}``. A :class:`Translation` is
one translation's policy and the list of what it dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from msgflux.exceptions import UnsupportedFeatureError

__all__ = [
    "DROP",
    "REFUSE",
    "RULES",
    "Rule",
    "Translation",
    "check_overrides",
    "check_portable",
]

DROP = "drop"
REFUSE = "refuse"


@dataclasses.dataclass(frozen=True)
class Rule:
    """A feature's default and what it covers (for the docs and error messages)."""

    default: str
    covers: str


RULES: dict[str, Rule] = {
    # -- hints: dropped by default ----------------------------------------------------------
    "effort": Rule(DROP, "Messages `output_config.effort`"),
    "thinking": Rule(
        DROP, "Messages `thinking` with no budget (`adaptive`), thinking `display` options"
    ),
    "context_management": Rule(DROP, "Messages `context_management`"),
    "cache_control": Rule(DROP, "cache markers (`cache_control`) for a target without them"),
    "betas": Rule(DROP, "the `anthropic-beta` header on a translated lane"),
    "metadata": Rule(DROP, "request `metadata` a target has no use for"),
    "service_tier": Rule(DROP, "`service_tier`"),
    "seed": Rule(DROP, "`seed` for a target without one"),
    "store": Rule(DROP, "`store`"),
    "prompt_cache_key": Rule(DROP, "`prompt_cache_key`"),
    "verbosity": Rule(DROP, "`verbosity`"),
    "user": Rule(DROP, "`user` / `safety_identifier` for a target without them"),
    "top_k": Rule(DROP, "`top_k` for a target without it"),
    "defer_loading": Rule(DROP, "a tool's `defer_loading` (tool search)"),
    "container": Rule(DROP, "Messages `container`"),
    "speed": Rule(DROP, "Messages `speed`, `inference_geo`"),
    "safety_settings": Rule(DROP, "Gemini `safetySettings` for a target without them"),
    "thinking_blocks": Rule(
        DROP, "another vendor's reasoning in the conversation (thinking blocks, signatures)"
    ),
    "hosted_tools": Rule(
        DROP,
        "a hosted tool the model may use but need not (Responses `web_search`, `file_search`, "
        "`code_interpreter`, `mcp`, ...), its calls in the conversation, `max_tool_calls`",
    ),
    "tool_namespaces": Rule(
        DROP, "a Responses namespace's own `description` (its functions stay, named `NS__name`)"
    ),
    "reasoning_items": Rule(
        DROP,
        "reasoning only its vendor can read (Responses `encrypted_content`), `reasoning.context`",
    ),
    "reasoning_summary": Rule(DROP, "Responses `reasoning.summary` / `generate_summary`"),
    "include": Rule(
        DROP, "Responses `include` (encrypted reasoning, hosted tools' sources), `stream_options`"
    ),
    "truncation": Rule(DROP, "Responses `truncation: auto` (the context cut to fit)"),
    "message_phase": Rule(DROP, "Responses assistant messages' `phase` (commentary, final answer)"),
    "unknown_fields": Rule(
        DROP, "fields of the request's family this gateway does not know (named one by one)"
    ),
    # -- semantics: the deployment is ineligible by default ---------------------------------
    "n": Rule(REFUSE, "more than one choice (`n > 1`)"),
    "logprobs": Rule(REFUSE, "`logprobs`, `top_logprobs`"),
    "logit_bias": Rule(REFUSE, "`logit_bias`"),
    "penalties": Rule(REFUSE, "`presence_penalty`, `frequency_penalty`"),
    "audio": Rule(REFUSE, "audio output (`modalities`, `audio`)"),
    "prediction": Rule(REFUSE, "predicted outputs (`prediction`)"),
    "web_search_options": Rule(REFUSE, "OpenAI's `web_search_options`"),
    "legacy_functions": Rule(REFUSE, "the legacy `functions` / `function_call` fields"),
    "builtin_tools": Rule(
        REFUSE, "a tool type the target lacks (a vendor's server tools, custom tools)"
    ),
    "mcp_servers": Rule(REFUSE, "Messages `mcp_servers`"),
    "cached_content": Rule(
        REFUSE, "Gemini `cachedContent`: cached turns of the conversation only Gemini can read"
    ),
    "parallel_tool_calls": Rule(REFUSE, "a promise of one tool call at most"),
    "response_format": Rule(REFUSE, "an output format the target cannot enforce"),
    "temperature": Rule(REFUSE, "a `temperature` above the target's range"),
    "tool_choice": Rule(REFUSE, "a forced tool call the target cannot honour"),
    "background": Rule(REFUSE, "Responses `background` mode"),
    "stop": Rule(REFUSE, "`stop` sequences for a target without them (Responses)"),
}
"""Feature -> its default. A feature missing here is dropped."""


def check_overrides(value: Any, name: str = "translation") -> dict[str, str] | None:
    """Validate a gateway's ``translation=`` overrides (a dict feature -> drop|refuse)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of feature -> 'drop' | 'refuse', got {value!r}")
    out: dict[str, str] = {}
    for feature, action in value.items():
        if feature not in RULES:
            raise ValueError(
                f"{name} has an unknown feature {feature!r}; known: {', '.join(sorted(RULES))}"
            )
        if action not in (DROP, REFUSE):
            raise ValueError(f"{name}[{feature!r}] must be 'drop' or 'refuse', got {action!r}")
        out[feature] = action
    return out or None


class Translation:
    """One translation's policy (the defaults, a gateway's overrides) and what it dropped."""

    __slots__ = ("dropped", "overrides")

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.overrides = overrides
        self.dropped: list[str] = []
        """The fields dropped, in the order met (each once)."""

    def action(self, feature: str) -> str:
        overrides = self.overrides
        if overrides is not None:
            action = overrides.get(feature)
            if action is not None:
                return action
        rule = RULES.get(feature)
        return DROP if rule is None else rule.default

    def lose(self, feature: str, field: str, target: str, why: str) -> None:
        """``field`` (of ``feature``) has no form in ``target``: note it dropped, or raise
        :class:`UnsupportedFeatureError` (``target cannot <why>``) when the policy refuses
        it. After a drop the caller goes on without the field."""
        if self.action(feature) == REFUSE:
            raise UnsupportedFeatureError(f"{target} cannot {why}")
        if field not in self.dropped:
            self.dropped.append(field)

    def merged(self, other: Translation) -> list[str]:
        """This translation's drops followed by ``other``'s (each once)."""
        return self.dropped + [f for f in other.dropped if f not in self.dropped]


_CHECKED = frozenset(
    (
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "functions",
        "function_call",
        "presence_penalty",
        "frequency_penalty",
    )
)
_NEVER = {
    "audio": ("audio", "produce audio"),
    "prediction": ("prediction", "use predicted outputs (prediction)"),
    "web_search_options": ("web_search_options", "take OpenAI's web_search_options"),
    "functions": ("legacy_functions", "take the legacy functions field (pass tools)"),
    "function_call": ("legacy_functions", "take the legacy function_call field (pass tool_choice)"),
}


def check_portable(
    body: dict[str, Any],
    target: str,
    ctx: Translation,
    *,
    choices: bool = False,
    penalties: bool = False,
) -> dict[str, Any]:
    """``body`` without the OpenAI fields ``target`` cannot express (``choices``: it can
    return ``n`` choices; ``penalties``: it takes presence/frequency penalties), each one lost
    through ``ctx`` (by default these refuse: the deployment is ineligible). Fields that change
    nothing a caller reads (``seed``, ``store``, ``metadata``...) are the family's to drop."""
    if _CHECKED.isdisjoint(body):
        return body
    gone: list[str] = []

    def lose(feature: str, field: str, why: str) -> None:
        ctx.lose(feature, field, target, why)
        gone.append(field)

    n = body.get("n")
    if n is not None and n != 1 and not choices:
        lose("n", "n", f"return n={n} choices (only n=1)")
    for field in ("logprobs", "top_logprobs"):
        if body.get(field):
            lose("logprobs", field, "return logprobs")
    if body.get("logit_bias"):
        lose("logit_bias", "logit_bias", "take logit_bias")
    modalities = body.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        lose("audio", "modalities", f"produce the modalities {list(modalities)} (only text)")
    for name, (feature, why) in _NEVER.items():
        if body.get(name) is not None:
            lose(feature, name, why)
    if not penalties:
        for name in ("presence_penalty", "frequency_penalty"):
            if body.get(name):
                lose("penalties", name, f"take {name}")
    if not gone:
        return body
    return {k: v for k, v in body.items() if k not in gone}
