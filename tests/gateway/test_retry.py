"""Retries on the same deployment, backoff, Retry-After, deadlines and per-attempt timeouts."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgflux._time import ManualClock
from msgflux.exceptions import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
)
from msgflux.models.gateway import ModelGateway
from msgflux.retry import (
    RetryPolicy,
    RetryState,
    next_delay,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
    wait_fixed,
)
from tests.fakes import Scripted

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


def err500() -> InternalServerError:
    return InternalServerError("upstream down", status_code=500)


def deployments(*models: Scripted, **extra: Any) -> list[dict[str, Any]]:
    return [{"model_name": m.model_id, "model": m, **extra} for m in models]


@MODES
async def test_max_retries_retries_transient_errors_on_the_same_deployment(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [err500(), APIConnectionError("reset")])
    gateway = ModelGateway(deployments(a, Scripted("b")), max_retries=2, clock=clock)
    resp = await run(gateway, mode, messages="hi")
    assert resp.metadata.gateway == {**resp.metadata.gateway, "model_name": "a", "attempts": 3}
    assert len(a.calls) == 3
    assert len(clock.sleeps) == 2


@MODES
async def test_non_transient_errors_are_not_retried(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [BadRequestError("bad", status_code=400)])
    gateway = ModelGateway(deployments(a, Scripted("b")), max_retries=3, clock=clock)
    resp = await run(gateway, mode, messages="hi")
    assert resp.metadata.gateway["model_name"] == "b"
    assert len(a.calls) == 1 and clock.sleeps == []


@MODES
@pytest.mark.parametrize(
    ("draw", "expected"), [(1.0, [1.0, 2.0, 3.0, 3.0]), (0.5, [0.5, 1.0, 1.5, 1.5])]
)
async def test_backoff_is_full_jitter_exponential_within_base_and_cap(
    mode: str, draw: float, expected: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sleeps are draw * min(cap, base * 2**(n-1)): swapping base and cap gives [1, 1, 1, 1]."""
    monkeypatch.setattr(random, "random", lambda: draw)
    clock = ManualClock()
    a = Scripted("a", [err500()] * 5)
    gateway = ModelGateway(
        deployments(a, Scripted("b")), max_retries=4, backoff_base=1.0, backoff_cap=3.0, clock=clock
    )
    await run(gateway, mode, messages="hi")
    assert clock.sleeps == expected


def test_wait_cannot_be_combined_with_backoff_base_or_cap() -> None:
    with pytest.raises(ValueError, match="wait="):
        ModelGateway(
            deployments(Scripted("a"), Scripted("b")),
            backoff_base=1.0,
            wait=wait_exponential_jitter(1.0, 3.0),
        )


@MODES
async def test_retry_after_is_honoured_and_capped(mode: str) -> None:
    clock = ManualClock()
    a = Scripted(
        "a",
        [RateLimitError("slow", retry_after=7.0), RateLimitError("slower", retry_after=999.0)],
    )
    gateway = ModelGateway(
        deployments(a, Scripted("b")), max_retries=2, retry_after_cap=20, clock=clock
    )
    resp = await run(gateway, mode, messages="hi")
    assert resp.metadata.gateway["model_name"] == "a"
    assert clock.sleeps == [7.0, 20.0]


@MODES
async def test_per_deployment_max_retries_overrides_the_gateway(mode: str) -> None:
    clock = ManualClock()
    a, b = Scripted("a", [err500()] * 3), Scripted("b", [err500()] * 3)
    gateway = ModelGateway(
        [
            {"model_name": "a", "model": a, "max_retries": 0},
            {"model_name": "b", "model": b},
        ],
        max_retries=2,
        clock=clock,
    )
    with pytest.raises(ModelRouterError) as info:
        await run(gateway, mode, messages="hi")
    assert (len(a.calls), len(b.calls)) == (1, 3)
    assert [(x.model_name, x.attempt) for x in info.value.attempts] == [
        ("a", 1),
        ("b", 1),
        ("b", 2),
        ("b", 3),
    ]


@MODES
async def test_deadline_stops_before_a_sleep_that_would_pass_it(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [RateLimitError("slow", retry_after=30.0)] * 3)
    b = Scripted("b", [BadRequestError("no", status_code=400)])
    gateway = ModelGateway(deployments(a, b), max_retries=2, deadline=10, clock=clock)
    with pytest.raises(ModelRouterError) as info:
        await run(gateway, mode, messages="hi")
    assert clock.sleeps == []  # a 30 s sleep would pass the 10 s deadline: fall back instead
    assert [x.model_name for x in info.value.attempts] == ["a", "b"]


@MODES
async def test_deadline_hit_is_reported(mode: str) -> None:
    clock = ManualClock()

    class Slow(Scripted):
        def __call__(self, **kwargs: Any) -> Any:
            clock.advance(6)
            raise err500()

        async def acall(self, **kwargs: Any) -> Any:
            return self(**kwargs)

    gateway = ModelGateway(deployments(Slow("a"), Slow("b"), Slow("c")), deadline=10, clock=clock)
    with pytest.raises(ModelRouterError, match="Deadline of 10s exceeded") as info:
        await run(gateway, mode, messages="hi")
    assert [x.model_name for x in info.value.attempts] == ["a", "b"]


@MODES
async def test_timeout_abandons_a_slow_attempt_and_counts_it_as_timeout(mode: str) -> None:
    slow, fast = Scripted("slow", delay=1.0), Scripted("fast")
    gateway = ModelGateway(deployments(slow, fast), timeout=0.05)
    began = time.perf_counter()
    resp = await run(gateway, mode, messages="hi")
    assert time.perf_counter() - began < 0.5
    assert resp.metadata.gateway["model_name"] == "fast"
    assert resp.metadata.gateway["history"][0]["error"] == "APITimeoutError"


@MODES
async def test_per_deployment_timeout_overrides_the_gateway(mode: str) -> None:
    slow = Scripted("slow", delay=0.2)
    gateway = ModelGateway(
        [
            {"model_name": "slow", "model": slow, "timeout": 1.0},
            {"model_name": "b", "model": Scripted("b")},
        ],
        timeout=0.01,
    )
    resp = await run(gateway, mode, messages="hi")
    assert resp.metadata.gateway["model_name"] == "slow"


def test_timeout_error_is_an_api_timeout_error_in_router_error() -> None:
    gateway = ModelGateway([{"model_name": "s", "model": Scripted("s", delay=0.5)}], timeout=0.02)
    with pytest.raises(ModelRouterError) as info:
        gateway(messages="hi")
    assert isinstance(info.value.exceptions[0], APITimeoutError)


# -- policies are small composable callables ----------------------------------------------------
@given(
    attempt=st.integers(1, 80),
    base=st.floats(0, 10, allow_nan=False),
    cap=st.floats(0, 60, allow_nan=False),
    u=st.floats(0, 1, exclude_max=True),
)
def test_full_jitter_backoff_stays_within_zero_and_the_capped_ceiling(
    attempt: int, base: float, cap: float, u: float
) -> None:
    wait = wait_exponential_jitter(base, cap, rng=lambda: u)
    delay = wait(RetryState(attempt, err500()))
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-9


@given(retry_after=st.floats(0, 1e6, allow_nan=False), cap=st.floats(0, 100, allow_nan=False))
def test_next_delay_never_exceeds_the_retry_after_cap_when_retry_after_wins(
    retry_after: float, cap: float
) -> None:
    policy = RetryPolicy(max_retries=1, wait=wait_fixed(0), retry_after_cap=cap)
    delay = next_delay(policy, RetryState(1, RateLimitError("x", retry_after=retry_after)))
    assert delay is not None and delay <= max(cap, 0.0)


def test_waits_add_and_stops_combine() -> None:
    state = RetryState(3, err500(), elapsed=4.0)
    assert (wait_fixed(1) + wait_fixed(0.5))(state) == 1.5
    assert (wait_fixed(1) + (lambda s: 2.0))(state) == 3.0
    assert (stop_after_attempt(5) | stop_after_delay(3))(state)
    assert not (stop_after_attempt(5) & stop_after_delay(3))(state)
    policy = RetryPolicy(max_retries=9, stop=stop_after_attempt(3))
    assert next_delay(policy, state) is None


@MODES
async def test_plain_callables_work_as_gateway_policies(mode: str) -> None:
    clock = ManualClock()
    a = Scripted("a", [ValueError("odd")] * 2)
    gateway = ModelGateway(
        deployments(a, Scripted("b")),
        max_retries=5,
        retry=lambda e: isinstance(e, ValueError),
        wait=lambda s: 0.25 * s.attempt,
        stop=lambda s: s.attempt >= 2,
        clock=clock,
    )
    resp = await run(gateway, mode, messages="hi")
    assert clock.sleeps == [0.25]
    assert resp.metadata.gateway["model_name"] == "b"


def test_an_abandoned_sync_attempt_does_not_hold_up_interpreter_exit() -> None:
    import subprocess
    import sys

    script = (
        "from tests.fakes import Scripted\n"
        "from msgflux import ModelGateway\n"
        "g = ModelGateway([{'model_name': 'stuck', 'model': Scripted('stuck', delay=60)},\n"
        "                  {'model_name': 'ok', 'model': Scripted('ok')}], timeout=0.05)\n"
        "print(g(messages='hi').metadata.gateway['model_name'])\n"
    )
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "ok"
    assert time.perf_counter() - began < 10
