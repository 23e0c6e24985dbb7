"""The engine on its own: a table of scripted outcomes and the decisions they must produce.

Nothing here calls a model, reads a clock or sleeps: each case feeds :class:`CallState` the
outcome of every attempt it asks for (an exception or an answer) and checks the sequence of
actions (which deployment, which attempt number, how long to sleep first) and how the call
ends. A second part races hedges and timeouts on a :class:`ManualClock` through the real
gateway, deterministically and without real sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from msgflux import Hedge, ManualClock, ModelGateway
from msgflux.exceptions import (
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
    UnsupportedFeatureError,
)
from msgflux.models.gateway.config import GatewayConfig
from msgflux.models.gateway.deployment import parse_deployments
from msgflux.models.gateway.engine import ATTEMPT, RAISE, RETURN, CallConfig, CallState
from msgflux.models.gateway.state import FAILURE, FIRST, IGNORED, SUCCESS
from msgflux.retry import wait_fixed
from tests.fakes import Scripted

OK = "ok"


def err500() -> InternalServerError:
    return InternalServerError("boom", status_code=500)


@dataclasses.dataclass
class Case:
    name: str
    outcomes: dict[str, list[Any]]
    """Per deployment, what each of its attempts does (an exception is raised, OK answers)."""
    expected: list[tuple[str, int, float]]
    """(deployment, attempt number, delay before it) for every attempt the engine asks for."""
    ends: str
    """"return <deployment>" or "raise <ErrorClass>: <message fragment>"."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    deployments: tuple[str, ...] = ("a", "b")


CASES = [
    Case("first answers", {"a": [OK]}, [("a", 1, 0.0)], "return a"),
    Case("falls back", {"a": [err500()], "b": [OK]}, [("a", 1, 0.0), ("b", 1, 0.0)], "return b"),
    Case(
        "retries a transient error with backoff",
        {"a": [err500(), err500(), OK]},
        [("a", 1, 0.0), ("a", 2, 0.25), ("a", 3, 0.25)],
        "return a",
        {"max_retries": 2, "wait": wait_fixed(0.25), "backoff_base": 0.5},
    ),
    Case(
        "does not retry a bad request, falls back",
        {"a": [BadRequestError("bad", status_code=400)], "b": [OK]},
        [("a", 1, 0.0), ("b", 1, 0.0)],
        "return b",
        {"max_retries": 3},
    ),
    Case(
        "Retry-After wins over a shorter backoff, capped",
        {"a": [RateLimitError("slow", retry_after=50.0), OK]},
        [("a", 1, 0.0), ("a", 2, 7.0)],
        "return a",
        {"max_retries": 1, "retry_after_cap": 7.0},
    ),
    Case(
        "raise_on stops at once",
        {"a": [BadRequestError("bad", status_code=400)], "b": [OK]},
        [("a", 1, 0.0)],
        "raise BadRequestError: bad",
        {"raise_on": BadRequestError},
    ),
    Case(
        "fallback_on that does not match raises the error",
        {"a": [err500()], "b": [OK]},
        [("a", 1, 0.0)],
        "raise InternalServerError: boom",
        {"fallback_on": RateLimitError},
    ),
    Case(
        "max_attempts across deployments",
        {"a": [err500()], "b": [err500()], "c": [OK]},
        [("a", 1, 0.0), ("b", 1, 0.0)],
        "raise ModelRouterError: max_attempts=2 reached",
        {"max_attempts": 2},
        ("a", "b", "c"),
    ),
    Case(
        "no retry when its sleep would pass the deadline",
        {"a": [RateLimitError("slow", retry_after=10.0)], "b": [OK]},
        [("a", 1, 0.0), ("b", 1, 0.0)],
        "return b",
        {"max_retries": 1, "deadline": 5.0},
    ),
    Case(
        "a provider that cannot express the request is skipped, not attempted",
        {"a": [UnsupportedFeatureError("n=3")], "b": [OK]},
        [("a", 1, 0.0), ("b", 1, 0.0)],
        "return b",
    ),
    Case(
        "every deployment failed",
        {"a": [err500()], "b": [err500()]},
        [("a", 1, 0.0), ("b", 1, 0.0)],
        "raise ModelRouterError: All 2 available models failed",
    ),
]


def _engine(case: Case) -> CallState:
    cfg = GatewayConfig(**case.options)
    deployments = parse_deployments(
        [{"model_name": n, "model": Scripted(n)} for n in case.deployments],
        default_timezone=None,
        default_retry=cfg.retry_policy,
        default_timeout=cfg.timeout,
        default_breaker=cfg.default_breaker,
    )
    call_cfg = CallConfig(
        cfg.max_attempts, cfg.deadline, cfg.fallback_match, cfg.raise_match, cfg.mid_stream
    )
    return CallState(call_cfg, deployments, 0.0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_engine_decisions(case: Case) -> None:
    call = _engine(case)
    outcomes = {name: list(items) for name, items in case.outcomes.items()}
    now = 0.0
    seen: list[tuple[str, int, float]] = []
    step = call.begin(now)
    while step.action is ATTEMPT:
        dep = step.deployment
        assert dep is not None
        seen.append((dep.name, step.number, step.delay))
        now += step.delay
        step.ticket = FIRST
        outcome = outcomes[dep.name].pop(0)
        if isinstance(outcome, BaseException):
            nxt, _ = call.failed(outcome, now, now + 0.01, 1000.0 + now, step)
            assert nxt is not None
            step = nxt
        else:
            step = call.answered(step, outcome, now, now + 0.01, 1000.0 + now, stream=False)
        now += 0.01
    assert seen == case.expected
    kind, _, what = case.ends.partition(" ")
    if kind == "return":
        assert step.action is RETURN and step.deployment is not None
        assert step.deployment.name == what
    else:
        assert step.action is RAISE and step.error is not None
        name, _, fragment = what.partition(": ")
        assert type(step.error).__name__ == name and fragment in str(step.error)


def test_the_router_error_records_every_attempt_and_skip() -> None:
    case = Case("", {"a": [UnsupportedFeatureError("n=3")], "b": [err500()]}, [], "")
    call = _engine(case)
    step = call.begin(0.0)
    while step.action is ATTEMPT:
        name = step.deployment.name  # type: ignore[union-attr]
        nxt, _ = call.failed(case.outcomes[name][0], 0.0, 0.0, 0.0, step)
        assert nxt is not None
        step = nxt
    error = step.error
    assert isinstance(error, ModelRouterError)
    assert [(a.model_name, a.skipped) for a in error.attempts] == [
        ("a", "unsupported: n=3"),
        ("b", None),
    ]
    assert [type(e) for e in error.exceptions] == [InternalServerError]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (err500(), FAILURE),
        (RateLimitError("slow", retry_after=3.0), FAILURE),
        (BadRequestError("bad", status_code=400), IGNORED),
        (UnsupportedFeatureError("n=3"), IGNORED),
        (ValueError("user model"), IGNORED),
    ],
)
def test_what_a_failure_settles_in_the_store(exc: BaseException, outcome: int) -> None:
    call = _engine(Case("", {}, [], "", {}, ("a", "b")))
    step = call.begin(0.0)
    step.ticket = FIRST
    _, settle = call.failed(exc, 0.0, 0.5, 100.0, step)
    assert settle is not None and settle.outcome == outcome
    assert settle.duration == 0.5
    assert settle.retry_after == (3.0 if isinstance(exc, RateLimitError) else 0.0)


def test_an_answer_settles_success_with_the_tokens_it_reported() -> None:
    call = _engine(Case("", {}, [], "", {}, ("a",)))
    step = call.begin(0.0)
    step.ticket = FIRST
    answer = type("R", (), {"metadata": {"usage": {"total_tokens": 42}}})()
    done = call.answered(step, answer, 0.0, 0.2, 100.0, stream=False)
    assert done.action is RETURN and done.result is answer
    assert done.settle is not None and done.settle.outcome == SUCCESS


# -- races and timeouts on a manual clock (no real sleeping) -----------------------------------
class ClockModel(Scripted):
    """Answers after ``delay`` seconds of the gateway's (manual) clock."""

    def __init__(self, model_id: str, delay: float, clock: ManualClock) -> None:
        super().__init__(model_id)
        self.delay = delay
        self.clock = clock
        self.cancelled = 0

    async def acall(self, **kwargs: Any) -> Any:
        try:
            await self.clock.asleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self._answer(self._next(kwargs), kwargs)


async def test_a_hedge_wins_in_virtual_time_without_real_sleeping() -> None:
    clock = ManualClock()
    slow, fast = ClockModel("slow", 60.0, clock), ClockModel("fast", 2.0, clock)
    gateway = ModelGateway(
        [{"model_name": "slow", "model": slow}, {"model_name": "fast", "model": fast}],
        hedge=Hedge(delay=5.0),
        clock=clock,
    )
    started = time.perf_counter()
    response = await gateway.acall(messages="hi")
    assert time.perf_counter() - started < 0.5  # a minute of virtual time, no real waiting
    assert response.metadata.gateway["model_name"] == "fast"
    assert clock.perf() == pytest.approx(7.0)  # hedged at 5 s, answered 2 s later
    assert slow.cancelled == 1


async def test_the_first_attempt_wins_before_the_hedge_delay_in_virtual_time() -> None:
    clock = ManualClock()
    a, b = ClockModel("a", 3.0, clock), ClockModel("b", 1.0, clock)
    gateway = ModelGateway(
        [{"model_name": "a", "model": a}, {"model_name": "b", "model": b}],
        hedge=Hedge(delay=5.0),
        clock=clock,
    )
    response = await gateway.acall(messages="hi")
    assert response.metadata.gateway["model_name"] == "a"
    assert b.calls == [] and clock.perf() == pytest.approx(3.0)


async def test_an_attempt_timeout_fires_in_virtual_time() -> None:
    clock = ManualClock()
    slow, good = ClockModel("slow", 600.0, clock), ClockModel("good", 1.0, clock)
    gateway = ModelGateway(
        [{"model_name": "slow", "model": slow}, {"model_name": "good", "model": good}],
        timeout=10.0,
        clock=clock,
    )
    started = time.perf_counter()
    response = await gateway.acall(messages="hi")
    assert time.perf_counter() - started < 0.5
    assert response.metadata.gateway["model_name"] == "good"
    history = response.metadata.gateway["history"]
    assert history[0]["error"] == APITimeoutError.__name__
    assert clock.perf() == pytest.approx(11.0)


async def test_a_deadline_that_cuts_the_last_attempt_short_is_reported_as_a_deadline() -> None:
    clock = ManualClock()
    slow = ClockModel("slow", 600.0, clock)
    gateway = ModelGateway([{"model_name": "slow", "model": slow}], deadline=3.0, clock=clock)
    with pytest.raises(ModelRouterError, match=r"Deadline of 3s exceeded after 1 attempt"):
        await gateway.acall(messages="hi")
