"""msgflux's response API (``msgflux.models.response``): metadata that starts as None, the
reasoning and its summary kept apart, and a stream written by a producer (``add``,
``add_reasoning``, ``add_reasoning_summary``, ``finish``) and read by channel, chunk by chunk,
or as one ordered journal, with finalizers told once how it ended."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from msgflux.exceptions import AbortRequestedError, StreamInterruptedError
from msgflux.models.response import (
    LMStreamEvent,
    ModelResponse,
    ModelStreamResponse,
    StreamFinalState,
    metadata_of,
)
from tests.upstream import Reply, Upstream


def finished_states(stream: ModelStreamResponse) -> list[StreamFinalState]:
    states: list[StreamFinalState] = []
    stream.add_finalizer(states.append)
    return states


async def read(stream: ModelStreamResponse) -> list[Any]:
    return [chunk async for chunk in stream.consume()]


# -- whole answers -----------------------------------------------------------------------------
def test_a_new_answer_has_no_metadata_until_one_is_set() -> None:
    answer = ModelResponse()
    assert answer.metadata is None and answer.reasoning is None
    assert not answer.has_reasoning and not answer.has_reasoning_summary
    metadata_of(answer)["usage"] = {"total_tokens": 3}  # what providers and gateways use
    assert answer.metadata.usage == {"total_tokens": 3}
    answer.set_metadata({"model": "m"})
    assert answer.metadata == {"model": "m"} and answer.metadata.model == "m"


def test_an_answer_keeps_its_reasoning_and_the_summary_of_it_apart() -> None:
    answer = ModelResponse()
    answer.reasoning, answer.reasoning_summary = "step 1, step 2", "checked twice"
    assert answer.consume_reasoning() == "step 1, step 2"
    assert answer.consume_reasoning_summary() == "checked twice"
    assert answer.has_reasoning and answer.has_reasoning_summary


# -- pushed streams: content -------------------------------------------------------------------
async def test_pushed_text_is_read_chunk_by_chunk_and_joined_in_data() -> None:
    stream = ModelStreamResponse()
    assert stream.metadata is None
    for piece in ("Fr", "ank"):
        stream.add(piece)
    stream.finish()
    assert await read(stream) == ["Fr", "ank"] and stream.data == "Frank"


async def test_pushed_bytes_are_joined_as_bytes_and_next_chunk_pulls_one_at_a_time() -> None:
    stream = ModelStreamResponse()
    stream.add(b"RI")
    stream.add(b"FF")
    stream.finish()
    assert [await stream.next_chunk() for _ in range(3)] == [b"RI", b"FF", None]
    assert stream.data == b"RIFF"


async def test_a_chunk_that_is_not_text_or_bytes_fails_the_stream_for_its_readers() -> None:
    stream = ModelStreamResponse()
    with pytest.raises(TypeError, match="only supports `str` or `bytes` chunks"):
        stream.add(42)
    assert isinstance(stream.error, TypeError)
    mixed = ModelStreamResponse()
    mixed.add("text")
    with pytest.raises(TypeError, match="mixed chunk types"):
        mixed.add(b"bytes")
    with pytest.raises(TypeError, match="mixed chunk types"):
        await read(mixed)


async def test_an_error_given_to_finish_is_raised_where_the_reader_reaches_the_end() -> None:
    stream = ModelStreamResponse()
    stream.add("partial")
    stream.finish(error=ConnectionResetError("upstream went away"))
    with pytest.raises(ConnectionResetError):
        await read(stream)
    other = ModelStreamResponse()
    other.finish(error=ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await other.next_chunk()


def test_a_long_pushed_stream_accumulates_in_linear_time() -> None:
    stream = ModelStreamResponse()
    started = time.perf_counter()
    for _ in range(80_000):
        stream.add("abcde")
    assert time.perf_counter() - started < 1.5  # was 5 s: the whole text copied per chunk
    stream.finish()
    assert len(stream.data) == 400_000
    assert stream.chat_accumulator.snapshot()[0]["content"] == stream.data


def test_a_chunk_after_its_channel_closed_is_refused() -> None:
    stream = ModelStreamResponse()
    stream.add_reasoning("thinking")
    stream.finish_reasoning()
    with pytest.raises(RuntimeError, match="closed stream"):
        stream.add_reasoning("more thinking")
    stream.add("answer")  # the content channel is still open
    stream.finish()
    with pytest.raises(RuntimeError, match="closed stream"):
        stream.add("more answer")


def test_chunks_pushed_from_a_thread_reach_a_reader_in_another() -> None:
    stream = ModelStreamResponse()

    def produce() -> None:
        for piece in ("a", "b", "c"):
            stream.add(piece)
        stream.finish()

    threading.Thread(target=produce).start()
    assert list(stream) == ["a", "b", "c"]


# -- reasoning, summaries, and the journal -----------------------------------------------------
async def test_reasoning_and_its_summary_are_separate_channels_with_a_summary_event() -> None:
    stream = ModelStreamResponse(mode="async")
    assert isinstance(stream.reasoning_summary_event, asyncio.Event)
    stream.add_reasoning("compare both")
    assert not stream.reasoning_summary_event.is_set()
    stream.add_reasoning_summary("compared")
    await asyncio.wait_for(stream.reasoning_summary_event.wait(), 1)
    stream.add("B")
    stream.finish()
    assert [c async for c in stream.consume_reasoning()] == ["compare both"]
    assert [c async for c in stream.consume_reasoning_summary()] == ["compared"]
    assert await read(stream) == ["B"]
    assert stream.has_reasoning and stream.has_reasoning_summary


def test_the_summary_event_is_set_when_a_stream_ends_without_a_summary() -> None:
    stream = ModelStreamResponse("sync")  # msgflux's positional mode
    assert isinstance(stream.reasoning_summary_event, threading.Event)
    stream.finish()
    assert stream.reasoning_summary_event.is_set() and not stream.has_reasoning_summary
    with pytest.raises(ValueError, match="`mode`"):
        ModelStreamResponse(mode="threads")


async def test_the_event_journal_keeps_the_order_chunks_were_pushed_across_channels() -> None:
    stream = ModelStreamResponse()
    stream.add_reasoning("r1")
    stream.add("c1")
    stream.add_reasoning_summary("s1")
    stream.add("c2")
    stream.finish()
    events = [event async for event in stream.consume_events()]
    assert events == [
        LMStreamEvent("reasoning.delta", "r1"),
        LMStreamEvent("output.delta", "c1"),
        LMStreamEvent("reasoning_summary.delta", "s1"),
        LMStreamEvent("output.delta", "c2"),
    ]
    assert [e async for e in stream.consume_events()] == events  # every reader from the start


# -- finishing ---------------------------------------------------------------------------------
def test_finalizers_run_once_with_how_the_stream_ended_and_late_ones_at_once() -> None:
    stream = ModelStreamResponse()
    early = finished_states(stream)
    stream.set_response_type("text_generation")
    stream.add("done")
    stream.finish()
    stream.finish()  # a second finish changes nothing
    late = finished_states(stream)
    assert len(early) == len(late) == 1 and early[0] == late[0]
    state = early[0]
    assert (state.status, state.response_type, state.output) == (
        "completed",
        "text_generation",
        "done",
    )
    assert list(stream._pending_chunks) == ["done", None]  # None marks the channel's end


def test_an_abort_finishes_the_stream_as_interrupted_and_an_error_as_failed() -> None:
    aborted = ModelStreamResponse()
    states = finished_states(aborted)
    aborted.finish(error=AbortRequestedError("esc pressed"), status="interrupted")
    assert states[0].status == "interrupted" and isinstance(states[0].error, AbortRequestedError)
    failed = ModelStreamResponse()
    states = finished_states(failed)
    failed.finish(error=TimeoutError("slow"))
    assert states[0].status == "failed"


def test_the_history_items_follow_the_order_reasoning_and_text_arrived_in() -> None:
    stream = ModelStreamResponse()
    states = finished_states(stream)
    stream.add_reasoning("look ")
    stream.add_reasoning("up")
    stream.finish_reasoning()
    stream.add("Ros")
    stream.add("enblatt")
    stream.finish()
    assert states[0].items == [
        {"type": "reasoning", "role": "assistant", "text": "look up"},
        {"type": "message", "role": "assistant", "content": "Rosenblatt"},
    ]


def test_opaque_provider_reasoning_state_merges_into_its_item_by_id() -> None:
    stream = ModelStreamResponse()
    states = finished_states(stream)
    stream.add_reasoning("Checked the docs.", item_id="rs_7")
    stream.add("Yes.")
    stream.chat_accumulator.add_reasoning(
        provider="openai",
        api_mode="responses",
        provider_state={"type": "reasoning", "id": "rs_7", "encrypted_content": "e30="},
        item_id="rs_7",
    )
    stream.finish()
    reasoning, message = states[0].items
    assert reasoning["text"] == "Checked the docs."
    assert reasoning["provider_state"] == {
        "provider": "openai",
        "api_mode": "responses",
        "data": {"type": "reasoning", "id": "rs_7", "encrypted_content": "e30="},
    }
    assert message == {"type": "message", "role": "assistant", "content": "Yes."}


def test_a_reasoning_summary_pushed_as_a_reasoning_chunk_lands_in_the_summary() -> None:
    stream = ModelStreamResponse()
    states = finished_states(stream)
    stream.add_reasoning("short version", history_kind="summary")
    stream.finish()
    assert states[0].items == [
        {"type": "reasoning", "role": "assistant", "summary": "short version"}
    ]


# -- a gateway's stream, read the msgflux way ------------------------------------------------
def gateway() -> Any:
    import msgflux as mf

    return mf.ModelGateway([{"model_name": "primary", "model": "openai/gpt-4.1-nano"}])


async def test_a_gateway_stream_gives_its_reasoning_first_then_its_text_then_finalizes(
    upstream_env: Upstream,
) -> None:
    upstream_env.script(Reply(text="Frank Rosenblatt", reasoning="a name is asked"))
    stream = await gateway().acall(messages="Who built the perceptron?", stream=True)
    states = finished_states(stream)
    reasoning = [chunk async for chunk in stream.consume_reasoning()]
    assert "".join(reasoning) == "a name is asked"
    assert [c async for c in stream.consume_reasoning_summary()] == []  # none, and no wait
    assert "".join(await read(stream)) == "Frank Rosenblatt"  # kept while reasoning was read
    assert [state.status for state in states] == ["completed"]
    assert stream.reasoning == "a name is asked" and stream.reasoning_summary_event.is_set()


async def test_a_gateway_stream_that_breaks_or_is_left_tells_its_finalizers(
    upstream_env: Upstream,
) -> None:
    upstream_env.script(Reply(chunks=["one ", "two ", "three"], cut_after=1))
    broken = await gateway().acall(messages="count", stream=True)
    states = finished_states(broken)
    with pytest.raises(StreamInterruptedError):
        await read(broken)
    assert [state.status for state in states] == ["failed"]
    assert isinstance(states[0].error, StreamInterruptedError)

    upstream_env.script(Reply(chunks=["one ", "two ", "three"]))
    left = await gateway().acall(messages="count", stream=True)
    states = finished_states(left)
    assert await left.next_chunk() == "one "
    await left.aclose()
    assert [state.status for state in states] == ["interrupted"]
