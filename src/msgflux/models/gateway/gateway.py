"""``ModelGateway``: one object in front of several deployments of the same model type."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from msgflux._time import Clock, as_clock
from msgflux.exceptions import (
    APITimeoutError,
    Attempt,
    ModelRouterError,
    StreamInterruptedError,
)
from msgflux.models.base import BaseModel
from msgflux.models.gateway.deployment import Deployment, parse_deployments, validate_timeout
from msgflux.models.gateway.engine import RAISE, CallConfig, CallState, Step, as_predicate
from msgflux.models.gateway.schedule import in_blackout, parse_timezone
from msgflux.models.response import Metadata, ModelResponse, ModelStreamResponse
from msgflux.retry import RetryPolicy, RetryState, retry_if_transient, stop_never
from msgflux.retry import wait_exponential_jitter as _jitter

__all__ = ["GatewayEvent", "ModelGateway"]

logger = logging.getLogger("msgflux.gateway")

Hook = Callable[["GatewayEvent"], Any]
_MID_STREAM = ("raise", "continue")


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


def _positive_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int >= 1 or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be an int >= 1 or None, got {value!r}")
    return value


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
    ) -> None:
        if mid_stream not in _MID_STREAM:
            raise ValueError(f"mid_stream must be one of {_MID_STREAM}, got {mid_stream!r}")
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
        }
        self._retry = RetryPolicy(
            max_retries=max_retries,
            wait=wait if wait is not None else _jitter(backoff_base, backoff_cap),
            retry=retry if retry is not None else retry_if_transient,
            stop=stop if stop is not None else stop_never,
            retry_after_cap=retry_after_cap,
        )
        self._cfg = CallConfig(
            max_attempts=_positive_int(max_attempts, "max_attempts"),
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
        )
        self._by_name = {d.name: d for d in self._deployments}
        self._scheduled = any(d.windows for d in self._deployments)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
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
        deployments: list[Deployment] = self._deployments
        if model_preference is not None:
            preferred = (
                self._by_name.get(model_preference) if isinstance(model_preference, str) else None
            )
            if preferred is None:
                raise ValueError(
                    f"model_preference {model_preference!r} names no deployment; "
                    f"valid model names: {', '.join(self.model_names)}"
                )
            deployments = [preferred, *(d for d in deployments if d is not preferred)]
        if self._scheduled:
            now = self._clock.now()
            deployments = [d for d in deployments if not in_blackout(d.windows, now, d.timezone)]
            if not deployments:
                raise ModelRouterError([], [], "No model available due to time constraints")
        return CallState(self._cfg, deployments, self._clock.perf())

    # -- sync driver -------------------------------------------------------------------------
    def __call__(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Call the deployments in order until one answers; see the class docstring."""
        call = self._plan(model_preference)
        result = self._drive(call, kwargs, call.begin(call.started))
        return self._finish(call, result, kwargs, self._stream_sync)

    def _drive(self, call: CallState, kwargs: dict[str, Any], step: Step) -> Any:
        clock = self._clock
        while True:
            if step.kind == RAISE:
                raise self._fail(call, step)
            dep = step.deployment
            assert dep is not None
            if step.delay:
                clock.sleep(step.delay)
            if self._on_attempt:
                self._emit(self._on_attempt, "attempt", dep, step.number)
            wall, began = clock.time(), clock.perf()
            try:
                result = self._invoke(dep, kwargs, step.timeout)
            except Exception as exc:
                step = call.failed(exc, began, clock.perf(), wall)
                self._observe(call, step)
                continue
            call.succeeded(began, clock.perf(), wall)
            return result

    def _invoke(self, dep: Deployment, kwargs: dict[str, Any], timeout: float | None) -> Any:
        model = dep.model
        if timeout is None:
            return _primed(model._call_once(**kwargs))
        if model.supports_timeout:
            return _primed(model._call_once(timeout=timeout, **kwargs))
        future = self._pool().submit(lambda: _primed(model._call_once(**kwargs)))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _timeout_error(dep, timeout) from None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="msgflux-gateway"
                )
            return self._executor

    def _stream_sync(
        self, call: CallState, kwargs: dict[str, Any], inner: Any, outer: ModelStreamResponse
    ) -> Iterator[Any]:
        parts: list[str] = []
        while True:
            began, wall = self._clock.perf(), self._clock.time()
            try:
                for chunk in inner:
                    if isinstance(chunk, str):
                        parts.append(chunk)
                    yield chunk
            except Exception as exc:
                step = self._resume(call, exc, parts, began, wall)
                try:
                    inner = self._drive(call, self._prefilled(kwargs, parts), step)
                except ModelRouterError as err:
                    raise _broken(call, parts, err, "no deployment could continue it") from err
                continue
            _close_stream(call, inner, outer)
            return

    # -- async driver ------------------------------------------------------------------------
    async def acall(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Async form of ``__call__``; never blocks the event loop."""
        call = self._plan(model_preference)
        result = await self._adrive(call, kwargs, call.begin(call.started))
        return self._finish(call, result, kwargs, self._stream_async)

    async def _adrive(self, call: CallState, kwargs: dict[str, Any], step: Step) -> Any:
        clock = self._clock
        while True:
            if step.kind == RAISE:
                raise self._fail(call, step)
            dep = step.deployment
            assert dep is not None
            if step.delay:
                await clock.asleep(step.delay)
            if self._on_attempt:
                self._emit(self._on_attempt, "attempt", dep, step.number)
            wall, began = clock.time(), clock.perf()
            try:
                result = await self._ainvoke(dep, kwargs, step.timeout)
            except Exception as exc:
                step = call.failed(exc, began, clock.perf(), wall)
                self._observe(call, step)
                continue
            call.succeeded(began, clock.perf(), wall)
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
        while True:
            began, wall = self._clock.perf(), self._clock.time()
            try:
                async for chunk in inner.consume():
                    if isinstance(chunk, str):
                        parts.append(chunk)
                    yield chunk
            except Exception as exc:
                step = self._resume(call, exc, parts, began, wall)
                try:
                    inner = await self._adrive(call, self._prefilled(kwargs, parts), step)
                except ModelRouterError as err:
                    raise _broken(call, parts, err, "no deployment could continue it") from err
                continue
            _close_stream(call, inner, outer)
            return

    # -- shared by both drivers --------------------------------------------------------------
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

    @staticmethod
    def _prefilled(kwargs: dict[str, Any], parts: list[str]) -> dict[str, Any]:
        return {**kwargs, "prefilling": (kwargs.get("prefilling") or "") + "".join(parts)}

    def _observe(self, call: CallState, step: Step) -> None:
        """Log and notify after a failure or skip, given the engine's next step."""
        last = call.attempts[-1]
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", last.describe())
        if step.kind == RAISE or step.fallback_from is None:
            return
        dep = step.deployment
        assert dep is not None
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
        if a.model_name != winner.model_name and a.model_name not in fallbacks:
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
