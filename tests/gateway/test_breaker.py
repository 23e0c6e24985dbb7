"""Circuit breakers through the gateway: every transition, skips, fail-fast, probing.

The clock is a ManualClock, so "30 seconds later" is one ``advance(30)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from msgflux import Breaker, ManualClock, MemoryStore, ModelGateway
from msgflux.exceptions import (
    APIConnectionError,
    BadRequestError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
    RequestTimeoutError,
)
from tests.fakes import Scripted

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
E500 = InternalServerError("boom", status_code=500)


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", "hi")
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


def gateway(*models: Scripted, clock: ManualClock | None = None, **options: Any) -> ModelGateway:
    return ModelGateway(
        [{"model_name": m.model_id, "model": m} for m in models],
        clock=clock or ManualClock(),
        **options,
    )


def dead(name: str = "a", error: BaseException = E500) -> Scripted:
    return Scripted(name, default=error)


def breaker_of(gw: ModelGateway, name: str) -> dict[str, Any]:
    return dict(gw.stats()["deployments"][name])


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold"),
        ({"failure_rate": 1.5}, ValueError, "failure_rate"),
        ({"failure_rate": "half"}, TypeError, "failure_rate"),
        ({"failure_rate": 0}, ValueError, "failure_rate"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls"),
        ({"window": -1}, ValueError, "window"),
        ({"open_for": 0}, ValueError, "open_for"),
        ({"open_for": True}, TypeError, "open_for"),
        ({"open_for": 50, "max_open_for": 10}, ValueError, "max_open_for"),
        ({"half_open_probes": 0}, ValueError, "half_open_probes"),
        ({"slow_call_duration": 0}, ValueError, "slow_call_duration"),
        ({"probe_timeout": float("inf")}, ValueError, "probe_timeout"),
        ({"failure_on": 3}, TypeError, "failure_on"),
        ({"failure_threshold": None, "failure_rate": None}, ValueError, "failure_threshold"),
    ],
)
def test_breaker_settings_are_validated(kwargs: dict[str, Any], error: type, field: str) -> None:
    with pytest.raises(error, match=field):
        Breaker(**kwargs)


def test_breaker_option_forms() -> None:
    a = Scripted("a")
    with pytest.raises(TypeError, match="breaker must be a Breaker"):
        gateway(a, breaker="on")
    with pytest.raises(ValueError, match=r"unknown setting.*'open_four'"):
        gateway(a, breaker={"open_four": 3})
    with pytest.raises(TypeError, match="breaker of deployment 'a'"):
        ModelGateway([{"model_name": "a", "model": a, "breaker": 3}])
    assert gateway(a, breaker={"open_for": 3}).stats()["deployments"]["a"]["breaker"] == "closed"
    assert gateway(a, breaker=False).stats()["deployments"]["a"]["breaker"] == "disabled"


# -- closed -> open ----------------------------------------------------------------------------
@MODES
async def test_opens_after_consecutive_failures_then_skips_without_calling(mode: str) -> None:
    clock = ManualClock()
    a, b = dead(), Scripted("b")
    gw = gateway(a, b, clock=clock, breaker=Breaker(failure_threshold=3, open_for=30))
    for _ in range(3):
        assert (await run(gw, mode)).metadata.gateway["model_name"] == "b"
    assert len(a.calls) == 3
    assert breaker_of(gw, "a")["breaker"] == "open"
    resp = await run(gw, mode)
    assert len(a.calls) == 3  # skipped, not called
    skip, answer = resp.metadata.gateway["history"]
    assert skip["model_name"] == "a" and skip["skipped"] == "circuit open"
    assert skip["attempt"] == 0 and skip["error"] is None
    assert skip["retry_at"] == pytest.approx(clock.time() + 30)
    assert answer["model_name"] == "b" and resp.metadata.gateway["attempts"] == 1
    stats = breaker_of(gw, "a")
    assert stats["skips"] == {"circuit open": 1}
    assert stats["reopens_at"] == pytest.approx(clock.time() + 30)


@MODES
async def test_failure_rate_over_the_window_opens(mode: str) -> None:
    clock = ManualClock()
    flaky = Scripted("a", [E500, E500, E500, None, None, E500])
    gw = gateway(
        flaky,
        Scripted("b"),
        clock=clock,
        breaker=Breaker(failure_threshold=None, failure_rate=0.5, minimum_calls=6, window=60),
    )
    for _ in range(5):
        await run(gw, mode)
        clock.advance(1)
    assert breaker_of(gw, "a")["breaker"] == "closed"  # 3/5 failed but only 5 calls
    await run(gw, mode)  # 6th call: 4 failures of 6
    assert breaker_of(gw, "a")["breaker"] == "open"


@MODES
async def test_only_provider_failures_count(mode: str) -> None:
    errors = [
        BadRequestError("bad", status_code=400),
        RuntimeError("user bug"),
        ValueError("nope"),
    ]
    a = Scripted("a", errors * 3)
    gw = gateway(a, Scripted("b"), breaker=Breaker(failure_threshold=1))
    for _ in range(9):
        await run(gw, mode)
    assert len(a.calls) == 9
    assert breaker_of(gw, "a")["breaker"] == "closed"


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("429", status_code=429),
        RequestTimeoutError("408", status_code=408),
        InternalServerError("503", status_code=503),
        APIConnectionError("refused"),
        TimeoutError("slow"),
        ConnectionResetError("reset"),
    ],
)
def test_provider_side_failures_trip(error: BaseException) -> None:
    gw = gateway(Scripted("a", [error]), Scripted("b"), breaker=Breaker(failure_threshold=1))
    gw(messages="hi")
    assert breaker_of(gw, "a")["breaker"] == "open"


def test_raise_on_errors_never_trip() -> None:
    a = Scripted("a", default=RateLimitError("429", status_code=429))
    gw = gateway(a, Scripted("b"), breaker=Breaker(failure_threshold=1), raise_on=RateLimitError)
    for _ in range(3):
        with pytest.raises(RateLimitError):
            gw(messages="hi")
    assert len(a.calls) == 3 and breaker_of(gw, "a")["breaker"] == "closed"


def test_custom_failure_on() -> None:
    a = Scripted("a", [RuntimeError("x")])
    gw = gateway(
        a,
        Scripted("b"),
        breaker=Breaker(failure_threshold=1, failure_on=lambda e: isinstance(e, RuntimeError)),
    )
    gw(messages="hi")
    assert breaker_of(gw, "a")["breaker"] == "open"


async def test_caller_cancellation_never_trips() -> None:
    started = asyncio.Event()

    class Hanging(Scripted):
        async def acall(self, **kwargs: Any) -> Any:
            started.set()
            await asyncio.sleep(3600)

    a = Hanging("a")
    gw = gateway(a, Scripted("b"), breaker=Breaker(failure_threshold=1, half_open_probes=1))
    for _ in range(3):
        started.clear()
        task = asyncio.ensure_future(gw.acall(messages="hi"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = breaker_of(gw, "a")
    assert stats["breaker"] == "closed"
    assert stats["in_flight"] == 0 and stats["cancelled"] == 3 and stats["failures"] == {}


# -- open -> half-open -> closed / open --------------------------------------------------------
@MODES
async def test_half_open_probe_success_closes(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [E500])
    gw = gateway(a, Scripted("b"), clock=clock, breaker=Breaker(failure_threshold=1, open_for=10))
    await run(gw, mode)
    clock.advance(9.9)
    assert (await run(gw, mode)).metadata.gateway["history"][0]["skipped"] == "circuit open"
    assert breaker_of(gw, "a")["breaker"] == "open"
    clock.advance(0.1)
    assert breaker_of(gw, "a")["breaker"] == "half_open"
    resp = await run(gw, mode)
    assert resp.metadata.gateway["model_name"] == "a"  # the probe went through and answered
    assert breaker_of(gw, "a")["breaker"] == "closed"
    assert gw.health()["deployments"]["a"]["status"] == "healthy"


@MODES
async def test_failed_probes_double_the_open_time_up_to_the_cap(mode: str) -> None:
    clock = ManualClock()
    a = dead()
    gw = gateway(
        a,
        Scripted("b"),
        clock=clock,
        breaker=Breaker(failure_threshold=1, open_for=10, max_open_for=25),
    )
    await run(gw, mode)
    opened = []
    for _ in range(3):
        reopens = breaker_of(gw, "a")["reopens_at"]
        opened.append(reopens - clock.time())
        clock.advance(reopens - clock.time())
        resp = await run(gw, mode)  # the probe fails, b answers
        assert resp.metadata.gateway["history"][0]["error"] == "InternalServerError"
    opened.append(breaker_of(gw, "a")["reopens_at"] - clock.time())
    assert opened == pytest.approx([10, 20, 25, 25])
    assert len(a.calls) == 4


@MODES
async def test_retry_after_extends_the_open_time(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [RateLimitError("slow down", status_code=429, retry_after=120)])
    gw = gateway(a, Scripted("b"), clock=clock, breaker=Breaker(failure_threshold=1, open_for=5))
    await run(gw, mode)
    assert breaker_of(gw, "a")["reopens_at"] == pytest.approx(clock.time() + 120)


async def test_only_one_probe_at_a_time() -> None:
    clock = ManualClock()
    release = asyncio.Event()
    entered = asyncio.Event()

    class Gate(Scripted):
        async def acall(self, **kwargs: Any) -> Any:
            if self.script:
                return await super().acall(**kwargs)
            entered.set()
            await release.wait()
            return self._answer(None, kwargs)

    a = Gate("a", [E500])
    gw = gateway(a, Scripted("b"), clock=clock, breaker=Breaker(failure_threshold=1, open_for=10))
    await gw.acall(messages="hi")
    clock.advance(10)
    probe = asyncio.ensure_future(gw.acall(messages="hi"))
    await entered.wait()
    other = await gw.acall(messages="hi")
    skip = other.metadata.gateway["history"][0]
    assert skip["skipped"] == "circuit half-open, probe in flight"
    release.set()
    assert (await probe).metadata.gateway["model_name"] == "a"
    assert breaker_of(gw, "a")["breaker"] == "closed"


# -- all open ----------------------------------------------------------------------------------
@MODES
async def test_all_open_fails_fast_with_retry_after(mode: str) -> None:
    clock = ManualClock()
    a, b = dead("a"), dead("b")
    gw = ModelGateway(
        [
            {"model_name": "a", "model": a, "breaker": {"failure_threshold": 1, "open_for": 20}},
            {"model_name": "b", "model": b, "breaker": {"failure_threshold": 1, "open_for": 8}},
        ],
        clock=clock,
    )
    with pytest.raises(ModelRouterError, match="All 2 available models failed"):
        await run(gw, mode)
    clock.advance(1)
    with pytest.raises(ModelRouterError) as info:
        await run(gw, mode)
    err = info.value
    assert len(a.calls) == len(b.calls) == 1
    assert err.retry_after == pytest.approx(7)
    assert str(err).startswith("No model available: all 2 deployments skipped (circuit open: a, b)")
    assert [(x.model_name, x.skipped) for x in err.attempts] == [
        ("a", "circuit open"),
        ("b", "circuit open"),
    ]
    assert err.exceptions == []
    assert gw.health()["status"] == "down"


@MODES
async def test_when_all_open_probe_tries_the_first_to_reopen(mode: str) -> None:
    clock = ManualClock()
    a, b = Scripted("a", [E500]), Scripted("b", [E500])
    gw = ModelGateway(
        [
            {"model_name": "a", "model": a, "breaker": {"failure_threshold": 1, "open_for": 20}},
            {"model_name": "b", "model": b, "breaker": {"failure_threshold": 1, "open_for": 8}},
        ],
        clock=clock,
        when_all_open="probe",
    )
    with pytest.raises(ModelRouterError):
        await run(gw, mode)
    clock.advance(1)
    resp = await run(gw, mode)
    assert resp.metadata.gateway["model_name"] == "b"
    assert [h["skipped"] for h in resp.metadata.gateway["history"]] == ["circuit open", None]
    assert breaker_of(gw, "b")["breaker"] == "closed"
    assert breaker_of(gw, "a")["breaker"] == "open"


def test_when_all_open_is_validated() -> None:
    with pytest.raises(ValueError, match="when_all_open"):
        gateway(Scripted("a"), when_all_open="wait")


# -- configuration per gateway and per deployment ----------------------------------------------
@MODES
async def test_breakers_can_be_switched_off(mode: str) -> None:
    a = dead()
    gw = gateway(a, Scripted("b"), breaker=None)
    for _ in range(12):
        await run(gw, mode)
    assert len(a.calls) == 12


@MODES
async def test_per_deployment_breaker_overrides_the_gateway(mode: str) -> None:
    a, b = dead("a"), dead("b")
    gw = ModelGateway(
        [
            {"model_name": "a", "model": a, "breaker": False},
            {"model_name": "b", "model": b, "breaker": {"failure_threshold": 1}},
            {"model_name": "c", "model": Scripted("c")},
        ],
        clock=ManualClock(),
        breaker=None,
    )
    for _ in range(3):
        await run(gw, mode)
    assert len(a.calls) == 3 and len(b.calls) == 1
    stats = gw.stats()["deployments"]
    assert [stats[n]["breaker"] for n in "abc"] == ["disabled", "open", "disabled"]


def test_breaker_options_survive_serialization() -> None:
    from msgflux.models.model import Model

    class Serializable(Scripted):
        pass

    gw = ModelGateway(
        [
            {"model_name": "a", "model": Model.chat_completion("openai/gpt-4.1-nano")},
            {
                "model_name": "b",
                "model": Model.chat_completion("openai/gpt-4.1-mini"),
                "breaker": {"open_for": 5},
                "rpm": 10,
                "weight": 2,
            },
        ],
        breaker=Breaker(failure_threshold=2),
        when_all_open="probe",
        strategy="weighted",
    )
    data = gw.serialize()
    state = data["state"]
    assert state["breaker"] == {"failure_threshold": 2}
    assert state["when_all_open"] == "probe" and state["strategy"] == "weighted"
    assert state["models"][1]["breaker"] == {"open_for": 5}
    again = ModelGateway.from_serialized(data)
    assert again.serialize() == data  # the breakers were rebuilt from these settings


def test_a_shared_store_shares_breaker_state_between_gateways() -> None:
    clock = ManualClock()
    store = MemoryStore()
    a1, a2 = dead(), Scripted("a")
    g1 = gateway(a1, Scripted("b"), clock=clock, state=store, breaker={"failure_threshold": 1})
    g2 = gateway(a2, Scripted("b"), clock=clock, state=store, breaker={"failure_threshold": 1})
    g1(messages="hi")
    resp = g2(messages="hi")
    assert a2.calls == [] and resp.metadata.gateway["history"][0]["skipped"] == "circuit open"
