"""What the raw gateway path returns: the canonical answer and who gave it.

``gateway.complete(request)`` returns a :class:`RawAnswer` (the OpenAI-shaped JSON answer,
every upstream field kept) or, for a stream, a :class:`RawStream` of OpenAI chunk dicts. Both
say which deployment answered and carry the attempt records, which is what a server puts in
its ``x-msgflux-*`` headers, and the call's :class:`~msgflux.models.gateway.record.CallRecord`
(``record``; a stream's once it ended) for its access log and metrics. A user-written
model's msgflux answer is translated into the canonical form (ids, ``created``, ``usage``,
``finish_reason``, tool calls).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from msgflux.exceptions import Attempt
from msgflux.models.chat import chunk_of, completion_of
from msgflux.models.gateway.record import CallRecord, StreamEnd
from msgflux.models.request import CHAT, Request
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.views import canonical_of

__all__ = ["RawAnswer", "RawStream"]


class _Answered:
    __slots__ = (
        "_gateway",
        "attempts",
        "deployment",
        "model_id",
        "provider",
        "request_id",
        "response",
    )

    def __init__(self, response: Any, gateway: dict[str, Any], attempts: list[Attempt]) -> None:
        self.response = response
        self._gateway = gateway
        self.deployment: str = gateway["model_name"]
        """The ``model_name`` of the deployment that answered."""
        self.attempts = attempts
        """One :class:`~msgflux.exceptions.Attempt` per call or skip, in order."""
        last = attempts[-1]
        self.provider = last.provider
        self.model_id = last.model_id
        meta = getattr(response, "metadata", None) or {}
        self.request_id: str | None = meta.get("request_id") if isinstance(meta, dict) else None
        """The upstream's request id, when it sent one."""

    @property
    def fallbacks(self) -> list[str]:
        return list(self._gateway["fallbacks"])

    @property
    def hedged(self) -> bool:
        return bool(self._gateway["hedged"])


class RawAnswer(_Answered):
    """A whole canonical answer: ``body`` (a dict; bytes for speech)."""

    __slots__ = ("body", "record")

    def __init__(
        self,
        response: ModelResponse,
        req: Request,
        gateway: dict[str, Any],
        attempts: list[Attempt],
        record: Any = None,
    ) -> None:
        super().__init__(response, gateway, attempts)
        self.record: CallRecord | None = record
        """The call's record (tokens, cost, timings, attempts)."""
        if req.kind == CHAT:
            self.body: Any = completion_of(response, self.model_id)
        else:
            self.body = canonical_of(req, response, self.model_id)


class RawStream(_Answered):
    """A canonical stream: iterate it (``for`` or ``async for``) for OpenAI chunk dicts.

    Chunks are relayed as the deployment sends them; a user-written model's text chunks are
    wrapped in chunk dicts, followed by a finish chunk (and a usage chunk when the request
    asked with ``stream_options.include_usage``).
    """

    __slots__ = ("_created", "_end", "_id", "_include_usage", "_stream")

    def __init__(
        self,
        stream: ModelStreamResponse,
        req: Request,
        gateway: dict[str, Any],
        attempts: list[Attempt],
        end: Any = None,
    ) -> None:
        super().__init__(stream, gateway, attempts)
        self._stream = stream
        self._end: StreamEnd | None = end
        self._id = f"chatcmpl-msgflux-{time.monotonic_ns():x}"
        self._created = int(time.time())
        options = req.body.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def _wrap(self, item: Any) -> dict[str, Any]:
        return chunk_of(item, self.model_id, self._id, self._created)

    def _tail(self, synthesized: bool) -> list[dict[str, Any]]:
        if not synthesized:
            return []
        meta = self._stream.metadata
        finish = meta.get("finish_reason") or (
            "tool_calls" if isinstance(self._stream.data, list) else "stop"
        )
        tail = [chunk_of(None, self.model_id, self._id, self._created, finish_reason=finish)]
        if self._include_usage:
            usage = meta.get("usage")
            tail.append(
                {**tail[0], "choices": [], "usage": usage if isinstance(usage, dict) else None}
            )
        return tail

    def _chunk(self, chunk: Any, item: Any, seen: list[bool]) -> dict[str, Any] | None:
        """The canonical chunk for a pair: the provider's own, else one wrapping a user
        model's text (a provider's final tool-call list already went out as deltas)."""
        if chunk is not None:
            seen[0] = True
            return chunk  # type: ignore[no-any-return]
        if not seen[0] and isinstance(item, (str, list)):
            seen[1] = True
            return self._wrap(item)
        return None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        seen = [False, False]  # [a provider chunk went out, a chunk was synthesized]
        for chunk, item in self._stream.pairs():
            out = self._chunk(chunk, item, seen)
            if out is not None:
                yield out
        yield from self._tail(seen[1])

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        seen = [False, False]
        async for chunk, item in self._stream.apairs():
            out = self._chunk(chunk, item, seen)
            if out is not None:
                yield out
        for tail in self._tail(seen[1]):
            yield tail

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def metadata(self) -> Any:
        """``usage``, ``finish_reason`` and ``gateway`` (complete once the stream ended)."""
        return self._stream.metadata

    @property
    def record(self) -> CallRecord | None:
        """The call's record, once the stream ended (finished, broke or was closed)."""
        return None if self._end is None else self._end.record
