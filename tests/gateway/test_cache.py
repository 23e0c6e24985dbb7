"""The response cache in the library (``ModelGateway(cache=...)``), on process memory, against a
real upstream: hits answer without an attempt at no cost, in every path and family; what is
never cached (sampled requests, errors, broken streams); the per-call controls; the key; the
ttl on a manual clock; accounting in stats, records and metrics.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from msgflux import Model, ModelGateway
from msgflux._time import ManualClock
from msgflux.exceptions import ModelRouterError, StreamInterruptedError
from msgflux.metrics import GatewayMetrics
from msgflux.models.gateway import RawAnswer, RawStream
from msgflux.models.gateway.cache import MemoryCache, NotCached, ResponseCache
from msgflux.models.gateway.record import CallRecord
from msgflux.models.gateway.wrappers import Call, Handler, Wrapper
from tests.upstream import Reply, ToolCallSpec, Upstream

KEY = "sk-cache-test-key-0042"
ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "gw", "messages": ASK, "temperature": 0, **extra}


def gateway(up: Upstream, cache: Any = True, model_id: str = "m", **options: Any) -> ModelGateway:
    model = Model.chat_completion(f"openai/{model_id}", base_url=up.base_url, api_key=KEY)
    return ModelGateway(
        [{"model_name": "a", "model": model, "price": PRICE}], cache=cache, **options
    )


async def complete(gw: ModelGateway, mode: str, payload: dict[str, Any], **kw: Any) -> Any:
    if mode == "sync":
        return gw.complete(payload, **kw)
    return await gw.acomplete(payload, **kw)


async def sse(stream: RawStream) -> bytes:
    return b"".join([part async for part in stream.sse("gw")])


def chunks_of(data: bytes) -> list[Any]:
    events = [e[6:] for e in data.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


def text_of(chunks: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# -- hits ----------------------------------------------------------------------------------------
@MODES
async def test_a_repeated_request_is_answered_from_the_cache_without_an_attempt(
    upstream: Upstream, mode: str
) -> None:
    gw = gateway(upstream)
    first = await complete(gw, mode, body())
    second = await complete(gw, mode, body())
    assert upstream.count() == 1
    assert (first.cache, second.cache) == ("miss", "hit")
    assert isinstance(second, RawAnswer) and second.attempts == [] and second.deployment == "a"
    assert second.body["choices"] == first.body["choices"]
    assert second.body["usage"] == first.body["usage"]  # the answer as it was given
    assert second.body["id"] != first.body["id"]  # every answer has its own id
    assert second.cache_age is not None and second.cache_age >= 0
    record = second.record
    assert record is not None and record.attempts == () and record.cache == "hit"
    assert record.cost == 0.0 and record.input_tokens == 0 and record.output_tokens == 0
    assert record.cost_saved == first.record.cost and record.cost_saved > 0


@MODES
async def test_msgflux_calls_hit_too_and_say_it_in_metadata_gateway(
    upstream: Upstream, mode: str
) -> None:
    gw = gateway(upstream)

    async def ask(**kw: Any) -> Any:
        if mode == "sync":
            return gw(messages="hi", temperature=0, **kw)
        return await gw.acall(messages="hi", temperature=0, **kw)

    first, second = await ask(), await ask()
    assert first.consume() == second.consume() == "Hello from m"
    assert first.metadata.gateway["cache"] == "miss"
    meta = second.metadata.gateway
    assert meta["cache"] == "hit" and meta["attempts"] == 0 and meta["cost"] == 0.0
    assert meta["cache_age"] >= 0 and meta["cost_saved"] > 0
    stream = await ask(stream=True)  # a stream of the same request hits the same entry
    if mode == "sync":
        assert "".join(stream) == "Hello from m"
    else:
        assert "".join([c async for c in stream.consume()]) == "Hello from m"
    assert stream.metadata.gateway["cache"] == "hit"
    assert upstream.count() == 1


@MODES
async def test_a_stream_miss_fills_the_cache_once_it_finished_and_a_hit_replays_it(
    upstream: Upstream, mode: str
) -> None:
    upstream.set_default(Reply(text="The perceptron was his.", reasoning="Think."))
    gw = gateway(upstream)
    asked = body(stream=True, stream_options={"include_usage": True})
    first = await complete(gw, mode, asked)
    assert first.cache == "miss"
    if mode == "sync":
        missed = b"".join(first.sse_sync("gw"))
    else:
        missed = await sse(first)
    hit = await complete(gw, mode, asked)
    assert hit.cache == "hit" and upstream.count() == 1
    replayed = chunks_of(await sse(hit) if mode == "async" else b"".join(hit.sse_sync("gw")))
    assert text_of(replayed) == text_of(chunks_of(missed)) == "The perceptron was his."
    assert replayed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert any(c["choices"] and c["choices"][0]["delta"].get("reasoning_content") for c in replayed)
    assert replayed[-1]["choices"] == [] and replayed[-1]["usage"]["completion_tokens"] > 0
    assert all(c["model"] == "gw" and c["id"] == replayed[0]["id"] for c in replayed)
    whole = await complete(gw, mode, body())  # the whole answer of the same request: one entry
    assert whole.cache == "hit"
    assert whole.body["choices"][0]["message"]["content"] == "The perceptron was his."
    assert upstream.count() == 1


@MODES
async def test_a_msgflux_stream_miss_fills_the_cache_once_read_to_its_end(
    upstream: Upstream, mode: str
) -> None:
    upstream.set_default(Reply(text="The perceptron was his."))
    gw = gateway(upstream)

    async def read() -> tuple[str, Any]:
        if mode == "sync":
            stream = gw(messages="hi", temperature=0, stream=True)
            return "".join(stream), stream
        stream = await gw.acall(messages="hi", temperature=0, stream=True)
        return "".join([c async for c in stream.consume()]), stream

    text, first = await read()
    assert text == "The perceptron was his." and first.metadata.gateway["cache"] == "miss"
    again, second = await read()
    assert again == text and second.metadata.gateway["cache"] == "hit"
    whole = gw(messages="hi", temperature=0)
    assert whole.consume() == text and whole.metadata.gateway["cache"] == "hit"
    assert upstream.count() == 1


async def test_tool_calls_are_replayed_whole_and_streamed(upstream: Upstream) -> None:
    call = ToolCallSpec("lookup", {"who": "Rosenblatt"}, id="call_1")
    upstream.set_default(Reply(tool_calls=[call]))
    gw = gateway(upstream)
    stream = await gw.acomplete(body(stream=True))
    await sse(stream)
    hit = await gw.acomplete(body())
    message = hit.body["choices"][0]["message"]
    assert hit.cache == "hit" and hit.body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["id"] == "call_1"
    assert message["tool_calls"][0]["function"]["name"] == "lookup"
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {"who": "Rosenblatt"}


# -- never cached --------------------------------------------------------------------------------
@MODES
async def test_a_broken_stream_is_never_cached(upstream: Upstream, mode: str) -> None:
    upstream.script([Reply(text="one two three four", cut_after=2)])
    gw = gateway(upstream)
    stream = await complete(gw, mode, body(stream=True))
    with pytest.raises(StreamInterruptedError):
        if mode == "sync":
            list(stream)
        else:
            [e async for e in stream]
    again = await complete(gw, mode, body())
    assert again.cache == "miss" and upstream.count() == 2
    assert gw.stats()["cache"]["stored"] == 1  # only the second, whole, answer


async def test_a_stream_closed_before_its_end_is_not_cached(upstream: Upstream) -> None:
    upstream.set_default(Reply(text="one two three four five six", chunk_delay=0.01))
    gw = gateway(upstream)
    stream = await gw.acomplete(body(stream=True))
    async for _ in stream:
        break
    await stream.aclose()
    assert (await gw.acomplete(body())).cache == "miss"


async def test_an_error_is_never_cached(upstream: Upstream) -> None:
    upstream.script([Reply(status=400, error="no")])
    gw = gateway(upstream)
    with pytest.raises(ModelRouterError):
        await gw.acomplete(body())
    answer = await gw.acomplete(body())
    assert answer.cache == "miss" and answer.body["choices"][0]["message"]["content"]
    assert upstream.count() == 2


@pytest.mark.parametrize(
    "extra",
    [{"temperature": 0.7}, {"temperature": None}, {"n": 2, "temperature": 0}],
    ids=["sampled", "default-temperature", "n2"],
)
async def test_requests_that_must_not_be_cached_bypass_it(
    upstream: Upstream, extra: dict[str, Any]
) -> None:
    gw = gateway(upstream)
    asked = {k: v for k, v in body(**extra).items() if v is not None}
    answers = [await gw.acomplete(asked) for _ in range(2)]
    assert [a.cache for a in answers] == ["bypass", "bypass"]
    assert upstream.count() == 2 and gw.stats()["cache"]["stored"] == 0


async def test_a_seeded_or_explicitly_cached_sampled_request_is_cached(
    upstream: Upstream,
) -> None:
    gw = gateway(upstream)
    seeded = body(temperature=0.9, seed=7)
    assert [(await gw.acomplete(seeded)).cache for _ in range(2)] == ["miss", "hit"]
    sampled = body(temperature=0.9)
    asked = [(await gw.acomplete(sampled, cache=True)).cache for _ in range(2)]
    assert asked == ["miss", "hit"]
    everything = gateway(upstream, cache={"cache_sampled": True})
    assert [(await everything.acomplete(sampled)).cache for _ in range(2)] == ["miss", "hit"]
    assert (await everything.acomplete(body(n=2))).cache == "bypass"  # never several answers


async def test_the_deployments_own_temperature_counts_when_the_request_sets_none(
    upstream: Upstream,
) -> None:
    model = Model.chat_completion(
        "openai_compatible/m", base_url=upstream.base_url, api_key=KEY, temperature=0
    )
    gw = ModelGateway([{"model_name": "a", "model": model}], cache=True)
    answers = [await gw.acall(messages=ASK) for _ in range(2)]
    assert [a.metadata.gateway["cache"] for a in answers] == ["miss", "hit"]
    assert upstream.count() == 1 and upstream.last.json["temperature"] == 0


async def test_a_request_in_its_apis_form_without_temperature_is_sampled_whatever_the_deployment(
    upstream: Upstream,
) -> None:
    # The raw path sends the body as the client wrote it: the deployment's temperature=0
    # never reaches the upstream, which samples at the API's default.
    model = Model.chat_completion(
        "openai_compatible/m", base_url=upstream.base_url, api_key=KEY, temperature=0
    )
    gw = ModelGateway([{"model_name": "a", "model": model}], cache=True)
    asked = {"model": "gw", "messages": ASK}
    assert [(await gw.acomplete(asked)).cache for _ in range(2)] == ["bypass", "bypass"]
    assert "temperature" not in upstream.last.json
    assert [(await gw.acomplete({**asked, "temperature": 0})).cache for _ in range(2)] == [
        "miss",
        "hit",
    ]


# -- per-call controls ---------------------------------------------------------------------------
async def test_cache_false_neither_reads_nor_writes(upstream: Upstream) -> None:
    gw = gateway(upstream)
    assert (await gw.acomplete(body(), cache=False)).cache == "bypass"
    assert (await gw.acomplete(body())).cache == "miss"
    assert (await gw.acomplete(body(), cache=False)).cache == "bypass"
    assert upstream.count() == 3
    assert "cache" not in upstream.last.json


async def test_no_cache_answers_from_upstream_and_refreshes_the_entry(upstream: Upstream) -> None:
    upstream.script([Reply(text="old"), Reply(text="new")])
    gw = gateway(upstream)
    await gw.acomplete(body())
    fresh = await gw.acomplete(body(), cache_control="no-cache")
    assert fresh.cache == "bypass" and fresh.body["choices"][0]["message"]["content"] == "new"
    hit = await gw.acomplete(body())
    assert hit.cache == "hit" and hit.body["choices"][0]["message"]["content"] == "new"


async def test_no_store_answers_without_keeping_the_answer(upstream: Upstream) -> None:
    gw = gateway(upstream)
    assert (await gw.acomplete(body(), cache_control="no-store")).cache == "miss"
    assert (await gw.acomplete(body())).cache == "miss"
    assert (await gw.acomplete(body(), cache_control="no-store")).cache == "hit"


async def test_only_if_cached_answers_from_the_cache_or_raises(upstream: Upstream) -> None:
    gw = gateway(upstream)
    with pytest.raises(NotCached):
        await gw.acomplete(body(), cache_control="only-if-cached")
    with pytest.raises(NotCached):
        gw(messages="hi", temperature=1, cache_control="only-if-cached")  # never cached
    assert upstream.count() == 0
    await gw.acomplete(body())
    assert (await gw.acomplete(body(), cache_control="only-if-cached")).cache == "hit"


async def test_max_age_accepts_only_younger_entries_and_refreshes_older_ones(
    upstream: Upstream,
) -> None:
    clock = ManualClock()
    upstream.script([Reply(text="old"), Reply(text="new")])
    gw = gateway(upstream, clock=clock)
    await gw.acomplete(body())
    clock.advance(30)
    young = await gw.acomplete(body(), cache_control="max-age=60")
    assert young.cache == "hit" and young.cache_age == pytest.approx(30)
    stale = await gw.acomplete(body(), cache_control="max-age=10")
    assert stale.cache == "miss" and stale.body["choices"][0]["message"]["content"] == "new"
    assert (await gw.acomplete(body())).cache_age == pytest.approx(0)


async def test_an_entry_expires_after_its_ttl_on_the_gateways_clock(upstream: Upstream) -> None:
    clock = ManualClock()
    gw = gateway(upstream, cache={"ttl": 100}, clock=clock)
    await gw.acomplete(body())
    clock.advance(99)
    assert (await gw.acomplete(body())).cache == "hit"
    clock.advance(1)
    assert (await gw.acomplete(body())).cache == "miss"
    assert gw.stats()["cache"]["entries"] == 1  # the expired entry was replaced


@MODES
async def test_cache_ttl_sets_how_long_this_calls_answer_is_kept(
    upstream: Upstream, mode: str
) -> None:
    clock = ManualClock()
    gw = gateway(upstream, cache={"ttl": 100}, clock=clock)
    long_lived, short_lived = body(max_tokens=5), body(max_tokens=6)
    await complete(gw, mode, long_lived, cache_ttl=1000)
    await complete(gw, mode, short_lived, cache_ttl=10)
    clock.advance(500)  # past the cache's ttl, within the first call's
    assert (await complete(gw, mode, long_lived)).cache == "hit"
    assert (await complete(gw, mode, short_lived)).cache == "miss"
    if mode == "sync":
        gw(messages="hi", temperature=0, cache_ttl=5)
        clock.advance(6)
        assert gw(messages="hi", temperature=0).metadata.gateway["cache"] == "miss"
    assert upstream.count() == (5 if mode == "sync" else 3)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"cache": "yes"}, TypeError, "cache must be True or False"),
        ({"cache_ttl": -1}, ValueError, "cache_ttl"),
        ({"cache_ttl": "1h"}, TypeError, "cache_ttl"),
        ({"cache_control": "max-age=soon"}, ValueError, "max-age"),
        ({"cache_control": 60}, TypeError, "cache_control"),
    ],
)
async def test_a_malformed_option_is_the_callers_mistake(
    upstream: Upstream, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    gw = gateway(upstream)
    with pytest.raises(error, match=match):
        await gw.acomplete(body(), **options)
    with pytest.raises(error, match=match):
        gw(messages="hi", **options)
    assert upstream.count() == 0


# -- the key ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "same",
    [
        {"messages": ASK, "temperature": 0, "model": "gw"},  # key order
        {**body(), "temperature": 0.0},
        {**body(), "top_p": 1, "n": 1, "presence_penalty": 0},  # defaults made explicit
        {**body(), "user": None},  # a null is an absent field
        {**body(), "stream": False},
    ],
    ids=["order", "float", "defaults", "null", "stream"],
)
async def test_equal_requests_share_an_entry(upstream: Upstream, same: dict[str, Any]) -> None:
    gw = gateway(upstream)
    await gw.acomplete(body(max_tokens=50))
    assert (await gw.acomplete({**same, "max_completion_tokens": 50})).cache == "hit"


@pytest.mark.parametrize(
    "other",
    [
        body(messages=[*ASK, {"role": "assistant", "content": "A psychologist."}]),
        body(messages=[{"role": "user", "content": "Who was Frank Rosenblat?"}]),
        body(model="another"),
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        body(max_tokens=51),
        body(response_format={"type": "json_object"}),
    ],
    ids=["one-message-more", "one-letter", "model", "one-tool", "max-tokens", "format"],
)
async def test_any_semantic_difference_is_another_entry(
    upstream: Upstream, other: dict[str, Any]
) -> None:
    gw = gateway(upstream)
    await gw.acomplete(body(max_tokens=50))
    assert (await gw.acomplete({"max_tokens": 50, **other})).cache == "miss"


async def test_the_key_covers_the_gateway_name_and_its_deployments(upstream: Upstream) -> None:
    store = MemoryCache()
    first = gateway(upstream, cache=ResponseCache(store), name="g")
    await first.acomplete(body())
    same = gateway(upstream, cache=ResponseCache(store), name="g")
    assert (await same.acomplete(body())).cache == "hit"
    renamed = gateway(upstream, cache=ResponseCache(store), name="h")
    assert (await renamed.acomplete(body())).cache == "miss"
    other_model = gateway(upstream, cache=ResponseCache(store), name="g", model_id="m2")
    assert (await other_model.acomplete(body())).cache == "miss"


async def test_each_family_has_its_own_entries(upstream: Upstream) -> None:
    gw = gateway(upstream)
    await gw.acomplete(body(max_tokens=9))
    messages = {"model": "gw", "max_tokens": 9, "temperature": 0, "messages": ASK}
    assert (await gw.acomplete(messages, api="messages")).cache == "miss"
    assert (await gw.acomplete(messages, api="messages")).cache == "hit"
    beta = await gw.acomplete(messages, api="messages", headers={"anthropic-beta": "x"})
    assert beta.cache == "miss"  # the family's own headers count


class Rewrite(Wrapper):
    def wrap(self, call: Call, next: Handler) -> Any:
        assert call.request is not None
        call.request = call.request.with_fields(temperature=0)
        return next(call)


def test_the_cache_sees_the_request_the_other_wrappers_made(upstream: Upstream) -> None:
    gw = gateway(upstream, wrappers=[Rewrite()])
    answers = [gw.complete(body(temperature=1.5)) for _ in range(2)]
    assert [a.cache for a in answers] == ["miss", "hit"]


# -- bounds and corruption -----------------------------------------------------------------------
async def test_a_long_answer_is_stored_compressed(upstream: Upstream) -> None:
    text = " ".join(["the perceptron learns"] * 400)
    upstream.set_default(Reply(text=text))
    gw = gateway(upstream)
    await gw.acomplete(body())
    assert gw.stats()["cache"]["bytes"] < len(text) / 5
    assert (await gw.acomplete(body())).body["choices"][0]["message"]["content"] == text


async def test_an_answer_over_the_entry_cap_is_not_cached(upstream: Upstream) -> None:
    upstream.set_default(Reply(text=" ".join(f"w{i:05d}x{i * 7919 % 10007}" for i in range(3000))))
    gw = gateway(upstream, cache={"max_entry_bytes": 4096})
    assert [(await gw.acomplete(body())).cache for _ in range(2)] == ["miss", "miss"]
    assert gw.stats()["cache"]["too_big"] == 2


@pytest.mark.parametrize(
    "garbage", [b"\x01not deflate", b"\x02{not json", b"\x07", b"\x01" + b"x" * 5000]
)
async def test_a_corrupted_or_oversized_entry_is_a_miss_and_is_deleted(
    upstream: Upstream, garbage: bytes
) -> None:
    store = MemoryCache()
    gw = gateway(upstream, cache=ResponseCache(store, max_entry_bytes=4096))
    await gw.acomplete(body())
    (key,) = list(store._entries)
    store.put(key, garbage, 60)
    answer = await gw.acomplete(body())
    assert answer.cache == "miss" and answer.body["choices"][0]["message"]["content"]
    assert gw.stats()["cache"]["dropped"] == 1
    assert store.get(key) != garbage  # deleted, then filled again
    assert (await gw.acomplete(body())).cache == "hit"


def test_a_memory_cache_drops_the_least_recently_used_past_its_budget() -> None:
    store = MemoryCache(max_bytes=100)
    store.put("a", b"a" * 40, 60)
    store.put("b", b"b" * 40, 60)
    assert store.get("a") is not None  # a is now the most recently used
    store.put("c", b"c" * 40, 60)
    assert store.get("b") is None and store.get("a") and store.get("c")
    assert store.info() == {"entries": 2, "bytes": 80, "max_bytes": 100}
    store.put("big", b"x" * 101, 60)
    assert store.get("big") is None and store.info()["bytes"] == 80


class Broken:
    """A store that always fails (Redis down, say)."""

    kind = "broken"

    def get(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    put = delete = get  # type: ignore[assignment]

    async def aget(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    aput = adelete = aget  # type: ignore[assignment]

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


@MODES
async def test_a_failing_store_never_fails_a_call(upstream: Upstream, mode: str) -> None:
    gw = gateway(upstream, cache=Broken())
    for asked in (body(), body(stream=True)):
        answer = await complete(gw, mode, asked)
        if isinstance(answer, RawStream):
            assert text_of(
                chunks_of(await sse(answer) if mode == "async" else b"".join(answer.sse_sync("gw")))
            )
        assert answer.cache == "miss"
    await asyncio.sleep(0)  # the stream's write, scheduled at its end
    assert gw.stats()["cache"]["errors"] >= 4


# -- accounting ----------------------------------------------------------------------------------
async def test_hits_misses_and_bypasses_are_counted_in_stats_records_and_metrics(
    upstream: Upstream,
) -> None:
    records: list[CallRecord] = []
    metrics = GatewayMetrics(registry=CollectorRegistry())
    gw = gateway(upstream, name="g", on_complete=[records.append, metrics.observe])
    metrics.watch(gw)
    await gw.acomplete(body())
    await gw.acomplete(body())
    gw(messages="hi", temperature=0)
    gw(messages="hi", temperature=0)
    await gw.acomplete(body(temperature=1))
    assert [r.cache for r in records] == ["miss", "hit", "miss", "hit", "bypass"]
    hit = records[1]
    assert hit.deployment == "a" and hit.attempts == () and hit.cost == 0.0
    assert hit.cost_saved == records[0].cost
    stats = gw.stats()["cache"]
    assert stats["hits"] == 2 and stats["misses"] == 2 and stats["bypasses"] == 1
    assert stats["store"] == "memory" and stats["entries"] == 2 and stats["bytes"] > 0
    assert stats["cost_saved"] == pytest.approx(records[0].cost + records[2].cost)
    assert stats["bytes_read"] > 0 and stats["bytes_written"] == stats["bytes"]
    assert gw.stats()["deployments"]["a"]["calls"] == 3  # hits never reach a deployment
    metrics.refresh()
    sample = metrics.registry.get_sample_value
    assert sample("msgflux_gateway_cache_hits_total", {"gateway": "g"}) == 2
    assert sample("msgflux_gateway_cache_misses_total", {"gateway": "g"}) == 2
    assert sample("msgflux_gateway_cache_bypasses_total", {"gateway": "g"}) == 1
    assert sample("msgflux_gateway_cache_saved_usd_total", {"gateway": "g"}) > 0
    assert sample("msgflux_gateway_cache_read_bytes_total", {"gateway": "g"}) > 0
    assert sample("msgflux_gateway_cache_written_bytes_total", {"gateway": "g"}) > 0
    assert sample("msgflux_gateway_cache_stored_bytes", {"gateway": "g"}) == stats["bytes"]


def test_a_stream_hit_has_its_record_at_once(upstream: Upstream) -> None:
    gw = gateway(upstream)
    list(gw.complete(body(stream=True)))
    hit = gw.complete(body(stream=True))
    assert isinstance(hit, RawStream) and hit.cache == "hit"
    assert hit.record is not None and hit.record.stream and hit.record.cost == 0.0


# -- the option ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("memcached://x", ValueError, "redis://"),
        ({"ttl": 0}, ValueError, "ttl"),
        ({"store": "memory", "size": 3}, ValueError, "unknown key"),
        ({"max_entry_bytes": -1}, ValueError, "max_entry_bytes"),
        ({"cache_sampled": "yes"}, TypeError, "cache_sampled"),
        (42, TypeError, "cache must be"),
    ],
)
def test_a_bad_cache_option_names_what_is_wrong(
    upstream: Upstream, value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        gateway(upstream, cache=value)


def test_a_response_cache_serves_one_gateway(upstream: Upstream) -> None:
    cache = ResponseCache()
    gw = gateway(upstream, cache=cache)
    assert gw.cache is cache
    with pytest.raises(ValueError, match="already serves another gateway"):
        gateway(upstream, cache=cache)
    assert gateway(upstream, cache=False).cache is None
    assert gateway(upstream, cache=None).cache is None
