"""Per-deployment rpm, tpm and max_concurrency: a deployment at its limit is skipped."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from msgflux import ManualClock, ModelGateway
from msgflux.exceptions import ModelRouterError
from msgflux.models.response import ModelResponse, metadata_of
from tests.fakes import Scripted

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", "hi")
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


class Metered(Scripted):
    """Reports ``tokens`` of usage with every answer."""

    def __init__(self, model_id: str, tokens: int) -> None:
        super().__init__(model_id)
        self.tokens = tokens

    def _answer(self, item: Any, kwargs: dict[str, Any]) -> Any:
        resp = super()._answer(item, kwargs)
        usage = {
            "prompt_tokens": self.tokens // 2,
            "completion_tokens": self.tokens - self.tokens // 2,
            "total_tokens": self.tokens,
        }
        resp.set_metadata({"usage": usage})
        return resp


def limited(a: Scripted, b: Scripted, clock: ManualClock, **limits: Any) -> ModelGateway:
    return ModelGateway(
        [{"model_name": a.model_id, "model": a, **limits}, {"model_name": b.model_id, "model": b}],
        clock=clock,
    )


# -- rpm ---------------------------------------------------------------------------------------
@MODES
async def test_rpm_skips_the_deployment_until_the_window_slides(mode: str) -> None:
    clock = ManualClock()
    a, b = Scripted("a"), Scripted("b")
    gw = limited(a, b, clock, rpm=2)
    for _ in range(2):
        assert (await run(gw, mode)).metadata.gateway["model_name"] == "a"
        clock.advance(10)
    resp = await run(gw, mode)
    skip = resp.metadata.gateway["history"][0]
    assert (skip["model_name"], skip["skipped"]) == ("a", "rpm limit")
    assert skip["retry_at"] == pytest.approx(clock.time() - 20 + 60)
    assert resp.metadata.gateway["model_name"] == "b" and len(a.calls) == 2
    clock.advance(40)  # the first call is now 60 s old
    assert (await run(gw, mode)).metadata.gateway["model_name"] == "a"
    stats = gw.stats()["deployments"]["a"]
    assert stats["failures"] == {} and stats["skips"] == {"rpm limit": 1}
    assert stats["breaker"] == "closed" and stats["rpm_used"] == 2


@MODES
async def test_every_deployment_at_its_limit_fails_fast_with_retry_after(mode: str) -> None:
    clock = ManualClock()
    gw = ModelGateway(
        [
            {"model_name": "a", "model": Scripted("a"), "rpm": 1},
            {"model_name": "b", "model": Scripted("b"), "rpm": 1},
        ],
        clock=clock,
    )
    await run(gw, mode)
    clock.advance(5)
    await run(gw, mode)
    clock.advance(5)
    with pytest.raises(ModelRouterError) as info:
        await run(gw, mode)
    assert info.value.retry_after == pytest.approx(50)
    assert "rpm limit: a, b" in str(info.value)


# -- tpm ---------------------------------------------------------------------------------------
@MODES
async def test_tpm_counts_the_usage_responses_report(mode: str) -> None:
    clock = ManualClock()
    a, b = Metered("a", 400), Scripted("b")
    gw = limited(a, b, clock, tpm=1000)
    for _ in range(3):  # 400, 800, 1200 tokens: the third call crosses the limit
        assert (await run(gw, mode)).metadata.gateway["model_name"] == "a"
        clock.advance(1)
    resp = await run(gw, mode)
    assert resp.metadata.gateway["history"][0]["skipped"] == "tpm limit"
    assert gw.stats()["deployments"]["a"]["tpm_used"] == 1200
    clock.advance(60)
    assert (await run(gw, mode)).metadata.gateway["model_name"] == "a"


@MODES
async def test_tpm_counts_stream_usage_when_the_stream_ends(mode: str) -> None:
    clock = ManualClock()

    class MeteredStream(Scripted):
        def _answer(self, item: Any, kwargs: dict[str, Any]) -> Any:
            resp = super()._answer(item, kwargs)

            def chunks() -> Any:
                yield "x"
                metadata_of(resp)["usage"] = {"total_tokens": 700}

            resp.set_source(chunks())
            return resp

    a = MeteredStream("a", chunks=["x"])
    gw = limited(a, Scripted("b", chunks=["y"]), clock, tpm=1000)
    for _ in range(2):
        if mode == "sync":
            list(gw(messages="hi", stream=True))
        else:
            [c async for c in (await gw.acall(messages="hi", stream=True)).consume()]
    assert gw.stats()["deployments"]["a"]["tpm_used"] == 1400


# -- max_concurrency ---------------------------------------------------------------------------
async def test_max_concurrency_skips_while_calls_are_in_flight() -> None:
    release = asyncio.Event()

    class Slow(Scripted):
        async def acall(self, **kwargs: Any) -> Any:
            await release.wait()
            return self._answer(self._next(kwargs), kwargs)

    a, b = Slow("a"), Scripted("b")
    gw = limited(a, b, ManualClock(), max_concurrency=2)
    first = [asyncio.ensure_future(gw.acall(messages="hi")) for _ in range(2)]
    await asyncio.sleep(0)
    third = await gw.acall(messages="hi")
    assert third.metadata.gateway["history"][0]["skipped"] == "max_concurrency reached"
    assert gw.stats()["deployments"]["a"]["in_flight"] == 2
    release.set()
    assert [(await f).metadata.gateway["model_name"] for f in first] == ["a", "a"]
    assert (await gw.acall(messages="hi")).metadata.gateway["model_name"] == "a"
    assert gw.stats()["deployments"]["a"]["leases"] == 0


@MODES
async def test_a_stream_holds_its_concurrency_slot_until_it_ends(mode: str) -> None:
    a, b = Scripted("a", chunks=["1", "2"]), Scripted("b", chunks=["b"])
    gw = limited(a, b, ManualClock(), max_concurrency=1)
    open_stream = await run(gw, mode, stream=True)
    other = await run(gw, mode, stream=True)
    assert other.metadata.gateway["model_name"] == "b"
    assert other.metadata.gateway["history"][0]["skipped"] == "max_concurrency reached"
    if mode == "sync":
        assert list(open_stream) == ["1", "2"]
        list(other)
    else:
        assert [c async for c in open_stream.consume()] == ["1", "2"]
        [c async for c in other.consume()]
    assert (await run(gw, mode, stream=True)).metadata.gateway["model_name"] == "a"


def test_an_unread_stream_gives_its_slot_back_when_collected() -> None:
    a, b = Scripted("a", chunks=["1"]), Scripted("b", chunks=["b"])
    gw = limited(a, b, ManualClock(), max_concurrency=1)
    stream = gw(messages="hi", stream=True)
    assert gw.stats()["deployments"]["a"]["leases"] == 1
    del stream
    gc.collect()
    stats = gw.stats()["deployments"]["a"]
    assert stats["leases"] == 0 and stats["in_flight"] == 0


def test_a_stream_closed_early_gives_its_slot_back() -> None:
    a, b = Scripted("a", chunks=["1", "2", "3"]), Scripted("b", chunks=["b"])
    gw = limited(a, b, ManualClock(), max_concurrency=1)
    stream = gw(messages="hi", stream=True)
    for _ in stream:
        break
    stream.close()
    assert gw.stats()["deployments"]["a"]["leases"] == 0


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("rpm", 0, ValueError),
        ("rpm", "60", TypeError),
        ("tpm", -5, ValueError),
        ("tpm", 1.5, TypeError),
        ("max_concurrency", 0, ValueError),
        ("max_concurrency", True, TypeError),
        ("weight", -1, ValueError),
        ("weight", "heavy", TypeError),
    ],
)
def test_limit_keys_are_validated(key: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=f"{key} of deployment 'a'"):
        ModelGateway([{"model_name": "a", "model": Scripted("a"), key: value}])


def test_unknown_keys_list_the_new_accepted_keys() -> None:
    with pytest.raises(ValueError, match=r"accepted keys: .*breaker, weight, rpm, tpm"):
        ModelGateway([{"model_name": "a", "model": Scripted("a"), "rmp": 5}])


def test_limits_appear_in_stats() -> None:
    gw = limited(Scripted("a"), Scripted("b"), ManualClock(), rpm=5, tpm=100, max_concurrency=3)
    assert gw.stats()["deployments"]["a"]["limits"] == {
        "rpm": 5,
        "tpm": 100,
        "max_concurrency": 3,
    }


def test_usage_as_an_attribute_object_counts_too() -> None:
    from msgflux.models.gateway.outcome import tokens_of as _tokens

    class Usage:
        total_tokens = 42

    resp = ModelResponse()
    resp.set_metadata({"usage": Usage()})
    assert _tokens(resp) == 42
    resp.set_metadata({"usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    assert _tokens(resp) == 7
    assert _tokens(object()) == 0
