"""What a model call returns: a whole answer, or a stream of chunks."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["CONTENT", "SKIP", "Metadata", "ModelResponse", "ModelStreamResponse"]


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


def _as_metadata(value: Any) -> Metadata:
    if isinstance(value, Metadata):
        return value
    if value is None:
        return Metadata()
    if isinstance(value, dict):
        return Metadata(value)
    raise TypeError(f"metadata must be a dict, got {type(value).__name__}")


class _Response:
    response_type: str | None
    metadata: Metadata

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
        self.response_type = None
        self.metadata = Metadata()
        self.raw: Any = None

    def add(self, data: Any) -> None:
        self.data = data

    def consume(self) -> Any:
        return self.data

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


class ModelStreamResponse(_Response):
    """A streamed answer, read once, from sync or async code.

    ``for chunk in resp`` (sync) or ``async for chunk in resp.consume()`` (msgflux's form).
    Chunks come either from a *source* iterator of view items, from a built-in provider's
    stream of ``(canonical chunk, view item)`` pairs (:meth:`set_pairs`: :meth:`chunks` /
    :meth:`achunks` then read the canonical OpenAI chunks instead), or from a producer
    calling :meth:`add` and finally ``add(None)`` (msgflux's push style). ``metadata``
    (``usage``, ``finish_reason``) is complete once the stream has ended.

    A stream from an async source belongs to the event loop that opened it: read from another
    loop (a second ``asyncio.run()``), it raises ``RuntimeError`` at once rather than return a
    truncated answer.
    """

    def __init__(self, source: Iterator[Any] | AsyncIterator[Any] | None = None) -> None:
        self.response_type = None
        self.metadata = Metadata()
        self.data: Any = None
        self._source: Iterator[Pair] | AsyncIterator[Pair] | None = None
        self._closer: Any = None
        self._is_async = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._head: deque[Pair] = deque()
        self._finished = False
        self._pushed: deque[Any] = deque()
        self._push_error: BaseException | None = None
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

    @property
    def is_async(self) -> bool:
        """True when the chunks come from an async source (read it with ``consume()``)."""
        return self._is_async

    # -- push side (msgflux style) ---------------------------------------------------------
    def add(self, data: Any) -> None:
        """Push one chunk; ``add(None)`` ends the stream. Safe from any thread."""
        self._push(_END if data is None else (None, data))

    def add_pair(self, chunk: Any, item: Any) -> None:
        """Push a canonical chunk with its view item (providers that push, like the local one)."""
        self._push((chunk, item))

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error that consumers will see raised."""
        self._push_error = exc
        self._push(_END)

    def _push(self, entry: Any) -> None:
        with self._cond:
            self._pushed.append(entry)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    def _pop_pushed(self) -> Any:
        entry = self._pushed.popleft()
        if entry is _END:
            self._pushed.appendleft(_END)
            if self._push_error is not None:
                raise self._push_error
        return entry

    # -- pulling ----------------------------------------------------------------------------
    def _pull(self) -> Any:
        """The next pair from the source (not the head), or _END."""
        if self._finished:
            return _END
        source = self._source
        if source is None:
            with self._cond:
                while not self._pushed:
                    self._cond.wait()
                pair = self._pop_pushed()
        elif self._is_async:
            raise TypeError(
                "this stream comes from an async call; read it with "
                "`async for chunk in response.consume()`"
            )
        else:
            pair = next(source, _END)  # type: ignore[arg-type]
        if pair is _END:
            self._finished = True
        return pair

    async def _apull(self) -> Any:
        if self._finished:
            return _END
        source = self._source
        if source is None:
            while True:
                with self._cond:
                    if self._pushed:
                        pair = self._pop_pushed()
                        break
                    loop = asyncio.get_running_loop()
                    fut: asyncio.Future[None] = loop.create_future()
                    self._waiters.append((loop, fut))
                await fut
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
        else:
            pair = await asyncio.to_thread(next, source, _END)  # type: ignore[arg-type]
        if pair is _END:
            self._finished = True
        return pair

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
        if not self._is_async:
            for target in (self._source, self._closer):
                close = getattr(target, "close", None)
                if close is not None:
                    close()

    async def aclose(self) -> None:
        """Stop reading and release the connection behind the stream."""
        self._finished = True
        if self._is_async:
            for target in (self._source, self._closer):
                aclose = getattr(target, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"ModelStreamResponse(response_type={self.response_type!r})"


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
