"""Fallback order, preference, error reporting, metadata and hooks (sync and async paths)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from msgflux.exceptions import (
    BadRequestError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
)
from msgflux.models.gateway import GatewayEvent, ModelGateway
from tests.fakes import Scripted

BOOM = RuntimeError("Simulate failure")


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def deployments(*models: Scripted) -> list[dict[str, Any]]:
    return [{"model_name": m.model_id, "model": m} for m in models]


@MODES
async def test_first_success_is_returned_and_later_models_are_not_called(mode: str) -> None:
    a, b = Scripted("a"), Scripted("b")
    resp = await run(ModelGateway(deployments(a, b)), mode, messages="hi")
    assert resp.consume() == "answer from a"
    assert len(a.calls) == 1 and b.calls == []


@MODES
async def test_any_exception_falls_back_to_the_next_deployment(mode: str) -> None:
    a, b = Scripted("a", [BOOM]), Scripted("b")
    resp = await run(ModelGateway(deployments(a, b)), mode, messages="hi")
    assert resp.consume() == "answer from b"
    assert resp.metadata.gateway["model_name"] == "b"
    assert resp.metadata.gateway["attempts"] == 2
    assert resp.metadata.gateway["fallbacks"] == ["a"]
    assert [h["error"] for h in resp.metadata.gateway["history"]] == ["RuntimeError", None]


@MODES
async def test_kwargs_are_passed_through(mode: str) -> None:
    a = Scripted("a")
    await run(ModelGateway(deployments(a, Scripted("b"))), mode, messages="hi", temperature=0)
    assert a.calls == [{"messages": "hi", "temperature": 0}]


@MODES
async def test_model_preference_goes_first_then_the_rest_in_order(mode: str) -> None:
    a, b, c = Scripted("a"), Scripted("b", [BOOM]), Scripted("c")
    gateway = ModelGateway(deployments(a, b, c))
    resp = await run(gateway, mode, model_preference="b", messages="hi")
    assert resp.metadata.gateway["model_name"] == "a"
    assert resp.metadata.gateway["fallbacks"] == ["b"]
    assert c.calls == []


@MODES
async def test_all_failed_raises_router_error_with_every_attempt(mode: str) -> None:
    a = Scripted("a", [RateLimitError("slow down", provider="fake", model_id="a")])
    b = Scripted("b", [BOOM])
    with pytest.raises(ModelRouterError) as info:
        await run(ModelGateway(deployments(a, b)), mode, messages="hi")
    err = info.value
    assert str(err).startswith("All 2 available models failed")
    assert [type(e) for e in err.exceptions] == [RateLimitError, RuntimeError]
    assert [(n, p) for n, p, _ in err.model_info] == [("a", "fake"), ("b", "fake")]
    assert [(a.model_name, a.model_id, a.attempt) for a in err.attempts] == [
        ("a", "a", 1),
        ("b", "b", 1),
    ]
    assert all(a.duration >= 0 and a.started_at > 0 for a in err.attempts)
    lines = str(err).splitlines()
    assert len(lines) == 3
    assert "RateLimitError" in lines[1] and "RuntimeError: Simulate failure" in lines[2]
    assert err.message == "All 2 available models failed"


@MODES
async def test_raise_on_stops_at_once_and_raises_the_error_itself(mode: str) -> None:
    bad = BadRequestError("bad schema", status_code=400)
    a, b = Scripted("a", [bad]), Scripted("b")
    gateway = ModelGateway(deployments(a, b), raise_on=(BadRequestError,))
    with pytest.raises(BadRequestError) as info:
        await run(gateway, mode, messages="hi")
    assert info.value is bad
    assert b.calls == []


@MODES
async def test_fallback_on_limits_which_errors_fall_back(mode: str) -> None:
    a = Scripted("a", [ValueError("not a provider error")])
    gateway = ModelGateway(deployments(a, Scripted("b")), fallback_on=[RateLimitError])
    with pytest.raises(ValueError, match="not a provider error"):
        await run(gateway, mode, messages="hi")


@MODES
async def test_fallback_on_accepts_predicates(mode: str) -> None:
    a = Scripted("a", [ValueError("retryable")])
    gateway = ModelGateway(
        deployments(a, Scripted("b")), fallback_on=lambda e: "retryable" in str(e)
    )
    assert (await run(gateway, mode, messages="hi")).consume() == "answer from b"


@MODES
async def test_max_attempts_caps_attempts_across_deployments(mode: str) -> None:
    models = [Scripted(n, [BOOM]) for n in "abc"]
    gateway = ModelGateway(deployments(*models), max_attempts=2)
    with pytest.raises(ModelRouterError, match="max_attempts=2") as info:
        await run(gateway, mode, messages="hi")
    assert len(info.value.attempts) == 2
    assert models[2].calls == []


@MODES
async def test_hooks_see_attempts_fallbacks_success_and_failure(mode: str) -> None:
    events: list[GatewayEvent] = []
    gateway = ModelGateway(
        deployments(Scripted("a", [BOOM, BOOM]), Scripted("b", [None, BOOM])),
        on_attempt=events.append,
        on_fallback=events.append,
        on_success=[events.append],
        on_failure=events.append,
    )
    await run(gateway, mode, messages="hi")
    assert [(e.kind, e.model_name) for e in events] == [
        ("attempt", "a"),
        ("fallback", "a"),
        ("attempt", "b"),
        ("success", "b"),
    ]
    assert events[1].next_model_name == "b" and events[1].exception is BOOM
    events.clear()
    with pytest.raises(ModelRouterError):
        await run(gateway, mode, messages="hi")
    assert events[-1].kind == "failure"
    assert isinstance(events[-1].exception, ModelRouterError)


@MODES
async def test_a_raising_hook_does_not_break_the_call(mode: str) -> None:
    def bad_hook(event: GatewayEvent) -> None:
        raise KeyError("hook bug")

    gateway = ModelGateway(deployments(Scripted("a"), Scripted("b")), on_success=bad_hook)
    assert (await run(gateway, mode, messages="hi")).consume() == "answer from a"


@MODES
async def test_logs_one_debug_line_per_attempt_and_a_warning_per_fallback(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = ModelGateway(
        deployments(
            Scripted("a", [InternalServerError("down", status_code=503)]),
            Scripted("b", [BOOM]),
            Scripted("c"),
        )
    )
    with caplog.at_level(logging.DEBUG, logger="msgflux.gateway"):
        await run(gateway, mode, messages="hi")
    records = [r for r in caplog.records if r.name == "msgflux.gateway"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    debugs = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert warnings == [
        "falling back from 'a' to 'b' after InternalServerError",
        "falling back from 'b' to 'c' after RuntimeError",
    ]
    assert len(debugs) == 3


def test_user_returned_metadata_none_still_gets_gateway_record() -> None:
    class NoMeta(Scripted):
        def __call__(self, **kwargs: Any) -> Any:
            resp = super().__call__(**kwargs)
            resp.metadata = None
            return resp

    resp = ModelGateway(deployments(NoMeta("a"), Scripted("b")))(messages="hi")
    assert resp.metadata.gateway["model_name"] == "a"


async def test_one_gateway_is_shared_by_many_tasks_without_crosstalk() -> None:
    import asyncio

    gateway = ModelGateway(deployments(Scripted("a", [BOOM] * 50), Scripted("b")))
    results = await asyncio.gather(*(gateway.acall(messages=str(i)) for i in range(200)))
    names = [r.metadata.gateway["model_name"] for r in results]
    assert names.count("b") == 50 and names.count("a") == 150
    assert all(
        r.metadata.gateway["fallbacks"] == (["a"] if n == "b" else [])
        for r, n in zip(results, names, strict=True)
    )
