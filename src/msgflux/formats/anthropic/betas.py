"""The ``anthropic-beta`` values Claude takes on each cloud, with no I/O.

Claude's own API takes any beta Anthropic ships; Claude on AWS Bedrock and on Google Vertex
AI refuse a beta they do not know with a 400 (Bedrock: ``invalid beta flag``; Vertex:
``Unexpected value(s) ... for the anthropic-beta header``), and clients written for
Anthropic's API (Claude Code) send Anthropic-only ones (``claude-code-20250219``,
``oauth-2025-04-20``, ``prompt-caching-scope-2026-01-05``...). A native lane to a cloud
therefore passes on the betas the cloud documents (:data:`BEDROCK_BETAS`,
:data:`VERTEX_BETAS`), renamed where the cloud names one differently (:data:`BETA_ALIASES`),
and drops the rest (:func:`kept_betas`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = ["BEDROCK_BETAS", "BETA_ALIASES", "DROPPED", "VERTEX_BETAS", "kept_betas", "refused"]

DROPPED = "anthropic-beta"
"""How an answer names the betas a cloud would have refused in its ``dropped`` list (the
server's ``x-msgflux-dropped`` header), as a translated lane names a dropped header."""

BEDROCK_BETAS = frozenset(
    (
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "token-efficient-tools-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "dev-full-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
        "compact-2026-01-12",
    )
)
"""The betas AWS documents for Claude's Messages API on Bedrock (``InvokeModel``)."""
VERTEX_BETAS = frozenset(
    (
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "interleaved-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "tool-search-tool-2025-10-19",
        "web-search-2025-03-05",
        "compact-2026-01-12",
    )
)
"""The betas Claude on Vertex AI takes (``rawPredict``)."""
BETA_ALIASES = {"advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"}
"""Anthropic's name of a beta -> the clouds' (tool search)."""


def kept_betas(header: str | None, allowed: Collection[str]) -> tuple[list[str], list[str]]:
    """``(kept, dropped)``: the betas of an ``anthropic-beta`` header in ``allowed`` (renamed
    by :data:`BETA_ALIASES`, each once, in order) and the others."""
    kept: list[str] = []
    dropped: list[str] = []
    for raw in (header or "").split(","):
        beta = raw.strip()
        if not beta:
            continue
        beta = BETA_ALIASES.get(beta, beta)
        if beta not in allowed:
            dropped.append(beta)
        elif beta not in kept:
            kept.append(beta)
    return kept, dropped


def refused(headers: Mapping[str, str] | None, allowed: Collection[str]) -> bool:
    """Whether a client's forwarded headers (lower-case names) hold a beta not in ``allowed``
    (which :func:`kept_betas` drops)."""
    header = headers.get("anthropic-beta") if headers else None
    return bool(header) and bool(kept_betas(header, allowed)[1])
