"""``ModelGateway``: one object in front of several deployments of the same model type.

The two drivers (``__call__`` and ``acall``) are short loops: ask the engine for the next
step, ask the state store to admit a deployment for it (breakers, limits), make the attempt,
settle its outcome in the store and tell the engine. Everything between those calls lives in
helpers both drivers share; the hedged race is one coroutine that the sync driver runs on a
private event-loop thread, so that losers can really be cancelled (connections closed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from msgflux._time import Clock, as_clock
from msgflux.exceptions import (
    APITimeoutError,
    Attempt,
    ModelRouterError,
    StreamInterruptedError,
)
from msgflux.models.base import BaseModel
from msgflux.models.gateway.breaker import Breaker, counts_as_failure
from msgflux.models.gateway.deployment import (
    Deployment,
    parse_deployments,
    positive_int,
    validate_timeout,
)
from msgflux.models.gateway.engine import RAISE, CallConfig, CallState, Step, as_predicate
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.gateway.schedule import in_blackout, parse_timezone
from msgflux.models.gateway.state import (
    FAILURE,
    FIRST,
    IGNORED,
    SUCCESS,
    Admission,
    Settlement,
    StateStore,
    resolve_store,
)
from msgflux.models.gateway.strategy import (
    STRATEGIES,
    Strategy,
    apply_ranking,
    resolve_strategy,
)
from msgflux.models.response import Metadata, ModelResponse, ModelStreamResponse
from msgflux.retry import RetryPolicy, RetryState, retry_if_transient, stop_never
from msgflux.retry import wait_exponential_jitter as _jitter

__all__ = ["GatewayEvent", "ModelGateway"]

logger = logging.getLogger("msgflux.gateway")

Hook = Callable[["GatewayEvent"], Any]
_MID_STREAM = ("raise", "continue")
_WHEN_ALL_OPEN = ("fail", "probe")
T = TypeVar("T")

_CANCELLED: Any = object()
_SNAPSHOT_RENAMES = {"consecutive_failures": "breaker_consecutive_failures"}
"""The store's count (shared, reset when the breaker opens) next to this process's own."""


@dataclasses.dataclass(frozen=True)
class GatewayEvent:
    """What hooks receive. ``kind`` is "attempt", "fallback", "success" or "failure"."""

    kind: str
    model_name: str | None
    provider: str | None
    model_id: str | None
    attempt: int
    exception: BaseException | None = None
    duration: float | None = None
    next_model_name: str | None = None
    attempts: tuple[Attempt, ...] = ()
    response: Any = None


def _hooks(value: Any, field: str) -> tuple[Hook, ...]:
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not callable(item):
            raise TypeError(f"{field} must be a callable or a list of callables, got {item!r}")
    return tuple(items)


def _type_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _load_type(name: str) -> type:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


class ModelGateway:
    """Calls the first deployment that works, with retries, deadlines and honest errors.

    >>> gateway = ModelGateway([
    ...     {"model_name": "primary", "model": Model.chat_completion("openai/gpt-4.1-nano")},
    ...     {"model_name": "fallback", "model": Model.chat_completion("together/gpt-oss-120B"),
    ...      "time_constraints": [("23:00", "07:00")]},
    ... ], max_retries=1, deadline=20)
    >>> gateway(messages="Who was Frank Rosenblatt?").metadata.gateway["model_name"]
    'primary'
    """

    msgflux_type = "model_gateway"

    def __init__(
        self,
        models: list[dict[str, Any]],
        *,
        max_retries: int = 0,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        retry_after_cap: float = 30.0,
        retry: Callable[[BaseException], bool] | None = None,
        wait: Callable[[RetryState], float] | None = None,
        stop: Callable[[RetryState], bool] | None = None,
        fallback_on: Any = None,
        raise_on: Any = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        timezone: str | None = None,
        clock: Clock | Callable[[], datetime] | None = None,
        mid_stream: str = "raise",
        on_attempt: Hook | Sequence[Hook] | None = None,
        on_fallback: Hook | Sequence[Hook] | None = None,
        on_success: Hook | Sequence[Hook] | None = None,
        on_failure: Hook | Sequence[Hook] | None = None,
        breaker: Breaker | dict[str, Any] | bool | None = True,
        state: StateStore | str | None = None,
        strategy: Any = "ordered",
        hedge: Hedge | float | str | dict[str, Any] | None = None,
        when_all_open: str = "fail",
        stats_window: float = 300.0,
    ) -> None:
        if mid_stream not in _MID_STREAM:
            raise ValueError(f"mid_stream must be one of {_MID_STREAM}, got {mid_stream!r}")
        if when_all_open not in _WHEN_ALL_OPEN:
            raise ValueError(
                f"when_all_open must be one of {_WHEN_ALL_OPEN}, got {when_all_open!r}"
            )
        if (
            isinstance(stats_window, bool)
            or not isinstance(stats_window, (int, float))
            or not stats_window > 0
        ):
            raise ValueError(f"stats_window must be a number of seconds > 0, got {stats_window!r}")
        default_breaker = Breaker.coerce(breaker, "breaker")
        for name, value in (
            ("backoff_base", backoff_base),
            ("backoff_cap", backoff_cap),
            ("retry_after_cap", retry_after_cap),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        self._options: dict[str, Any] = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
            "retry_after_cap": retry_after_cap,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "deadline": deadline,
            "timezone": timezone,
            "mid_stream": mid_stream,
            "fallback_on": fallback_on,
            "raise_on": raise_on,
            "breaker": _breaker_option(breaker, default_breaker),
            "strategy": _strategy_option(strategy),
            "hedge": None,
            "when_all_open": when_all_open,
            "stats_window": stats_window,
        }
        self._retry = RetryPolicy(
            max_retries=max_retries,
            wait=wait if wait is not None else _jitter(backoff_base, backoff_cap),
            retry=retry if retry is not None else retry_if_transient,
            stop=stop if stop is not None else stop_never,
            retry_after_cap=retry_after_cap,
        )
        self._cfg = CallConfig(
            max_attempts=positive_int(max_attempts, "max_attempts"),
            deadline=validate_timeout(deadline, "deadline"),
            fallback_on=as_predicate(fallback_on, "fallback_on"),
            raise_on=as_predicate(raise_on, "raise_on"),
        )
        self._timeout = validate_timeout(timeout, "timeout")
        self._clock = as_clock(clock)
        self._mid_stream = mid_stream
        self._on_attempt = _hooks(on_attempt, "on_attempt")
        self._on_fallback = _hooks(on_fallback, "on_fallback")
        self._on_success = _hooks(on_success, "on_success")
        self._on_failure = _hooks(on_failure, "on_failure")
        self._deployments = parse_deployments(
            models,
            default_timezone=parse_timezone(timezone),
            default_retry=self._retry,
            default_timeout=self._timeout,
            default_breaker=default_breaker,
            stats_window=float(stats_window),
        )
        self._by_name = {d.name: d for d in self._deployments}
        self._scheduled = any(d.windows for d in self._deployments)
        self._loop_lock = threading.Lock()
        self._policies = [d.policy for d in self._deployments]
        self._tracked = any(p.active for p in self._policies)
        self._owns_store = isinstance(state, str)
        self._store: StateStore = resolve_store(state)
        self._store.register(self._policies)
        self._ranking, self._strategy_name = resolve_strategy(strategy, self._clock)
        self._hedge = Hedge.coerce(hedge)
        if self._hedge is not None:
            self._options["hedge"] = self._hedge.as_dict()
        self._when_all_open = when_all_open == "probe"
        self._loop_thread: _LoopThread | None = None
        if len(self._deployments) < 2:
            logger.warning(
                "ModelGateway has only %d deployment: fallback cannot help when it fails",
                len(self._deployments),
            )

    # -- the documented surface ----------------------------------------------------------------
    @property
    def models(self) -> list[BaseModel]:
        return [d.model for d in self._deployments]

    @property
    def model_names(self) -> list[str]:
        return [d.name for d in self._deployments]

    @property
    def model_type(self) -> str:
        return str(self._deployments[0].model.model_type)

    def get_model_info(self) -> list[dict[str, str]]:
        return [dict(d.model.get_model_info()) for d in self._deployments]

    def __repr__(self) -> str:
        return f"ModelGateway(model_names={self.model_names!r}, model_type={self.model_type!r})"

    # -- planning ----------------------------------------------------------------------------
    def _plan(self, model_preference: str | None) -> CallState:
        """The call's ranked deployments: preference first, then the strategy's order."""
        deployments: Sequence[Deployment] = self._deployments
        preferred: Deployment | None = None
        if model_preference is not None:
            preferred = (
                self._by_name.get(model_preference) if isinstance(model_preference, str) else None
            )
            if preferred is None:
                raise ValueError(
                    f"model_preference {model_preference!r} names no deployment; "
                    f"valid model names: {', '.join(self.model_names)}"
                )
            deployments = [d for d in deployments if d is not preferred]
        if self._scheduled:
            now = self._clock.now()
            deployments = [d for d in deployments if not in_blackout(d.windows, now, d.timezone)]
            if preferred is not None and in_blackout(preferred.windows, now, preferred.timezone):
                preferred = None
            if not deployments and preferred is None:
                raise ModelRouterError([], [], "No model available due to time constraints")
        if self._ranking is not None and len(deployments) > 1:
            deployments = apply_ranking(self._ranking, deployments)
        if preferred is not None:
            deployments = [preferred, *deployments]
        policies = self._policies if deployments is self._deployments else None
        return CallState(self._cfg, deployments, self._clock.perf(), policies)

    # -- sync driver -------------------------------------------------------------------------
    def __call__(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Call the deployments in order until one answers; see the class docstring."""
        call = self._plan(model_preference)
        result = self._drive(call, kwargs, call.begin(call.started))
        return self._finish(call, result, kwargs, self._stream_sync)

    def _drive(self, call: CallState, kwargs: dict[str, Any], step: Step) -> Any:
        clock = self._clock
        store = self._store if self._tracked else None
        while True:
            if step.kind == RAISE:
                raise self._fail(call, step)
            if step.delay:
                clock.sleep(step.delay)
            if store is not None:
                adm = store.admit(call.candidates(step), clock.time(), self._probe(call))
                step = self._admitted(call, step, adm)
                if step.kind == RAISE:
                    continue
            delay = self._hedge_delay(call, step, kwargs)
            if delay is not None:
                won, value = self._loop().run(self._race(call, kwargs, step, delay))
                if won:
                    return self._loop().bridge(value)
                step = value
                continue
            dep = step.deployment
            assert dep is not None
            began, wall = self._begin(step)
            try:
                result = self._invoke(dep, kwargs, step.timeout)
            except Exception as exc:
                step, done = self._failed(call, step, exc, began, wall)
                if done is not None:
                    self._settle(done)
                continue
            except BaseException:
                self._settle(self._abandoned(step, began))
                raise
            done = self._answered(call, step, result, began, wall)
            if done is not None:
                self._settle(done)
            return result

    def _invoke(self, dep: Deployment, kwargs: dict[str, Any], timeout: float | None) -> Any:
        model = dep.model
        if timeout is None:
            return _primed(model._call_once(**kwargs))
        if model.supports_timeout:
            return _primed(model._call_once(timeout=timeout, **kwargs))
        outcome = _run_abandonable(lambda: _primed(model._call_once(**kwargs)), timeout)
        if outcome is None:
            raise _timeout_error(dep, timeout)
        ok, value = outcome
        if ok:
            return value
        raise value

    def _stream_sync(
        self, call: CallState, kwargs: dict[str, Any], inner: Any, outer: ModelStreamResponse
    ) -> Iterator[Any]:
        parts: list[str] = []
        try:
            while True:
                began, wall = self._clock.perf(), self._clock.time()
                try:
                    for chunk in inner:
                        if isinstance(chunk, str):
                            parts.append(chunk)
                        yield chunk
                except Exception as exc:
                    self._settle(self._stream_ended(call, exc, inner))
                    step = self._resume(call, exc, parts, began, wall)
                    try:
                        inner = self._drive(call, self._prefilled(kwargs, parts), step)
                    except ModelRouterError as err:
                        raise _broken(call, parts, err, "no deployment could continue it") from err
                    continue
                _close_stream(call, inner, outer)
                self._settle(self._stream_ended(call, None, inner))
                return
        finally:
            self._settle(self._stream_ended(call, _CANCELLED, inner))

    # -- async driver ------------------------------------------------------------------------
    async def acall(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Async form of ``__call__``; never blocks the event loop."""
        call = self._plan(model_preference)
        result = await self._adrive(call, kwargs, call.begin(call.started))
        return self._finish(call, result, kwargs, self._stream_async)

    async def _adrive(self, call: CallState, kwargs: dict[str, Any], step: Step) -> Any:
        clock = self._clock
        store = self._store if self._tracked else None
        while True:
            if step.kind == RAISE:
                raise self._fail(call, step)
            if step.delay:
                await clock.asleep(step.delay)
            if store is not None:
                adm = await store.aadmit(call.candidates(step), clock.time(), self._probe(call))
                step = self._admitted(call, step, adm)
                if step.kind == RAISE:
                    continue
            delay = self._hedge_delay(call, step, kwargs)
            if delay is not None:
                won, value = await self._race(call, kwargs, step, delay)
                if won:
                    return value
                step = value
                continue
            dep = step.deployment
            assert dep is not None
            began, wall = self._begin(step)
            try:
                result = await self._ainvoke(dep, kwargs, step.timeout)
            except Exception as exc:
                step, done = self._failed(call, step, exc, began, wall)
                if done is not None:
                    await self._asettle(done)
                continue
            except BaseException:
                await self._asettle(self._abandoned(step, began))
                raise
            done = self._answered(call, step, result, began, wall)
            if done is not None:
                await self._asettle(done)
            return result

    async def _ainvoke(self, dep: Deployment, kwargs: dict[str, Any], timeout: float | None) -> Any:
        model = dep.model
        if timeout is None:
            return await _aprimed(await model._acall_once(**kwargs))
        if model.supports_timeout:
            return await _aprimed(await model._acall_once(timeout=timeout, **kwargs))
        try:
            return await asyncio.wait_for(_acall_primed(model, kwargs), timeout)
        except asyncio.TimeoutError:
            raise _timeout_error(dep, timeout) from None

    async def _stream_async(
        self, call: CallState, kwargs: dict[str, Any], inner: Any, outer: ModelStreamResponse
    ) -> AsyncIterator[Any]:
        parts: list[str] = []
        try:
            while True:
                began, wall = self._clock.perf(), self._clock.time()
                try:
                    async for chunk in inner.consume():
                        if isinstance(chunk, str):
                            parts.append(chunk)
                        yield chunk
                except Exception as exc:
                    await self._asettle(self._stream_ended(call, exc, inner))
                    step = self._resume(call, exc, parts, began, wall)
                    try:
                        inner = await self._adrive(call, self._prefilled(kwargs, parts), step)
                    except ModelRouterError as err:
                        raise _broken(call, parts, err, "no deployment could continue it") from err
                    continue
                _close_stream(call, inner, outer)
                await self._asettle(self._stream_ended(call, None, inner))
                return
        finally:
            await self._asettle(self._stream_ended(call, _CANCELLED, inner))

    # -- the hedged race (both drivers) -------------------------------------------------------
    async def _race(
        self, call: CallState, kwargs: dict[str, Any], step: Step, delay: float
    ) -> tuple[bool, Any]:
        """Run ``step``, racing further deployments against it every ``delay`` seconds.

        Returns ``(True, result)`` for the first success (the others cancelled and settled as
        IGNORED), or ``(False, next_step)`` once every attempt has failed.
        """
        assert self._hedge is not None
        flights: dict[asyncio.Future[Any], tuple[Step, float, float]] = {}

        def launch(s: Step) -> None:
            assert s.deployment is not None
            began, wall = self._begin(s)
            task = asyncio.ensure_future(self._ainvoke(s.deployment, kwargs, s.timeout))
            flights[task] = (s, began, wall)

        launch(step)
        hedges = self._hedge.max_hedges
        try:
            while True:
                done, _ = await asyncio.wait(
                    flights,
                    timeout=delay if hedges > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    hedges -= 1
                    hedge = await self._admit_hedge(call)
                    if hedge is None:
                        hedges = 0
                    else:
                        launch(hedge)
                    continue
                winner: tuple[asyncio.Future[Any], Step, float, float] | None = None
                failures: list[tuple[asyncio.Future[Any], Step, float, float]] = []
                for task in done:
                    s, began, wall = flights.pop(task)
                    if task.exception() is not None:
                        failures.append((task, s, began, wall))
                    elif winner is None:
                        winner = (task, s, began, wall)
                    else:
                        flights[task] = (s, began, wall)  # a tie: discarded like the losers
                next_step: Step | None = None
                for i, (task, s, began, wall) in enumerate(failures):
                    exc = task.exception()
                    assert exc is not None
                    racing = winner is not None or bool(flights) or i < len(failures) - 1
                    failed, settled = self._failed(call, s, exc, began, wall, racing)
                    await self._asettle(settled)
                    if failed is not None and (next_step is None or next_step.kind != RAISE):
                        next_step = failed  # a RAISE (raise_on) sticks
                if winner is not None:
                    task, s, began, wall = winner
                    await self._cancel(call, flights, began)
                    result = task.result()
                    await self._asettle(self._answered(call, s, result, began, wall))
                    return True, result
                if next_step is not None:
                    await self._cancel(call, flights, None)
                    return False, next_step
        except BaseException:
            await self._cancel(call, flights, None)
            raise

    async def _admit_hedge(self, call: CallState) -> Step | None:
        clock = self._clock
        step = call.hedge(clock.perf())
        if step is None:
            return None
        if not self._tracked:
            step.ticket = FIRST
            return step
        adm = await self._store.aadmit(call.candidates(step), clock.time())
        mark = len(call.attempts)
        hedge = call.hedge_admitted(adm, step, clock.perf(), clock.time())
        self._noted_skips(call, mark)
        return hedge

    async def _cancel(
        self,
        call: CallState,
        flights: dict[asyncio.Future[Any], tuple[Step, float, float]],
        winner_began: float | None,
    ) -> None:
        """Cancel the losers, wait until they are gone (connections closed), settle them.

        ``winner_began`` is when the winning attempt started (None: nobody won)."""
        if not flights:
            return
        for task in flights:
            task.cancel()
        await asyncio.wait(flights)
        clock = self._clock
        now, wall_now = clock.perf(), clock.time()
        for task, (s, began, wall) in flights.items():
            if not task.cancelled() and task.exception() is None:
                await _aclose_result(task.result())
            dep = s.deployment
            assert dep is not None
            # An attempt that began before the winner was slower than it: its elapsed time is
            # a lower bound of its latency, kept so the tail stays visible to "p95" hedging.
            slower = winner_began is not None and began < winner_began
            dep.stats.abandoned(now - began if slower else None, now)
            call.cancelled(s, began, now, wall)
            if dep.policy.active and s.ticket is not None:
                await self._asettle(
                    Settlement(dep.policy, s.ticket, IGNORED, wall_now, duration=now - began)
                )
        flights.clear()

    # -- shared by both drivers --------------------------------------------------------------
    def _probe(self, call: CallState) -> bool:
        """``when_all_open="probe"`` applies to a call's first admission only."""
        return self._when_all_open and not call.attempts

    def _admitted(self, call: CallState, step: Step, adm: Admission) -> Step:
        """Hand the store's answer to the engine; note the skips it reports."""
        if adm is FIRST:
            step.ticket = adm
            return step
        mark = len(call.attempts)
        new = call.admitted(adm, step, self._clock.perf(), self._clock.time())
        if len(call.attempts) > mark:
            self._noted_skips(call, mark)
            if new.kind != RAISE and new.fallback_from is not None:
                self._observe(call, new, quiet=True)
        return new

    def _noted_skips(self, call: CallState, mark: int) -> None:
        for a in call.attempts[mark:]:
            if a.skipped is not None:
                self._by_name[a.model_name].stats.skipped(a.skipped)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("gateway skip: %s", a.describe())

    def _hedge_delay(self, call: CallState, step: Step, kwargs: dict[str, Any]) -> float | None:
        """Seconds before racing another deployment against ``step``, or None (no hedge)."""
        hedge = self._hedge
        if hedge is None or step.pos + 1 >= len(call.deployments):
            return None
        dep = step.deployment
        assert dep is not None
        return hedge.delay_for(dep, bool(kwargs.get("stream")), self._clock.perf())

    def _begin(self, step: Step) -> tuple[float, float]:
        """Count the attempt as started; returns its (perf, wall) start times."""
        dep = step.deployment
        assert dep is not None
        dep.stats.started(step.hedge)
        if self._on_attempt:
            self._emit(self._on_attempt, "attempt", dep, step.number)
        return self._clock.perf(), self._clock.time()

    def _failed(
        self,
        call: CallState,
        step: Step,
        exc: BaseException,
        began: float,
        wall: float,
        racing: bool = False,
    ) -> tuple[Any, Settlement | None]:
        """An attempt raised: stats, engine, and what to settle in the store."""
        clock = self._clock
        now = clock.perf()
        dep = step.deployment
        assert dep is not None
        wall_now = clock.time()
        dep.stats.failed(exc, wall_now)
        policy = dep.policy
        settled: Settlement | None = None
        if policy.active and step.ticket is not None:
            cfg = policy.breaker
            raise_on = self._cfg.raise_on
            counted = (
                cfg is not None
                and counts_as_failure(cfg, exc)
                and not (raise_on is not None and raise_on(exc))
            )
            retry_after = getattr(exc, "retry_after", None)
            if not isinstance(retry_after, (int, float)):
                retry_after = 0.0
            settled = Settlement(
                policy,
                step.ticket,
                FAILURE if counted else IGNORED,
                wall_now,
                retry_after=float(retry_after),
                duration=now - began,
            )
        next_step = call.failed(exc, began, now, wall, step, racing)
        if next_step is not None:
            self._observe(call, next_step)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", call.attempts[-1].describe())
        return next_step, settled

    def _answered(
        self, call: CallState, step: Step, result: Any, began: float, wall: float
    ) -> Settlement | None:
        """An attempt answered (a stream: produced its first chunk)."""
        clock = self._clock
        now = clock.perf()
        dep = step.deployment
        assert dep is not None
        call.succeeded(began, now, wall, step=step)
        if isinstance(result, ModelStreamResponse):
            dep.stats.first_chunk(now - began, now)
            call.lease = (dep, step.ticket, began)
            return None
        dep.stats.answered(now - began, now, step.hedge)
        policy = dep.policy
        if not policy.active or step.ticket is None:
            return None
        tokens = _tokens(result) if policy.tpm is not None else 0
        # Positional: keyword arguments cost ~0.1 µs here, on every call.
        return Settlement(policy, step.ticket, SUCCESS, clock.time(), tokens, 0.0, now - began)

    def _abandoned(self, step: Step, began: float) -> Settlement | None:
        """The caller went away mid-attempt (cancelled, interrupted)."""
        dep = step.deployment
        assert dep is not None
        dep.stats.abandoned()
        if not dep.policy.active or step.ticket is None:
            return None
        clock = self._clock
        return Settlement(
            dep.policy, step.ticket, IGNORED, clock.time(), duration=clock.perf() - began
        )

    def _stream_ended(self, call: CallState, how: Any, inner: Any) -> Settlement | None:
        """A committed stream finished (``how`` None), broke (an exception) or was abandoned
        by its reader (``_CANCELLED``): release what its admission took. Idempotent."""
        lease = call.lease
        if lease is None:
            return None
        call.lease = None
        dep, ticket, began = lease
        clock = self._clock
        now = clock.perf()
        policy = dep.policy
        if how is None:
            dep.stats.answered(now - began, now, call.attempts[-1].hedge)
            outcome = SUCCESS
        elif how is _CANCELLED:
            dep.stats.abandoned()
            outcome = IGNORED
        else:
            dep.stats.interrupted(how, clock.time())
            cfg = policy.breaker
            outcome = FAILURE if cfg is not None and counts_as_failure(cfg, how) else IGNORED
        if not policy.active or ticket is None:
            return None
        tokens = 0
        if how is None and policy.tpm is not None:
            tokens = _tokens(inner)
        return Settlement(policy, ticket, outcome, clock.time(), tokens, 0.0, now - began)

    def _settle(self, settled: Settlement | None) -> None:
        """Hand what a helper built to the store (None: nothing to settle)."""
        if settled is None:
            return
        try:
            self._store.settle(settled)
        except Exception:
            logger.exception("state store failed to settle a call to %r", settled.policy.name)

    async def _asettle(self, settled: Settlement | None) -> None:
        if settled is None:
            return
        try:
            await self._store.asettle(settled)
        except Exception:
            logger.exception("state store failed to settle a call to %r", settled.policy.name)

    def _finish(
        self,
        call: CallState,
        result: Any,
        kwargs: dict[str, Any],
        streamer: Callable[..., Any],
    ) -> Any:
        if isinstance(result, ModelStreamResponse):
            outer = ModelStreamResponse()
            outer.response_type = result.response_type
            outer.set_source(streamer(call, kwargs, result, outer))
            # A stream nobody reads never runs its generator's cleanup; release its
            # admission (concurrency lease, probe slot) when it is garbage-collected.
            weakref.finalize(outer, self._release_unread, call)
            result = outer
        _stamp(call, result)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", call.attempts[-1].describe())
        if self._on_success:
            last = call.attempts[-1]
            self._emit(
                self._on_success,
                "success",
                self._by_name[last.model_name],
                last.attempt,
                duration=last.duration,
                call=call,
                response=result,
            )
        return result

    def _resume(
        self, call: CallState, exc: Exception, parts: list[str], began: float, wall: float
    ) -> Step:
        """A committed stream broke: raise StreamInterruptedError, or pick who continues it."""
        if self._mid_stream != "continue":
            raise _broken(call, parts, exc, f"{type(exc).__name__}: {exc}") from exc
        step = call.interrupted(exc, began, self._clock.perf(), wall)
        self._observe(call, step)
        return step

    def _release_unread(self, call: CallState) -> None:
        self._settle(self._stream_ended(call, _CANCELLED, None))

    @staticmethod
    def _prefilled(kwargs: dict[str, Any], parts: list[str]) -> dict[str, Any]:
        return {**kwargs, "prefilling": (kwargs.get("prefilling") or "") + "".join(parts)}

    def _observe(self, call: CallState, step: Step, quiet: bool = False) -> None:
        """Log and notify after a failure or skip, given the engine's next step.

        ``quiet``: the move comes from skips (a known-open breaker, a limit), which is routine
        and logged at DEBUG; a WARNING on every call that skips a dead deployment would be noise.
        """
        last = call.attempts[-1]
        if not quiet and logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", last.describe())
        if step.kind == RAISE or step.fallback_from is None:
            return
        dep = step.deployment
        assert dep is not None
        if quiet:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("skipping %r for %r (%s)", last.model_name, dep.name, last.skipped)
        else:
            logger.warning(
                "falling back from %r to %r after %s",
                last.model_name,
                dep.name,
                last.skipped or type(last.exception).__name__,
            )
        if self._on_fallback:
            self._emit(
                self._on_fallback,
                "fallback",
                step.fallback_from,
                last.attempt,
                exception=last.exception,
                next_model_name=dep.name,
                call=call,
            )

    def _fail(self, call: CallState, step: Step) -> BaseException:
        error = step.error
        assert error is not None
        if self._on_failure:
            self._emit(self._on_failure, "failure", None, call.total, exception=error, call=call)
        return error

    def _emit(
        self,
        hooks: tuple[Hook, ...],
        kind: str,
        dep: Deployment | None,
        attempt: int,
        *,
        exception: BaseException | None = None,
        duration: float | None = None,
        next_model_name: str | None = None,
        call: CallState | None = None,
        response: Any = None,
    ) -> None:
        event = GatewayEvent(
            kind,
            dep.name if dep else None,
            dep.provider if dep else None,
            dep.model_id if dep else None,
            attempt,
            exception,
            duration,
            next_model_name,
            tuple(call.attempts) if call else (),
            response,
        )
        for hook in hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("gateway hook %r raised; ignoring it", hook)

    # -- serialization -------------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        """The documented structure; options appear only when set. Never holds secrets."""
        models = []
        for d in self._deployments:
            entry: dict[str, Any] = {"model_name": d.name, "model": d.model.serialize()}
            entry.update((k, v) for k, v in d.raw.items() if k != "model_name" and v is not None)
            models.append(entry)
        state: dict[str, Any] = {"models": models}
        defaults = {
            "max_retries": 0,
            "backoff_base": 0.5,
            "backoff_cap": 8.0,
            "retry_after_cap": 30.0,
            "mid_stream": "raise",
            "strategy": "ordered",
            "when_all_open": "fail",
            "stats_window": 300.0,
        }
        for key, value in self._options.items():
            if value is None or defaults.get(key) == value:
                continue
            if key in ("fallback_on", "raise_on"):
                items = value if isinstance(value, (list, tuple)) else [value]
                if not all(isinstance(i, type) for i in items):
                    logger.warning("%s holds callables, which cannot be serialized; left out", key)
                    continue
                value = [_type_name(i) for i in items]
            state[key] = value
        return {"msgflux_type": "model_gateway", "state": state}

    @classmethod
    def from_serialized(cls, data: dict[str, Any], **overrides: Any) -> ModelGateway:
        """Rebuild a gateway from :meth:`serialize` output; hooks and clocks go in ``overrides``."""
        if not isinstance(data, dict) or data.get("msgflux_type") != "model_gateway":
            raise ValueError("data must be the dict ModelGateway.serialize() returned")
        from msgflux.models.model import Model

        state = dict(data["state"])
        models = []
        for entry in state.pop("models"):
            spec = dict(entry)
            m = spec["model"]
            spec["model"] = Model.from_serialized(m["provider"], m["model_type"], m["state"])
            models.append(spec)
        for key in ("fallback_on", "raise_on"):
            if key in state:
                state[key] = tuple(_load_type(n) for n in state[key])
        state.update(overrides)
        return cls(models, **state)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ModelGateway is not picklable; use serialize()/from_serialized()")

    # -- live stats and health -----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per deployment: calls, successes, failures by error class, in flight, skips,
        latency and time-to-first-chunk percentiles (seconds, recent window), last error,
        breaker state and reopen time, limit usage. Plain JSON-serializable data.

        Counters and latency are this process's; breaker and limit state come from the
        state store (shared across processes with a shared store).
        """
        clock = self._clock
        now, wall = clock.perf(), clock.time()
        snaps = self._snapshots(wall)
        deployments: dict[str, Any] = {}
        for dep, snap in zip(self._deployments, snaps, strict=True):
            policy = dep.policy
            entry: dict[str, Any] = {
                "provider": dep.provider,
                "model_id": dep.model_id,
                **dep.stats.as_dict(now),
                **{_SNAPSHOT_RENAMES.get(k, k): v for k, v in snap.items()},
                "limits": {
                    "rpm": policy.rpm,
                    "tpm": policy.tpm,
                    "max_concurrency": policy.max_concurrency,
                },
                "weight": dep.weight,
            }
            deployments[dep.name] = entry
        return {
            "at": wall,
            "strategy": self._strategy_name,
            "hedge": None if self._hedge is None else self._hedge.as_dict(),
            "state": self._store_info(),
            "deployments": deployments,
        }

    def health(self) -> dict[str, Any]:
        """``{"status": "healthy" | "degraded" | "down", "deployments": {...}}``.

        A deployment is *down* while its breaker is open, *degraded* while half-open or when
        its last call failed, else *healthy*. The gateway is down when every deployment is,
        healthy when every one is (and the state store is reachable), else degraded.
        """
        wall = self._clock.time()
        snaps = self._snapshots(wall)
        out: dict[str, Any] = {}
        statuses = []
        for dep, snap in zip(self._deployments, snaps, strict=True):
            breaker = snap.get("breaker")
            if breaker == "open":
                status = "down"
            elif breaker == "half_open" or dep.stats.consecutive_failures:
                status = "degraded"
            else:
                status = "healthy"
            statuses.append(status)
            entry: dict[str, Any] = {"status": status, "breaker": breaker}
            if snap.get("reopens_at") is not None:
                entry["reopens_at"] = snap["reopens_at"]
            last = dep.stats.last_error
            if last is not None:
                entry["last_error"] = {"type": last[0], "at": last[2]}
            out[dep.name] = entry
        info = self._store_info()
        if all(s == "down" for s in statuses):
            overall = "down"
        elif all(s == "healthy" for s in statuses) and info.get("healthy", True):
            overall = "healthy"
        else:
            overall = "degraded"
        return {"status": overall, "at": wall, "state": info, "deployments": out}

    def _snapshots(self, wall: float) -> list[dict[str, Any]]:
        if self._tracked:
            try:
                return self._store.snapshot(self._policies, wall)
            except Exception:
                logger.exception("state store failed to report its state")
        return [
            {"breaker": "disabled" if p.breaker is None else "unknown", "reopens_at": None}
            for p in self._policies
        ]

    def _store_info(self) -> dict[str, Any]:
        try:
            return dict(self._store.info())
        except Exception as exc:
            return {"backend": type(self._store).__name__, "healthy": False, "error": str(exc)}

    # -- lifecycle -----------------------------------------------------------------------------
    def _loop(self) -> _LoopThread:
        """The private event loop the sync driver runs hedged races on (created on first use)."""
        with self._loop_lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
                weakref.finalize(self, self._loop_thread.close)
            return self._loop_thread

    def close(self) -> None:
        """Stop the gateway's helper thread and close a state store it created from a URL.

        Optional: the helpers are daemon threads and are also cleaned up when the gateway is
        garbage-collected; a store passed in by the caller is left to the caller.
        """
        with self._loop_lock:
            loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is not None:
            loop_thread.close()
        if self._owns_store:
            self._store.close()


class _LoopThread:
    """An event loop on a daemon thread: lets sync code run the async race and cancel losers.

    The sync driver waits for ``run(coro)``; several sync callers share the one loop, which
    only multiplexes I/O (a model that only has a sync ``__call__`` runs in the loop's thread
    pool, as ``acall`` always does).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="msgflux-gateway-loop", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def bridge(self, result: Any) -> Any:
        """A stream produced on the loop, readable with a plain ``for`` from the caller."""
        if not isinstance(result, ModelStreamResponse) or not result.is_async:
            return result
        chunks = result.consume()

        async def pull() -> Any:
            return await chunks.__anext__()

        def source() -> Iterator[Any]:
            try:
                while True:
                    try:
                        yield self.run(pull())
                    except StopAsyncIteration:
                        return
            finally:
                closing = chunks.aclose()  # type: ignore[attr-defined]
                if self.loop.is_closed():
                    closing.close()
                elif threading.current_thread() is self._thread:
                    self.loop.create_task(closing)  # never wait on our own loop
                else:
                    self.run(closing)

        out = ModelStreamResponse(source())
        out.response_type = result.response_type
        out.metadata = result.metadata
        return out

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def _strategy_option(value: Any) -> str | None:
    """How ``serialize()`` records the strategy: a built-in's name (custom ones are code)."""
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(value, Strategy) and name in STRATEGIES:
        return str(name)
    return None


def _breaker_option(value: Any, resolved: Breaker | None) -> Any:
    """How ``serialize()`` records the gateway's breaker (None: the default)."""
    if resolved is None:
        return False
    if value is True or resolved == Breaker():
        return None
    return resolved.as_dict()


def _tokens(result: Any) -> int:
    """Tokens the response reported (``metadata.usage``), for ``tpm``."""
    meta = getattr(result, "metadata", None)
    usage = meta.get("usage") if isinstance(meta, dict) else None
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int):
            return total
        return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    total = getattr(usage, "total_tokens", None)
    return total if isinstance(total, int) else 0


async def _aclose_result(result: Any) -> None:
    """Release what a discarded answer holds (a stream's connection)."""
    if isinstance(result, ModelStreamResponse):
        try:
            await result.aclose()
        except Exception:
            logger.debug("closing a discarded stream failed", exc_info=True)


def _primed(result: Any) -> Any:
    """Wait for a stream's first chunk, so errors before it count as this attempt's failure."""
    if isinstance(result, ModelStreamResponse):
        result.first_chunk()
    return result


async def _aprimed(result: Any) -> Any:
    if isinstance(result, ModelStreamResponse):
        await result.afirst_chunk()
    return result


async def _acall_primed(model: BaseModel, kwargs: dict[str, Any]) -> Any:
    return await _aprimed(await model._acall_once(**kwargs))


def _run_abandonable(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any] | None:
    """Run ``fn`` on a daemon thread for at most ``timeout`` seconds.

    Returns ``(True, result)``, ``(False, exception)``, or None when the time ran out. A sync
    model cannot be interrupted, so a timed-out attempt is abandoned: its thread finishes on
    its own, and being a daemon it never holds up interpreter exit (a pool thread would).
    """
    box: list[tuple[bool, Any]] = []
    done = threading.Event()

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=target, name="msgflux-gateway-attempt", daemon=True).start()
    return box[0] if done.wait(timeout) else None


def _timeout_error(dep: Deployment, timeout: float) -> APITimeoutError:
    return APITimeoutError(
        f"attempt abandoned after {timeout:g}s (timeout)",
        provider=dep.provider,
        model_id=dep.model_id,
    )


def _stamp(call: CallState, result: Any) -> None:
    """Attach ``metadata.gateway`` (who answered, how many attempts, who failed before)."""
    if not isinstance(result, (ModelResponse, ModelStreamResponse)):
        return
    if not isinstance(result.metadata, Metadata):
        result.metadata = Metadata(result.metadata or {})
    winner = call.attempts[-1]
    fallbacks: list[str] = []
    for a in call.attempts:
        if a.model_name != winner.model_name and a.model_name not in fallbacks and not a.cancelled:
            fallbacks.append(a.model_name)
    result.metadata["gateway"] = {
        "model_name": winner.model_name,
        "attempts": call.total,
        "fallbacks": fallbacks,
        "hedged": winner.hedge,
        "history": [a.as_dict() for a in call.attempts],
    }


def _broken(
    call: CallState, parts: list[str], cause: BaseException, why: str
) -> StreamInterruptedError:
    partial = "".join(parts)
    name = next((a.model_name for a in reversed(call.attempts) if a.skipped is None), None)
    return StreamInterruptedError(
        f"stream from {name!r} broke after {len(partial)} characters: {why}",
        partial=partial,
        model_name=name,
        cause=cause,
    )


def _close_stream(call: CallState, inner: Any, outer: ModelStreamResponse) -> None:
    """The stream ended: copy usage/finish_reason and refresh the gateway record."""
    meta = getattr(inner, "metadata", None)
    if isinstance(meta, dict):
        outer.metadata.update((k, v) for k, v in meta.items() if k != "gateway")
    _stamp(call, outer)
