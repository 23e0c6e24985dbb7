"""In-process models for gateway tests: each answers from a script, no I/O.

Real provider behaviour is tested against tests/upstream.py; these models exercise the
gateway's own logic (order, retries, deadlines, streams) precisely and fast.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from msgflux.models.base import BaseModel
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel


class Scripted(BaseModel, ChatCompletionModel):
    """Pops one entry per call: an exception instance is raised, anything else is the answer.

    When the script runs out, ``default`` is used (an answer naming the model).
    ``chunks`` makes it stream: a list of str chunks, where an exception instance in the list
    is raised at that point of the stream.
    """

    provider = "fake"

    def __init__(
        self,
        model_id: str,
        script: Iterable[Any] = (),
        *,
        default: Any = None,
        delay: float = 0.0,
        chunks: list[Any] | None = None,
    ) -> None:
        self.model_id = model_id
        self.script = list(script)
        self.default = default
        self.delay = delay
        self.chunks = chunks
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _next(self, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self.calls.append(kwargs)
            item = self.script.pop(0) if self.script else self.default
        if isinstance(item, BaseException):
            raise item
        return item

    def _answer(self, item: Any, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("stream") and self.chunks is not None:
            resp = ModelStreamResponse(_chunks(self.chunks, kwargs))
            resp.set_response_type("text_generation")
            return resp
        resp = ModelResponse()
        resp.set_response_type("text_generation")
        resp.add(item if item is not None else f"answer from {self.model_id}")
        return resp

    def __call__(self, **kwargs: Any) -> Any:
        if self.delay:
            time.sleep(self.delay)
        return self._answer(self._next(kwargs), kwargs)

    async def acall(self, **kwargs: Any) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._answer(self._next(kwargs), kwargs)


def _chunks(chunks: list[Any], kwargs: dict[str, Any]) -> Iterator[Any]:
    for chunk in chunks:
        if isinstance(chunk, BaseException):
            raise chunk
        yield chunk


class SyncOnly(BaseModel, ChatCompletionModel):
    """Docs style: class attributes, no __init__, only __call__."""

    provider = "mock"
    model_id = "sync-only"

    def __call__(self, **kwargs: Any) -> Any:
        resp = ModelResponse()
        resp.set_response_type("text_generation")
        resp.add(f"sync-only: {kwargs.get('messages')}")
        return resp


class Embedder(BaseModel, TextEmbedderModel):
    provider = "mock"
    model_id = "embedder"

    def __call__(self, **kwargs: Any) -> Any:
        return ModelResponse()
