"""What a model call returns: a whole answer, or a stream of chunks.

Both follow msgflux's API (``msgflux.models.response``): ``data``/``consume()``, ``metadata``
(None until set), ``reasoning`` and ``reasoning_summary``; a stream is also written the
msgflux way, by a producer pushing chunks (:meth:`ModelStreamResponse.add`,
``add_reasoning``, ``add_reasoning_summary``, then ``finish()``), and read chunk by chunk,
by channel (``consume``, ``consume_reasoning``, ``consume_reasoning_summary``) or as one
ordered journal of :class:`LMStreamEvent` (``consume_events``). The gateway's own streams are
pulled from a source instead (``set_source``/``set_pairs``), and read the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from msgflux.chat_stream_accumulator import ChatStreamAccumulator

__all__ = [
    "CONTENT",
    "SKIP",
    "LMStreamEvent",
    "Metadata",
    "ModelResponse",
    "ModelStreamResponse",
    "StreamFinalState",
    "metadata_of",
]

Status = Literal["completed", "failed", "interrupted"]


@dataclasses.dataclass(frozen=True)
class StreamFinalState:
    """How a stream ended, handed to its finalizers once (:meth:`ModelStreamResponse.finish`)."""

    status: Status
    response_type: str | None
    output: Any
    reasoning: str | None
    reasoning_summary: str | None
    metadata: Any
    error: BaseException | None
    items: list[dict[str, Any]]
    """The answer as conversation history items (:class:`ChatStreamAccumulator`)."""


@dataclasses.dataclass(frozen=True)
class LMStreamEvent:
    """One piece of a stream, in the order the model produced it."""

    type: Literal["output.delta", "reasoning.delta", "reasoning_summary.delta"]
    data: Any


class Metadata(dict[str, Any]):
    """A dict whose keys read as attributes too: ``response.metadata.usage``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def metadata_of(response: Any) -> Any:
    """``response.metadata``, made a :class:`Metadata` first while it is None (a response
    starts without metadata, as in msgflux)."""
    meta = getattr(response, "metadata", None)
    if meta is None:
        meta = Metadata()
        response.metadata = meta
    return meta


def _as_metadata(value: Any) -> Metadata | None:
    if isinstance(value, Metadata) or value is None:
        return value
    if isinstance(value, dict):
        return Metadata(value)
    raise TypeError(f"metadata must be a dict, got {type(value).__name__}")


class _Response:
    response_type: str | None
    metadata: Any
    """None until set; a :class:`Metadata` once a provider or a gateway set it."""

    def set_response_type(self, response_type: str) -> None:
        if not isinstance(response_type, str):
            raise TypeError(f"response_type must be a str, got {type(response_type).__name__}")
        self.response_type = response_type

    def set_metadata(self, metadata: dict[str, Any] | None) -> None:
        self.metadata = _as_metadata(metadata)


class ModelResponse(_Response):
    """A complete answer: ``data`` plus ``metadata`` (``usage``, and ``gateway`` when routed).

    ``raw`` is the canonical answer it was built from (an OpenAI-shaped dict, every upstream
    field kept) when a built-in provider produced it, else None.

    >>> r = ModelResponse(); r.set_response_type("text_generation"); r.add("hi")
    >>> r.consume()
    'hi'
    """

    def __init__(self) -> None:
        self.data: Any = None
        self.reasoning: str | None = None
        self.reasoning_summary: str | None = None
        self.response_type = None
        self.metadata = None
        self.raw: Any = None

    @property
    def has_reasoning(self) -> bool:
        return self.reasoning is not None

    @property
    def has_reasoning_summary(self) -> bool:
        return self.reasoning_summary is not None

    def add(self, data: Any) -> None:
        self.data = data

    def consume(self) -> Any:
        return self.data

    def consume_reasoning(self) -> str | None:
        return self.reasoning

    def consume_reasoning_summary(self) -> str | None:
        """A provider's summary of its reasoning (kept apart from the reasoning itself)."""
        return self.reasoning_summary

    def __repr__(self) -> str:
        return f"ModelResponse(response_type={self.response_type!r}, data={self.data!r})"


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_END: Any = _Sentinel("END")
SKIP: Any = _Sentinel("SKIP")
"""A chunk without content (a keep-alive, a role-only or usage-only chunk)."""
CONTENT: Any = _Sentinel("CONTENT")
"""A chunk with content but nothing for msgflux's view (a tool-call delta, reasoning)."""

Pair = tuple[Any, Any]
"""``(canonical chunk or None, view item)``: what a stream is made of internally."""


def _as_pairs(source: Iterator[Any]) -> Iterator[Pair]:
    for item in source:
        yield None, item


async def _aas_pairs(source: AsyncIterator[Any]) -> AsyncIterator[Pair]:
    async for item in source:
        yield None, item


End = Callable[[BaseException | None], None]
"""Told once how a tapped stream ended: None (finished) or its error (``GeneratorExit``:
its reader left)."""


def _tapped(source: Iterator[Pair], see: Callable[[Pair], None], end: End) -> Iterator[Pair]:
    try:
        for pair in source:
            see(pair)
            yield pair
    except BaseException as exc:
        end(exc)
        raise
    end(None)


async def _atapped(
    source: AsyncIterator[Pair], see: Callable[[Pair], None], end: End
) -> AsyncIterator[Pair]:
    try:
        async for pair in source:
            see(pair)
            yield pair
    except BaseException as exc:
        end(exc)
        raise
    end(None)


class ModelStreamResponse(_Response):
    """A streamed answer, read once, from sync or async code.

    ``for chunk in resp`` (sync) or ``async for chunk in resp.consume()`` (msgflux's form).
    Chunks come either from a *source* iterator of view items, from a built-in provider's
    stream of ``(canonical chunk, view item)`` pairs (:meth:`set_pairs`: :meth:`chunks` /
    :meth:`achunks` then read the canonical OpenAI chunks instead), or from a producer
    pushing them (msgflux's style: :meth:`add` text or bytes, :meth:`add_reasoning`,
    :meth:`add_reasoning_summary`, then :meth:`finish`, or ``add(None)``). ``metadata``
    (``usage``, ``finish_reason``) is complete once the stream has ended.

    A pushed stream keeps what no reader has taken yet per channel (``_pending_chunks``,
    ``_reasoning_pending_chunks``, ...; ``None`` marks a channel's end), the text or bytes of
    its content in ``data`` (one kind per stream: mixing them is a ``TypeError``), its history
    items in ``chat_accumulator``, and runs its finalizers once when it finishes
    (:meth:`add_finalizer`, :class:`StreamFinalState`). ``mode`` says whether its events
    (``first_chunk_event``, ``reasoning_summary_event``) are threading or asyncio events.

    A stream from an async source belongs to the event loop that opened it: read from another
    loop (a second ``asyncio.run()``), it raises ``RuntimeError`` at once rather than return a
    truncated answer.
    """

    def __init__(
        self,
        source: Iterator[Any] | AsyncIterator[Any] | str | None = None,
        *,
        mode: str = "sync",
    ) -> None:
        if isinstance(source, str):  # msgflux's ModelStreamResponse("async")
            mode, source = source, None
        if mode not in ("sync", "async"):
            raise ValueError("`mode` must be `sync` or `async`")
        self.mode = mode
        event: Any = asyncio.Event if mode == "async" else threading.Event
        self.first_chunk_event = event()
        self.reasoning_summary_event = event()
        self.response_type = None
        self.metadata = None
        self.data: Any = None
        self.reasoning: str | None = None
        self.reasoning_summary: str | None = None
        self.has_reasoning = False
        self.has_reasoning_summary = False
        self.error: BaseException | None = None
        self.chat_accumulator = ChatStreamAccumulator()
        self._source: Iterator[Pair] | AsyncIterator[Pair] | None = None
        self._closer: Any = None
        self._is_async = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._head: deque[Pair] = deque()
        self._finished = False
        self._pending_chunks: deque[Any] = deque()
        self._reasoning_pending_chunks: deque[Any] = deque()
        self._reasoning_summary_pending_chunks: deque[Any] = deque()
        self._closed: set[str] = set()
        """Channels that ended: "content", "reasoning", "summary", "events"."""
        self._events: list[LMStreamEvent] = []
        self._finalizers: list[Callable[[StreamFinalState], None]] = []
        self._status: Status | None = None
        """Set once :meth:`finish` ran."""
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if source is not None:
            self.set_source(source)

    def set_source(self, source: Iterator[Any] | AsyncIterator[Any]) -> None:
        """Take view items (text chunks) from *source* (a sync or async iterator)."""
        if isinstance(source, AsyncIterator):
            self._set(_aas_pairs(source), source, True)
        else:
            self._set(_as_pairs(source), source, False)

    def set_pairs(self, source: Iterator[Pair] | AsyncIterator[Pair]) -> None:
        """Take ``(canonical chunk, view item)`` pairs from *source* (built-in providers)."""
        self._set(source, source, hasattr(source, "__anext__"))

    def _set(self, pairs: Any, closer: Any, is_async: bool) -> None:
        self._source = pairs
        self._closer = closer
        self._is_async = is_async
        if is_async:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None

    def tap(self, see: Callable[[Pair], None], end: End) -> None:
        """Show ``see`` each ``(chunk, item)`` pair the stream gives (those read already
        first) and tell ``end`` once how it ended (see :data:`End`). What a response cache
        keeps of a stream; neither may raise. A pushed stream (no source) cannot be tapped."""
        source = self._source
        if source is None:
            raise TypeError("a stream fed with add() cannot be tapped")
        for pair in self._head:
            see(pair)
        if self._is_async:
            self._source = _atapped(source, see, end)  # type: ignore[arg-type]
        else:
            self._source = _tapped(source, see, end)  # type: ignore[arg-type]

    @property
    def is_async(self) -> bool:
        """True when the chunks come from an async source (read it with ``consume()``)."""
        return self._is_async

    # -- push side (msgflux style) ---------------------------------------------------------
    def add(self, data: Any, *, accumulate_history: bool = True) -> None:
        """Push one content chunk (``str`` or ``bytes``); ``add(None)`` ends the content.
        Safe from any thread; a chunk after the end raises ``RuntimeError``."""
        if data is None:
            self._close("content", self._pending_chunks)
            return
        self._signal_first()
        try:
            self._accumulate(data)
        except TypeError as exc:
            self._stop(exc)
            raise
        if accumulate_history and isinstance(data, str):
            self.chat_accumulator.add_text(data)
        self._put("content", self._pending_chunks, data, "output.delta")

    def add_pair(self, chunk: Any, item: Any) -> None:
        """Push a canonical chunk with its view item (providers that push, like the local one)."""
        self._signal_first()
        self._put("content", self._pending_chunks, (chunk, item), None)

    def add_reasoning(
        self, data: Any, *, history_kind: str = "text", item_id: str | None = None
    ) -> None:
        """Push a chunk of the model's reasoning (read with :meth:`consume_reasoning`)."""
        if data is not None:
            if history_kind == "summary":
                self.chat_accumulator.add_reasoning(summary=str(data), item_id=item_id)
            else:
                self.chat_accumulator.add_reasoning(str(data), item_id=item_id)
            self.has_reasoning = True
        self._signal_first()
        self._put("reasoning", self._reasoning_pending_chunks, data, "reasoning.delta")

    def add_reasoning_summary(self, data: Any, *, item_id: str | None = None) -> None:
        """Push a chunk of a summary of the reasoning, kept apart from the reasoning."""
        if data is not None:
            self.chat_accumulator.add_reasoning(summary=str(data), item_id=item_id)
            self.has_reasoning_summary = True
            _set_event(self.reasoning_summary_event)
        self._signal_first()
        self._put(
            "summary", self._reasoning_summary_pending_chunks, data, "reasoning_summary.delta"
        )

    def finish_reasoning(self) -> None:
        """End the reasoning channel (the content may go on)."""
        self._close("reasoning", self._reasoning_pending_chunks)

    def finish_reasoning_summary(self) -> None:
        self._close("summary", self._reasoning_summary_pending_chunks)
        _set_event(self.reasoning_summary_event)

    def set_error(self, error: BaseException) -> None:
        """The error readers will see raised when they reach the end."""
        self.error = error
        _set_event(self.first_chunk_event)

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error that consumers will see raised."""
        self.finish(error=exc)

    def finish(self, *, error: BaseException | None = None, status: Status | None = None) -> None:
        """End every channel and run the finalizers, once (later calls do nothing)."""
        if self._status is not None:
            return
        if error is not None:
            self.set_error(error)
        self._stop(None, status)

    def add_finalizer(self, finalizer: Callable[[StreamFinalState], None]) -> None:
        """Call ``finalizer`` once with the :class:`StreamFinalState` when the stream
        finishes (at once when it already has)."""
        with self._cond:
            if self._status is None:
                self._finalizers.append(finalizer)
                return
        finalizer(self._final_state())

    def _stop(self, error: BaseException | None, status: Status | None = None) -> None:
        if error is not None:
            self.set_error(error)
        _set_event(self.first_chunk_event)
        self._close("reasoning", self._reasoning_pending_chunks)
        self.finish_reasoning_summary()
        self._close("content", self._pending_chunks)
        self._close("events", None)
        with self._cond:
            if self._status is not None:
                return
            self._status = status or ("failed" if self.error is not None else "completed")
            finalizers, self._finalizers = self._finalizers, []
        state = self._final_state()
        for finalizer in finalizers:
            finalizer(state)

    def _final_state(self) -> StreamFinalState:
        assert self._status is not None
        return StreamFinalState(
            status=self._status,
            response_type=self.response_type,
            output=self.data,
            reasoning=self.reasoning,
            reasoning_summary=self.reasoning_summary,
            metadata=self.metadata,
            error=self.error,
            items=self.chat_accumulator.snapshot(self.data, self.reasoning),
        )

    def _accumulate(self, data: Any) -> None:
        if not isinstance(data, (str, bytes)):
            raise TypeError(
                "ModelStreamResponse only supports `str` or `bytes` chunks, "
                f"got `{type(data).__name__}`."
            )
        current: Any = self.data
        piece: Any = data
        if current is None:
            self.data = piece
        elif type(current) is type(piece):
            # Let go of the attribute's reference first: CPython then grows a str in place
            # (amortised linear), where `self.data = current + piece` copied it every chunk.
            self.data = None
            current += piece
            self.data = current
        else:
            raise TypeError(
                "ModelStreamResponse received mixed chunk types: "
                f"`{type(current).__name__}` then `{type(data).__name__}`."
            )

    def _signal_first(self) -> None:
        event = self.first_chunk_event
        if not event.is_set():
            _set_event(event)

    def _put(self, channel: str, pending: deque[Any], data: Any, kind: Any) -> None:
        with self._cond:
            if channel in self._closed:
                raise RuntimeError(f"Cannot add a {channel} chunk to a closed stream.")
            pending.append(data)
            if kind is not None and data is not None:
                self._events.append(LMStreamEvent(type=kind, data=data))
        self._wake()

    def _close(self, channel: str, pending: deque[Any] | None) -> None:
        with self._cond:
            if channel in self._closed:
                return
            self._closed.add(channel)
            if pending is not None:
                pending.append(None)
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)

    async def _await_push(self, ready: Callable[[], bool]) -> None:
        """Wait (async) until ``ready()`` holds; a producer's push or close wakes us."""
        while True:
            with self._cond:
                if ready():
                    return
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), fut))
            await fut

    def _pop_pushed(self) -> Any:
        """The next pushed content pair, or _END (the end stays: readers see it again)."""
        entry = self._pending_chunks.popleft()
        if entry is None:
            self._pending_chunks.appendleft(None)
            if self.error is not None:
                raise self.error
            return _END
        return entry if type(entry) is tuple else (None, entry)

    # -- pulling ----------------------------------------------------------------------------
    def _pull(self) -> Any:
        """The next pair from the source (not the head), or _END."""
        if self._finished:
            return _END
        source = self._source
        if source is None:
            with self._cond:
                while not self._pending_chunks:
                    self._cond.wait()
                pair = self._pop_pushed()
        elif self._is_async:
            raise TypeError(
                "this stream comes from an async call; read it with "
                "`async for chunk in response.consume()`"
            )
        else:
            try:
                pair = next(source, _END)  # type: ignore[arg-type]
            except BaseException as exc:
                self._source_ended(exc)
                raise
            if pair is _END:
                self._source_ended(None)
        if pair is _END:
            self._finished = True
        return pair

    async def _apull(self) -> Any:
        if self._finished:
            return _END
        source = self._source
        if source is None:
            await self._await_push(lambda: bool(self._pending_chunks))
            with self._cond:
                pair = self._pop_pushed()
        elif self._is_async:
            if self._loop is not None and asyncio.get_running_loop() is not self._loop:
                self._finished = True
                raise RuntimeError(
                    "this stream was opened in another event loop (another asyncio.run()); "
                    "read it inside the loop that made the call"
                )
            try:
                pair = await source.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                pair = _END
            except BaseException as exc:
                self._source_ended(exc)
                raise
        else:
            try:
                pair = await asyncio.to_thread(next, source, _END)  # type: ignore[arg-type]
            except BaseException as exc:
                self._source_ended(exc)
                raise
        if pair is _END and source is not None:
            self._source_ended(None)
        if pair is _END:
            self._finished = True
        return pair

    def _source_ended(self, how: BaseException | None) -> None:
        """A pulled stream's source ended (None) or failed: channels closed and finalizers
        run, as a pushed stream's :meth:`finish` does (a reader that left: "interrupted")."""
        if self._status is not None:
            return
        reasoning = (self.metadata or {}).get("reasoning")
        if self.reasoning is None and isinstance(reasoning, str):
            self.reasoning, self.has_reasoning = reasoning, True
        if how is None or isinstance(how, Exception):
            self._stop(how)
        else:
            self._stop(None, "interrupted")

    def _next_pair(self) -> Any:
        return self._head.popleft() if self._head else self._pull()

    async def _anext_pair(self) -> Any:
        return self._head.popleft() if self._head else await self._apull()

    def first_chunk(self) -> bool:
        """Wait (sync) for the first chunk with content; False if the stream ended without one.

        Chunks without content (keep-alives, role-only deltas) read on the way are kept for
        the reader. Errors raised before the first content propagate, which is what lets a
        gateway fall back before committing to a deployment.
        """
        if any(pair[1] is not SKIP for pair in self._head):
            return True
        while (pair := self._pull()) is not _END:
            self._head.append(pair)
            if pair[1] is not SKIP:
                return True
        return False

    async def afirst_chunk(self) -> bool:
        """Async form of :meth:`first_chunk`."""
        if any(pair[1] is not SKIP for pair in self._head):
            return True
        while (pair := await self._apull()) is not _END:
            self._head.append(pair)
            if pair[1] is not SKIP:
                return True
        return False

    def pairs(self) -> Iterator[Pair]:
        """Every ``(canonical chunk or None, view item)`` pair (what gateways relay)."""
        try:
            while (pair := self._next_pair()) is not _END:
                yield pair
        finally:
            self.close()

    async def apairs(self) -> AsyncIterator[Pair]:
        try:
            while (pair := await self._anext_pair()) is not _END:
                yield pair
        finally:
            await self.aclose()

    def __iter__(self) -> Iterator[Any]:
        for _, item in self.pairs():
            if item is not SKIP and item is not CONTENT:
                yield item

    async def consume(self) -> AsyncIterator[Any]:
        """Async generator of the chunks (msgflux's view: text, then tool calls if any)."""
        async for _, item in self.apairs():
            if item is not SKIP and item is not CONTENT:
                yield item

    async def next_chunk(self) -> Any:
        """The next chunk, or None at the end (a stored error is raised there)."""
        while (pair := await self._anext_pair()) is not _END:
            if pair[1] is not SKIP and pair[1] is not CONTENT:
                return pair[1]
        return None

    async def consume_reasoning(self) -> AsyncIterator[Any]:
        """Async generator of the reasoning chunks, until the reasoning ends. On a pulled
        stream (a gateway's or a provider's) it reads ahead, keeping every chunk for
        :meth:`consume`: read the reasoning first."""
        if self._source is None:
            async for chunk in self._drain(self._reasoning_pending_chunks):
                yield chunk
            return
        for pair in list(self._head):
            if (text := _reasoning_of(pair[0])) is not None:
                yield text
        while (pair := await self._apull()) is not _END:
            self._head.append(pair)
            if (text := _reasoning_of(pair[0])) is not None:
                yield text

    async def consume_reasoning_summary(self) -> AsyncIterator[Any]:
        """Async generator of the pushed reasoning-summary chunks (a pulled stream has none)."""
        if self._source is None:
            async for chunk in self._drain(self._reasoning_summary_pending_chunks):
                yield chunk

    async def _drain(self, pending: deque[Any]) -> AsyncIterator[Any]:
        while True:
            await self._await_push(lambda: bool(pending))
            with self._cond:
                chunk = pending.popleft()
                if chunk is None:
                    pending.appendleft(None)
            if chunk is None:
                if self.error is not None:
                    raise self.error
                return
            yield chunk

    async def consume_events(self) -> AsyncIterator[LMStreamEvent]:
        """Every pushed chunk of every channel as an :class:`LMStreamEvent`, in the order
        they were pushed (readers each get the whole journal, from its start)."""
        seen = 0
        while True:
            await self._await_push(
                lambda n=seen: n < len(self._events) or "events" in self._closed  # type: ignore[misc]
            )
            with self._cond:
                fresh = self._events[seen:]
                over = "events" in self._closed
            seen += len(fresh)
            for event in fresh:
                yield event
            if over and seen == len(self._events):
                if self.error is not None:
                    raise self.error
                return

    def chunks(self) -> Iterator[Any]:
        """The canonical OpenAI chunk dicts (built-in providers' streams only)."""
        for chunk, _ in self.pairs():
            if chunk is not None:
                yield chunk

    async def achunks(self) -> AsyncIterator[Any]:
        async for chunk, _ in self.apairs():
            if chunk is not None:
                yield chunk

    def close(self) -> None:
        """Stop reading and release the connection behind the stream (sync sources)."""
        self._finished = True
        if self._source is not None:
            self._source_ended(GeneratorExit())
        if not self._is_async:
            for target in (self._source, self._closer):
                close = getattr(target, "close", None)
                if close is not None:
                    close()

    async def aclose(self) -> None:
        """Stop reading and release the connection behind the stream."""
        self._finished = True
        if self._source is not None:
            self._source_ended(GeneratorExit())
        if self._is_async:
            for target in (self._source, self._closer):
                aclose = getattr(target, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"ModelStreamResponse(response_type={self.response_type!r})"


def _reasoning_of(chunk: Any) -> str | None:
    """The reasoning text of a canonical (OpenAI) chunk, if it carries any."""
    if type(chunk) is not dict:
        return None
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if type(choice) is dict else None
        if type(delta) is dict:
            text = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(text, str) and text:
                return text
    return None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_event(event: Any) -> None:
    if not event.is_set():
        event.set()
