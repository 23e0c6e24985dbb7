"""The BaseModel contract in the three styles the msgflux docs use, and the response objects."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from msgflux.models.base import BaseModel
from msgflux.models.response import Metadata, ModelResponse, ModelStreamResponse
from msgflux.models.types import ChatCompletionModel, TextEmbedderModel


class BrokenModel(BaseModel, ChatCompletionModel):
    """Docs 1.2: class attributes and no ``__init__``."""

    provider = "mock"
    model_id = "broken-model"

    def _initialize(self) -> None:
        pass

    def __call__(self, **kwargs: Any) -> Any:
        raise RuntimeError("Simulate failure")


class MockChatCompletion(BaseModel, ChatCompletionModel):
    """Docs 1.3: an ``__init__`` that never calls ``super().__init__()``."""

    provider = "mock"

    def __init__(self, model_id: str, delay: float = 0.0) -> None:
        self.model_id = model_id
        self._delay = delay
        self._call_count = 0
        self.threads: list[int] = []

    def _initialize(self) -> None:
        pass

    def __call__(self, **kwargs: Any) -> ModelResponse:
        self.threads.append(threading.get_ident())
        if self._delay:
            time.sleep(self._delay)
        self._call_count += 1
        response = ModelResponse()
        response.set_response_type("text_generation")
        response.add(f"Response from {self.model_id} to {kwargs.get('messages')!r}")
        return response


class Embedder(BaseModel, TextEmbedderModel):
    """A conventional subclass: calls ``super().__init__()`` and keeps serializable state."""

    provider = "mock"

    def __init__(self, model_id: str, dims: int = 3) -> None:
        super().__init__()
        self.model_id = model_id
        self.sampling_run_params = {"dims": dims}

    def __call__(self, data: str = "", **kwargs: Any) -> ModelResponse:
        response = ModelResponse()
        response.set_response_type("text_embedding")
        response.add([0.0] * self.sampling_run_params["dims"])
        return response


def test_model_with_class_attributes_and_no_init() -> None:
    model = BrokenModel()
    assert model.get_model_info() == {"model_id": "broken-model", "provider": "mock"}
    assert model.model_type == "chat_completion"
    assert model.instance_type() == {"model_type": "chat_completion"}
    assert model.serialize() == {
        "msgflux_type": "model",
        "provider": "mock",
        "model_type": "chat_completion",
        "state": {"model_id": "broken-model"},
    }
    with pytest.raises(RuntimeError, match="Simulate failure"):
        model(messages="hi")


async def test_default_acall_propagates_errors_from_call() -> None:
    with pytest.raises(RuntimeError, match="Simulate failure"):
        await BrokenModel().acall(messages="hi")


def test_model_whose_init_skips_super() -> None:
    model = MockChatCompletion("model-A")
    response = model(messages="Hi")
    assert response.consume() == "Response from model-A to 'Hi'"
    assert model.get_model_info() == {"model_id": "model-A", "provider": "mock"}
    assert repr(model) == "MockChatCompletion(provider='mock', model_id='model-A')"


def test_conventional_subclass_round_trips_through_serialization() -> None:
    model = Embedder("e-1", dims=4)
    state = model.serialize()["state"]
    assert state == {"model_id": "e-1", "sampling_run_params": {"dims": 4}}
    restored = Embedder.from_serialized(state)
    assert isinstance(restored, Embedder)
    assert restored(data="x").consume() == [0.0] * 4


async def test_default_acall_runs_call_in_a_thread_without_blocking_the_loop() -> None:
    model = MockChatCompletion("slow", delay=0.2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    response = await model.acall(messages="hi")
    task.cancel()
    assert response.consume() == "Response from slow to 'hi'"
    assert model.threads[0] != threading.get_ident()
    assert ticks >= 5


async def test_default_single_attempt_paths_call_the_model() -> None:
    model = MockChatCompletion("m")
    assert model._call_once(messages="a").consume() == "Response from m to 'a'"
    assert (await model._acall_once(messages="b")).consume() == "Response from m to 'b'"
    assert model.supports_timeout is False


def test_from_serialized_rejects_a_state_that_is_not_a_dict() -> None:
    with pytest.raises(TypeError, match="state"):
        Embedder.from_serialized(["model_id"])  # type: ignore[arg-type]


# -- ModelResponse -----------------------------------------------------------------------------
def test_model_response_holds_data_type_and_metadata() -> None:
    response = ModelResponse()
    response.set_response_type("text_generation")
    response.add("hi")
    response.set_metadata({"usage": {"total_tokens": 3}})
    assert response.consume() == "hi"
    assert response.metadata.usage == {"total_tokens": 3}
    assert response.metadata["usage"]["total_tokens"] == 3
    with pytest.raises(AttributeError):
        _ = response.metadata.missing
    with pytest.raises(TypeError, match="response_type"):
        response.set_response_type(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata"):
        response.set_metadata([1])  # type: ignore[arg-type]


def test_metadata_reads_and_writes_as_attributes() -> None:
    metadata = Metadata(a=1)
    metadata.b = 2
    assert metadata == {"a": 1, "b": 2}
    del metadata.a
    assert metadata == {"b": 2}


# -- ModelStreamResponse -----------------------------------------------------------------------
def test_stream_from_a_sync_source_iterates_and_first_chunk_peeks() -> None:
    stream = ModelStreamResponse(iter(["a", "b"]))
    assert stream.first_chunk()
    assert list(stream) == ["a", "b"]
    assert not stream.is_async


def test_empty_stream_first_chunk_is_false() -> None:
    assert ModelStreamResponse(iter([])).first_chunk() is False


async def test_stream_from_an_async_source_is_consumed_with_async_for() -> None:
    async def source() -> Any:
        for chunk in ("x", "y"):
            yield chunk

    stream = ModelStreamResponse(source())
    assert stream.is_async
    assert await stream.afirst_chunk()
    assert [c async for c in stream.consume()] == ["x", "y"]


async def test_async_source_cannot_be_read_with_a_sync_for() -> None:
    async def source() -> Any:
        yield "x"

    stream = ModelStreamResponse(source())
    with pytest.raises(TypeError, match="async for"):
        list(stream)
    await stream.aclose()


async def test_sync_source_can_be_consumed_asynchronously() -> None:
    stream = ModelStreamResponse(iter(["p", "q"]))
    assert [c async for c in stream.consume()] == ["p", "q"]


def test_push_style_add_from_a_thread_is_iterated_until_add_none() -> None:
    stream = ModelStreamResponse()

    def produce() -> None:
        for chunk in ("1", "2", "3"):
            time.sleep(0.01)
            stream.add(chunk)
        stream.add(None)

    thread = threading.Thread(target=produce)
    thread.start()
    assert list(stream) == ["1", "2", "3"]
    thread.join()


async def test_push_style_add_is_consumed_asynchronously() -> None:
    stream = ModelStreamResponse()

    def produce() -> None:
        stream.add("a")
        time.sleep(0.02)
        stream.add("b")
        stream.add(None)

    thread = threading.Thread(target=produce)
    thread.start()
    assert await stream.afirst_chunk()
    assert [c async for c in stream.consume()] == ["a", "b"]
    thread.join()


def test_push_style_fail_raises_to_the_reader() -> None:
    stream = ModelStreamResponse()
    stream.add("a")
    stream.fail(ValueError("broken"))
    got = []
    with pytest.raises(ValueError, match="broken"):
        for chunk in stream:
            got.append(chunk)
    assert got == ["a"]


def test_closing_a_stream_closes_its_source() -> None:
    closed = []

    def source() -> Any:
        try:
            yield "a"
            yield "b"
        finally:
            closed.append(True)

    stream = ModelStreamResponse(source())
    for _ in stream:
        break
    assert closed == [True]
