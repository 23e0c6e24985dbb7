"""CallRecord: exactly one per call, on every path, however the call ends (real upstream)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import pytest

import msgflux as mf
from msgflux._time import ManualClock
from msgflux.exceptions import ModelRouterError, StreamInterruptedError
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.gateway.record import CallRecord
from tests.conftest import TEST_KEYS
from tests.observed import pair
from tests.upstream import Reply, Upstream

USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}


def gateway(upstream: Upstream, records: list[CallRecord], **options: Any) -> mf.ModelGateway:
    return pair(upstream, on_complete=records.append, **options)


async def call(gw: mf.ModelGateway, path: str, stream: bool) -> Any:
    """One call on ``path`` ("sync", "async", "raw", "araw"), read to its end."""
    messages = [{"role": "user", "content": "hi there"}]
    if path == "sync":
        resp = gw(messages=messages, stream=stream)
        return resp.consume() if not stream else "".join(resp)
    if path == "async":
        resp = await gw.acall(messages=messages, stream=stream)
        if not stream:
            return resp.consume()
        return "".join([c async for c in resp.consume()])
    body = {"messages": messages, "stream": stream}
    if path == "raw":
        answer = gw.complete(body)
        return list(answer) if stream else answer
    answer = await gw.acomplete(body)
    return [c async for c in answer] if stream else answer


PATHS = pytest.mark.parametrize("path", ["sync", "async", "raw", "araw"])
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


@PATHS
@STREAM
async def test_a_successful_call_has_exactly_one_record(
    upstream_env: Upstream, path: str, stream: bool
) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    records: list[CallRecord] = []
    gw = gateway(upstream_env, records)
    before = time.time()
    await call(gw, path, stream)
    assert len(records) == 1
    r = records[0]
    assert (r.gateway, r.kind, r.stream, r.deployment, r.provider, r.model_id) == (
        "chat",
        "chat",
        stream,
        "primary",
        "openai",
        "gpt-4o",
    )
    assert (r.error, r.cancelled, r.outcome, r.fallbacks, r.hedged) == (
        None,
        False,
        "success",
        0,
        False,
    )
    assert [a.model_name for a in r.attempts] == ["primary"]
    assert (r.input_tokens, r.output_tokens, r.cached_input_tokens) == (12, 3, 2)
    assert r.cost == pytest.approx((10 * 2.5 + 2 * 1.25 + 3 * 10) / 1e6)
    assert before - 0.01 <= r.started <= time.time()
    assert 0 < r.duration < 5
    if stream:
        assert r.ttft is not None and 0 < r.ttft <= r.duration
    else:
        assert r.ttft is None
    gw.close()


@PATHS
@STREAM
async def test_a_fallback_is_one_record_with_both_attempts(
    upstream_env: Upstream, path: str, stream: bool
) -> None:
    upstream_env.set_default(Reply(status=500), model="gpt-4o")
    records: list[CallRecord] = []
    await call(gateway(upstream_env, records), path, stream)
    [r] = records
    assert r.deployment == "backup" and r.model_id == "gpt-4o-mini"
    assert r.fallbacks == 1
    assert [(a.model_name, type(a.exception).__name__) for a in r.attempts] == [
        ("primary", "InternalServerError"),
        ("backup", "NoneType"),
    ]


@PATHS
@STREAM
async def test_a_failed_call_has_exactly_one_record(
    upstream_env: Upstream, path: str, stream: bool
) -> None:
    upstream_env.set_default(Reply(status=503))
    records: list[CallRecord] = []
    with pytest.raises(ModelRouterError):
        await call(gateway(upstream_env, records), path, stream)
    [r] = records
    assert (r.error, r.outcome, r.deployment, r.cost, r.input_tokens) == (
        "ModelRouterError",
        "error",
        None,
        None,
        None,
    )
    assert [a.model_name for a in r.attempts] == ["primary", "backup"]
    assert r.fallbacks == 1


@pytest.mark.parametrize("path", ["sync", "raw"])
def test_a_stream_closed_early_by_its_reader_is_one_cancelled_record(
    upstream_env: Upstream, path: str
) -> None:
    upstream_env.set_default(Reply(chunks=["a", "b", "c", "d"], chunk_delay=0.01))
    records: list[CallRecord] = []
    gw = gateway(upstream_env, records)
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    stream: Any = gw.complete(body) if path == "raw" else gw(messages="x", stream=True)
    it = iter(stream)
    next(it)
    assert records == [] and (path != "raw" or stream.record is None)
    it.close()  # type: ignore[attr-defined]
    stream.close()
    [r] = records
    assert (r.outcome, r.cancelled, r.error, r.deployment, r.stream) == (
        "cancelled",
        True,
        None,
        "primary",
        True,
    )
    if path == "raw":
        assert stream.record is r


async def test_an_async_stream_closed_early_is_one_cancelled_record(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(chunks=["a", "b", "c"], chunk_delay=0.01))
    records: list[CallRecord] = []
    stream = await gateway(upstream_env, records).acall(messages="x", stream=True)
    async for _ in stream.consume():
        break
    await stream.aclose()
    assert [r.outcome for r in records] == ["cancelled"]


def test_an_unread_stream_collected_is_one_cancelled_record(upstream_env: Upstream) -> None:
    records: list[CallRecord] = []
    gw = gateway(upstream_env, records)
    stream = gw(messages="x", stream=True)
    del stream
    gc.collect()
    assert [r.outcome for r in records] == ["cancelled"]


@pytest.mark.parametrize("path", ["sync", "raw"])
def test_a_stream_broken_mid_way_is_one_error_record(upstream_env: Upstream, path: str) -> None:
    upstream_env.set_default(Reply(chunks=["a", "b", "c"], cut_after=1))
    records: list[CallRecord] = []
    gw = gateway(upstream_env, records)
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    with pytest.raises(StreamInterruptedError):
        list(gw.complete(body) if path == "raw" else gw(messages="x", stream=True))
    [r] = records
    assert (r.outcome, r.error, r.deployment) == ("error", "StreamInterruptedError", "primary")


async def test_a_cancelled_async_call_is_one_cancelled_record(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=5))
    records: list[CallRecord] = []
    task = asyncio.ensure_future(gateway(upstream_env, records).acall(messages="x"))
    await upstream_env.await_for(lambda up: up.count("chat") == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [r] = records
    assert (r.outcome, r.error) == ("cancelled", None)


def test_raw_answer_carries_the_record_the_hooks_got(upstream_env: Upstream) -> None:
    records: list[CallRecord] = []
    answer = gateway(upstream_env, records).complete(
        {"messages": [{"role": "user", "content": "x"}]}
    )
    assert isinstance(answer, RawAnswer)
    assert answer.record is records[0]


def test_the_raw_path_has_a_record_without_any_hook(upstream_env: Upstream) -> None:
    gw = mf.ModelGateway(
        [
            {
                "model_name": "a",
                "model": mf.Model.chat_completion("openai/gpt-4o", base_url=upstream_env.base_url),
            }
        ]
    )
    answer = gw.complete({"messages": [{"role": "user", "content": "x"}]})
    assert isinstance(answer, RawAnswer) and answer.record is not None
    assert answer.record.deployment == "a" and answer.record.gateway is None
    stream = gw.complete({"messages": [{"role": "user", "content": "x"}], "stream": True})
    assert isinstance(stream, RawStream) and stream.record is None
    list(stream)
    assert stream.record is not None and stream.record.outcome == "success"


def test_a_call_refused_by_time_windows_has_a_record_without_attempts() -> None:
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc))
    records: list[CallRecord] = []
    gw = mf.ModelGateway(
        [
            {
                "model_name": "a",
                "model": "openai/gpt-4o",
                "time_constraints": [("00:00", "23:59")],
            }
        ],
        clock=clock,
        on_complete=records.append,
    )
    with pytest.raises(ModelRouterError, match="time constraints"):
        gw(messages="x")
    [r] = records
    assert (r.error, r.attempts, r.deployment) == ("ModelRouterError", (), None)


def test_a_call_rejected_for_its_arguments_has_no_record(upstream_env: Upstream) -> None:
    records: list[CallRecord] = []
    gw = gateway(upstream_env, records)
    with pytest.raises(TypeError):
        gw(messages=42)
    with pytest.raises(ValueError):
        gw(messages="x", model_preference="nope")
    assert records == []


def test_a_hook_that_raises_is_logged_and_ignored(
    upstream_env: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[CallRecord] = []

    def bad(record: CallRecord) -> None:
        raise RuntimeError("boom " + TEST_KEYS["OPENAI"])

    gw = mf.ModelGateway(
        [
            {
                "model_name": "a",
                "model": mf.Model.chat_completion("openai/gpt-4o", base_url=upstream_env.base_url),
            }
        ],
        on_complete=[bad, seen.append],
    )
    with caplog.at_level(logging.ERROR, "msgflux.gateway"):
        assert gw(messages="x").consume() == "Hello from gpt-4o"
    assert len(seen) == 1
    assert "on_complete hook" in caplog.text and "boom" in caplog.text
    assert TEST_KEYS["OPENAI"] not in caplog.text


def test_a_hedged_answer_is_marked_hedged(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=0.5), model="gpt-4o")
    records: list[CallRecord] = []
    gateway(upstream_env, records, hedge=0.05)(messages="x")
    [r] = records
    assert (r.deployment, r.hedged) == ("backup", True)
    assert [(a.model_name, a.cancelled) for a in r.attempts] == [
        ("backup", False),
        ("primary", True),
    ] or [(a.model_name, a.cancelled) for a in r.attempts] == [
        ("primary", True),
        ("backup", False),
    ]
    assert r.fallbacks == 0  # a cancelled loser is not a fallback


def test_records_are_json_ready_and_hold_no_secret(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=401, error="bad key " + TEST_KEYS["OPENAI"]))
    records: list[CallRecord] = []
    with pytest.raises(ModelRouterError):
        gateway(upstream_env, records)(messages="x")
    text = json.dumps(records[0].as_dict())
    assert TEST_KEYS["OPENAI"] not in text
    assert json.loads(text)["outcome"] == "error"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (5, TypeError),
        ("", ValueError),
        (" chat", ValueError),
        ("a\nb", ValueError),
        ("x" * 201, ValueError),
    ],
)
def test_gateway_name_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="name must be a non-empty str"):
        mf.ModelGateway([{"model_name": "a", "model": "openai/gpt-4o"}], name=value)


def test_on_complete_must_be_callables() -> None:
    with pytest.raises(TypeError, match="on_complete must be a callable"):
        mf.ModelGateway([{"model_name": "a", "model": "openai/gpt-4o"}], on_complete="print")


def test_gateway_name_round_trips_through_serialize() -> None:
    gw = mf.ModelGateway([{"model_name": "a", "model": "openai/gpt-4o"}], name="chat")
    data = gw.serialize()
    assert data["state"]["name"] == "chat"
    assert mf.ModelGateway.from_serialized(data).name == "chat"
