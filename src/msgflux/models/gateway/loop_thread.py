"""An event loop on a daemon thread: lets the sync driver run the async hedged race, so that
losers can really be cancelled (connections closed), and read its stream from plain ``for``.

Several sync callers share the one loop, which only multiplexes I/O (a model that only has a
sync ``__call__`` runs in the loop's thread pool, as ``acall`` always does).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from msgflux.models.native import NativeStream
from msgflux.models.response import ModelStreamResponse, Pair

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """See the module docstring; ``close()`` stops the thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="msgflux-gateway-loop", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def bridge(self, result: Any) -> Any:
        """A stream produced on the loop, readable with a plain ``for`` from the caller."""
        if isinstance(result, NativeStream) and result.is_async:
            result.bridge(self.run)
            return result
        if not isinstance(result, ModelStreamResponse) or not result.is_async:
            return result
        pairs = result.apairs()

        async def pull() -> Pair:
            return await pairs.__anext__()

        out = ModelStreamResponse()

        def source() -> Iterator[Pair]:
            try:
                while True:
                    try:
                        yield self.run(pull())
                    except StopAsyncIteration:
                        out.response_type = result.response_type
                        out.data = result.data
                        return
            finally:
                closing = pairs.aclose()  # type: ignore[attr-defined]
                if self.loop.is_closed():
                    closing.close()
                elif threading.current_thread() is self._thread:
                    self.loop.create_task(closing)  # never wait on our own loop
                else:
                    self.run(closing)

        out.set_pairs(source())
        out.response_type = result.response_type
        out.metadata = result.metadata
        return out

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
