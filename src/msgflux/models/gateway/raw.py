"""What the raw gateway path returns: the answer in the request's API family, and who gave it.

``gateway.complete(request)`` returns a :class:`RawAnswer` or, for a stream, a
:class:`RawStream`. Both say which deployment answered and carry the attempt records (what a
server puts in its ``x-msgflux-*`` headers), the fields a translation dropped, and the call's
:class:`~msgflux.models.gateway.record.CallRecord` (``record``; a stream's once it ended).

The answer is in the family the request came in (OpenAI chat unless it said otherwise):

* on a native lane (the deployment speaks that family) it is the upstream's own answer:
  :meth:`RawAnswer.json` gives its bytes and :meth:`RawStream.sse` its events as they arrive,
  with only ``model`` renamed;
* on a translated lane it is the canonical answer put into the family's form
  (:mod:`msgflux.formats`); a user-written model's msgflux answer is first made canonical
  (ids, ``created``, ``usage``, ``finish_reason``, tool calls).

Iterating a stream (``for`` / ``async for``) gives the family's events as dicts (OpenAI chunk
dicts for a chat request).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from msgflux.exceptions import Attempt
from msgflux.formats import CHAT, Event, Family
from msgflux.models.chat import chunk_of, completion_of
from msgflux.models.gateway.record import CallRecord, StreamEnd
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.request import CHAT as CHAT_KIND
from msgflux.models.request import Request
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.views import canonical_of

__all__ = ["RawAnswer", "RawStream"]


class _Answered:
    __slots__ = (
        "_gateway",
        "attempts",
        "deployment",
        "family",
        "model_id",
        "provider",
        "request_id",
        "response",
    )

    def __init__(
        self, response: Any, gateway: dict[str, Any], attempts: list[Attempt], family: Family
    ) -> None:
        self.response = response
        self._gateway = gateway
        self.family = family
        """The API family of the request, which the answer is in."""
        self.deployment: str = gateway["model_name"]
        """The ``model_name`` of the deployment that answered."""
        self.attempts = attempts
        """One :class:`~msgflux.exceptions.Attempt` per call or skip, in order."""
        if attempts:
            self.provider = attempts[-1].provider
            self.model_id = attempts[-1].model_id
        else:  # answered by a wrapper (a cache hit): no deployment was called
            self.provider = "wrapper"
            self.model_id = self.deployment
        meta = getattr(response, "metadata", None) or {}
        self.request_id: str | None = meta.get("request_id") if isinstance(meta, dict) else None
        """The upstream's request id, when it sent one."""

    @property
    def fallbacks(self) -> list[str]:
        return list(self._gateway["fallbacks"])

    @property
    def hedged(self) -> bool:
        return bool(self._gateway["hedged"])

    @property
    def cache(self) -> str | None:
        """The response cache's verdict: ``"hit"``, ``"miss"`` or ``"bypass"`` (None: the
        gateway has no cache)."""
        return self._gateway.get("cache")

    @property
    def cache_age(self) -> float | None:
        """A cache hit: seconds since the deployment gave the answer."""
        return self._gateway.get("cache_age")

    @property
    def native(self) -> bool:
        """True when the deployment answered in the request's own family (a native lane)."""
        return isinstance(self.response, (NativeAnswer, NativeStream))

    @property
    def dropped(self) -> list[str]:
        """The request's fields a translation dropped (hints the deployment has no form for)."""
        meta = getattr(self.response, "metadata", None) or {}
        dropped = meta.get("dropped") if isinstance(meta, dict) else None
        return list(dropped) if dropped else []


class RawAnswer(_Answered):
    """A whole answer: ``body`` (a dict in the request's family; bytes for speech)."""

    __slots__ = ("_body", "record")

    def __init__(
        self,
        response: ModelResponse | NativeAnswer,
        req: Request,
        gateway: dict[str, Any],
        attempts: list[Attempt],
        record: Any = None,
        family: Family | None = None,
    ) -> None:
        fam = family or _chat()
        super().__init__(response, gateway, attempts, fam)
        self.record: CallRecord | None = record
        """The call's record (tokens, cost, timings, attempts)."""
        body: Any
        if isinstance(response, NativeAnswer):
            body = response.payload
        elif req.kind == CHAT_KIND:
            body = completion_of(response, self.model_id)
            if fam.name != CHAT:
                native = req.native
                body = fam.answer(body, self.model_id, native.body if native else None)
        else:
            body = canonical_of(req, response, self.model_id)
        self._body = body

    @property
    def body(self) -> Any:
        return self._body

    def json(self, model: str | None = None) -> bytes:
        """The answer's JSON naming ``model`` (None: as the deployment named it); a native
        answer keeps the upstream's bytes, only the name changed."""
        response = self.response
        if isinstance(response, NativeAnswer):
            return response.json(model)
        body = self._body
        if model is not None and isinstance(body, dict):
            self.family.rename_answer(body, model)
        return orjson.dumps(body)


class RawStream(_Answered):
    """A stream in the request's family (see the module docstring).

    :meth:`sse` gives its SSE bytes (what a server writes); iterating gives its events as
    dicts. A translated stream relays the deployment's chunks as they come; a user-written
    model's text chunks are wrapped in chunk dicts, followed by a finish chunk (and a usage
    chunk when the request asked with ``stream_options.include_usage``).
    """

    __slots__ = ("_created", "_end", "_id", "_include_usage", "_request", "_stream")

    def __init__(
        self,
        stream: ModelStreamResponse | NativeStream,
        req: Request,
        gateway: dict[str, Any],
        attempts: list[Attempt],
        end: Any = None,
        family: Family | None = None,
    ) -> None:
        super().__init__(stream, gateway, attempts, family or _chat())
        self._stream = stream
        self._request = req
        self._end: StreamEnd | CallRecord | None = end
        self._id = f"chatcmpl-msgflux-{time.monotonic_ns():x}"
        self._created = int(time.time())
        options = req.body.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    # -- the canonical chunks of a translated stream -------------------------------------------
    def _wrap(self, item: Any) -> dict[str, Any]:
        return chunk_of(item, self.model_id, self._id, self._created)

    def _tail(self, synthesized: bool) -> list[dict[str, Any]]:
        if not synthesized:
            return []
        stream = self._stream
        meta = stream.metadata or {}
        finish = meta.get("finish_reason") or (
            "tool_calls" if isinstance(getattr(stream, "data", None), list) else "stop"
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

    def chunks(self) -> Iterator[dict[str, Any]]:
        """The canonical (OpenAI) chunks of a translated stream."""
        stream = self._stream
        assert isinstance(stream, ModelStreamResponse), "a native stream has no chunks"
        seen = [False, False]  # [a provider chunk went out, a chunk was synthesized]
        for chunk, item in stream.pairs():
            out = self._chunk(chunk, item, seen)
            if out is not None:
                yield out
        yield from self._tail(seen[1])

    async def achunks(self) -> AsyncIterator[dict[str, Any]]:
        stream = self._stream
        assert isinstance(stream, ModelStreamResponse), "a native stream has no chunks"
        seen = [False, False]
        async for chunk, item in stream.apairs():
            out = self._chunk(chunk, item, seen)
            if out is not None:
                yield out
        for tail in self._tail(seen[1]):
            yield tail

    # -- the family's SSE ----------------------------------------------------------------------
    async def sse(self, model: str | None = None) -> AsyncIterator[bytes]:
        """The stream as its family's SSE bytes, naming ``model`` (None: the deployment's):
        a native stream's events as each upstream read brought them, a translated one's
        chunk by chunk. A stream that breaks ends with the family's error event, then the
        error is raised."""
        stream = self._stream
        native = self._request.native
        out = self.family.stream(
            model or self.model_id, self._include_usage, native.body if native else None
        )
        try:
            if isinstance(stream, NativeStream):
                if model is not None:
                    stream.rename(model)
                while (batch := await stream.aread()) is not None:
                    yield _encode(batch)
                return
            async for chunk in self.achunks():
                data = out.feed(chunk)
                if data:
                    yield data
            yield out.end()
        except Exception as exc:
            yield stream.relay.error(exc) if isinstance(stream, NativeStream) else out.error(exc)
            raise

    def sse_sync(self, model: str | None = None) -> Iterator[bytes]:
        """Sync form of :meth:`sse` (a stream from ``gateway.complete``)."""
        stream = self._stream
        native = self._request.native
        out = self.family.stream(
            model or self.model_id, self._include_usage, native.body if native else None
        )
        try:
            if isinstance(stream, NativeStream):
                if model is not None:
                    stream.rename(model)
                while (batch := stream.read()) is not None:
                    yield _encode(batch)
                return
            for chunk in self.chunks():
                data = out.feed(chunk)
                if data:
                    yield data
            yield out.end()
        except Exception as exc:
            yield stream.relay.error(exc) if isinstance(stream, NativeStream) else out.error(exc)
            raise

    # -- the family's events as dicts ----------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self._stream
        if self.family.name == CHAT and isinstance(stream, ModelStreamResponse):
            yield from self.chunks()
        elif isinstance(stream, NativeStream):
            while (batch := stream.read()) is not None:
                yield from _decoded(batch)
        else:
            for data in self.sse_sync():
                yield from _decoded(_events_of(data))

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        stream = self._stream
        if self.family.name == CHAT and isinstance(stream, ModelStreamResponse):
            async for chunk in self.achunks():
                yield chunk
        elif isinstance(stream, NativeStream):
            while (batch := await stream.aread()) is not None:
                for event in _decoded(batch):
                    yield event
        else:
            async for data in self.sse():
                for event in _decoded(_events_of(data)):
                    yield event

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
        """The call's record, once the stream ended (finished, broke or was closed); a
        replayed stream's (a cache hit) at once."""
        end = self._end
        if end is None or isinstance(end, CallRecord):
            return end
        return end.record


def _chat() -> Family:
    from msgflux.formats import family

    return family(CHAT)


def _encode(batch: list[Event]) -> bytes:
    """Relayed events as SSE, each as the upstream framed it (its name, its data)."""
    if len(batch) == 1:
        name, data = batch[0]
        if name is None:
            return b"data: " + data + b"\n\n"
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
    return b"".join(
        b"data: " + data + b"\n\n"
        if name is None
        else b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
        for name, data in batch
    )


def _events_of(data: bytes) -> list[Event]:
    from msgflux._transport import SSEDecoder

    decoder = SSEDecoder(max(len(data), 1) + 1)
    return decoder.feed(data) + decoder.end()


def _decoded(batch: list[Event]) -> Iterator[dict[str, Any]]:
    for _, data in batch:
        if data != b"[DONE]":
            yield orjson.loads(data)
