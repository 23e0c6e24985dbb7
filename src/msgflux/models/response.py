"""What a model call returns: a whole answer, or a stream of chunks."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["Metadata", "ModelResponse", "ModelStreamResponse"]


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

    >>> r = ModelResponse(); r.set_response_type("text_generation"); r.add("hi")
    >>> r.consume()
    'hi'
    """

    def __init__(self) -> None:
        self.data: Any = None
        self.response_type = None
        self.metadata = Metadata()

    def add(self, data: Any) -> None:
        self.data = data

    def consume(self) -> Any:
        return self.data

    def __repr__(self) -> str:
        return f"ModelResponse(response_type={self.response_type!r}, data={self.data!r})"


_END: Any = object()


class ModelStreamResponse(_Response):
    """A streamed answer, read once, from sync or async code.

    ``for chunk in resp`` (sync) or ``async for chunk in resp.consume()`` (msgflux's form).
    Chunks come either from a *source* iterator (what the built-in providers use) or from a
    producer calling :meth:`add` and finally ``add(None)`` (msgflux's push style).
    ``metadata`` (``usage``, ``finish_reason``) is complete once the stream has ended.
    """

    def __init__(self, source: Iterator[Any] | AsyncIterator[Any] | None = None) -> None:
        self.response_type = None
        self.metadata = Metadata()
        self.data: Any = None
        self._source: Iterator[Any] | AsyncIterator[Any] | None = None
        self._is_async = False
        self._head: deque[Any] = deque()
        self._finished = False
        self._pushed: deque[Any] = deque()
        self._push_error: BaseException | None = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if source is not None:
            self.set_source(source)

    def set_source(self, source: Iterator[Any] | AsyncIterator[Any]) -> None:
        """Take chunks from *source* (a sync or async iterator)."""
        self._source = source
        self._is_async = hasattr(source, "__anext__")

    @property
    def is_async(self) -> bool:
        """True when the chunks come from an async source (read it with ``consume()``)."""
        return self._is_async

    # -- push side (msgflux style) ---------------------------------------------------------
    def add(self, data: Any) -> None:
        """Push one chunk; ``add(None)`` ends the stream. Safe from any thread."""
        self._push(data)

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error that consumers will see raised."""
        self._push_error = exc
        self._push(None)

    def _push(self, item: Any) -> None:
        with self._cond:
            self._pushed.append(_END if item is None else item)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    def _pop_pushed(self) -> Any:
        item = self._pushed.popleft()
        if item is _END:
            self._pushed.appendleft(_END)
            if self._push_error is not None:
                raise self._push_error
        return item

    # -- pulling ----------------------------------------------------------------------------
    def _next(self) -> Any:
        if self._head:
            return self._head.popleft()
        if self._finished:
            return _END
        source = self._source
        if source is None:
            with self._cond:
                while not self._pushed:
                    self._cond.wait()
                item = self._pop_pushed()
        elif self._is_async:
            raise TypeError(
                "this stream comes from an async call; read it with "
                "`async for chunk in response.consume()`"
            )
        else:
            item = next(source, _END)  # type: ignore[arg-type]
        if item is _END:
            self._finished = True
        return item

    async def _anext(self) -> Any:
        if self._head:
            return self._head.popleft()
        if self._finished:
            return _END
        source = self._source
        if source is None:
            while True:
                with self._cond:
                    if self._pushed:
                        item = self._pop_pushed()
                        break
                    loop = asyncio.get_running_loop()
                    fut: asyncio.Future[None] = loop.create_future()
                    self._waiters.append((loop, fut))
                await fut
        elif self._is_async:
            try:
                item = await source.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                item = _END
        else:
            item = await asyncio.to_thread(next, source, _END)  # type: ignore[arg-type]
        if item is _END:
            self._finished = True
        return item

    def first_chunk(self) -> bool:
        """Wait (sync) for the first chunk; False if the stream ended without one.

        Errors raised before the first chunk propagate, which is what lets a gateway fall
        back before committing to a deployment.
        """
        item = self._next()
        if item is _END:
            return False
        self._head.appendleft(item)
        return True

    async def afirst_chunk(self) -> bool:
        """Async form of :meth:`first_chunk`."""
        item = await self._anext()
        if item is _END:
            return False
        self._head.appendleft(item)
        return True

    def __iter__(self) -> Iterator[Any]:
        try:
            while (item := self._next()) is not _END:
                yield item
        finally:
            self.close()

    async def consume(self) -> AsyncIterator[Any]:
        """Async generator of the chunks."""
        try:
            while (item := await self._anext()) is not _END:
                yield item
        finally:
            await self.aclose()

    def close(self) -> None:
        """Stop reading and release the connection behind the stream (sync sources)."""
        self._finished = True
        close = getattr(self._source, "close", None)
        if close is not None and not self._is_async:
            close()

    async def aclose(self) -> None:
        """Stop reading and release the connection behind the stream."""
        self._finished = True
        if self._is_async:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"ModelStreamResponse(response_type={self.response_type!r})"


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
