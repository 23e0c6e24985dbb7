"""Claude's own API on Bedrock (``InvokeModel``, ``InvokeModelWithResponseStream``): the native
lane of a Messages API request to an Anthropic model on Bedrock, with no I/O.

* :func:`invoke_body`: the client's Messages body as Bedrock takes it: without ``model`` (the
  URL names it) and ``stream`` (the path says it), with ``anthropic_version`` in the body
  (``bedrock-2023-05-31``) and the client's ``anthropic-beta`` header as the body's
  ``anthropic_beta`` list, where Bedrock reads betas; every other field as the client sent it.
  Bedrock refuses a beta it does not know with a 400 (``invalid beta flag``), and clients
  written for Anthropic's own API (Claude Code) send some (``claude-code-20250219``,
  ``oauth-...``, ``prompt-caching-scope-...``): the header's betas are kept when Bedrock takes
  them (:mod:`msgflux.formats.anthropic.betas`) and dropped otherwise (:func:`bedrock_betas`).
  Betas the client put in the body's own ``anthropic_beta`` go as they are (a client that knows
  it talks to Bedrock).
* :class:`InvokeDecoder`: the answer's stream as the Messages API's events. Bedrock wraps each
  event of Claude's SSE stream in an event-stream ``chunk`` message whose payload is
  ``{"bytes": base64 of the event's JSON}``; the decoder unwraps them into ``(event type,
  JSON)`` pairs, what a Messages stream relays. An exception message raises its typed error.

A whole (non-stream) answer is Claude's Messages JSON as it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from msgflux._transport.eventstream import EXCEPTION, EventStreamDecoder
from msgflux._transport.sse import Event
from msgflux.formats.anthropic.betas import BEDROCK_BETAS, BETA_ALIASES, kept_betas
from msgflux.formats.bedrock.errors import stream_exception
from msgflux.formats.common import Who, bad

__all__ = [
    "BEDROCK_BETAS",
    "BEDROCK_VERSION",
    "BETA_ALIASES",
    "InvokeDecoder",
    "bedrock_betas",
    "invoke_body",
]

BEDROCK_VERSION = "bedrock-2023-05-31"
"""The ``anthropic_version`` Claude on Bedrock takes (in the body)."""


def bedrock_betas(header: str | None) -> tuple[list[str], list[str]]:
    """``(kept, dropped)``: the betas of an ``anthropic-beta`` header Bedrock takes (renamed
    as Bedrock names them, each once, in order) and those it would refuse."""
    return kept_betas(header, BEDROCK_BETAS)


def invoke_body(
    body: Mapping[str, Any], headers: Mapping[str, str] | None, version: str = BEDROCK_VERSION
) -> bytes:
    """The body of an ``InvokeModel`` call for a client's Messages ``body`` (see the module
    docstring); ``headers`` are the client's forwarded Messages headers (lower-case): their
    betas Bedrock would refuse are dropped."""
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = version
    betas, _ = bedrock_betas(headers.get("anthropic-beta") if headers else None)
    if betas:
        given = out.get("anthropic_beta")
        if isinstance(given, list):
            betas = [*given, *(b for b in betas if b not in given)]
        out["anthropic_beta"] = betas
    return orjson.dumps(out)


class InvokeDecoder:
    """Bytes of an ``InvokeModelWithResponseStream`` answer -> Messages API events (a
    :class:`~msgflux._transport.framing.Decoder`; see the module docstring)."""

    __slots__ = ("_frames", "who")

    def __init__(self, max_event_bytes: int, who: Who) -> None:
        self._frames = EventStreamDecoder(max_event_bytes)
        self.who = who

    def feed(self, chunk: bytes) -> list[Event]:
        return [self._unwrap(name, data) for name, data in self._frames.feed(chunk)]

    def end(self) -> list[Event]:
        return [self._unwrap(name, data) for name, data in self._frames.end()]

    def _unwrap(self, name: str | None, data: bytes) -> Event:
        who = self.who
        if name is not None and name.startswith(EXCEPTION):
            raise stream_exception(name[len(EXCEPTION) :], data, who)
        try:
            payload = orjson.loads(data)
            event = base64.b64decode(payload["bytes"], validate=True)
        except (orjson.JSONDecodeError, TypeError, KeyError, binascii.Error, ValueError):
            raise bad(who, f"a {name} message that is not a base64 chunk", data) from None
        try:
            kind = orjson.loads(event).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            raise bad(who, "a chunk whose event is not a JSON object", event) from None
        return (kind if isinstance(kind, str) else None), event
