"""``ModelGateway``: one object in front of several deployments of the same model type.

It holds the parts and wires them: the validated options (:mod:`.config`), the deployments
(:mod:`.deployment`), the state store, the strategy and the :class:`~.drivers.Driver` whose
loops carry out the engine's decisions. A call plans its ranked deployments, hands the driver
an invoker (:mod:`.invoke`: msgflux-style arguments, a canonical request, or a routed model
method) and returns what the answering deployment gave, stamped with ``metadata.gateway``.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from msgflux._time import Clock, as_clock
from msgflux.exceptions import ModelRouterError
from msgflux.formats import CHAT as CHAT_API
from msgflux.formats import family
from msgflux.models.base import BaseModel
from msgflux.models.gateway import report
from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.cache import ResponseCache, as_cache
from msgflux.models.gateway.config import GatewayConfig
from msgflux.models.gateway.context import MethodCall, context_capacity
from msgflux.models.gateway.deployment import Deployment, parse_deployments
from msgflux.models.gateway.drivers import Driver
from msgflux.models.gateway.engine import CallConfig, CallState
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.gateway.hooks import Hook, Hooks, as_hooks
from msgflux.models.gateway.invoke import STREAMS, Invoker, MsgfluxCall, RawCall
from msgflux.models.gateway.loop_thread import LoopThread
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.gateway.record import CallRecord, Completion, Recorder, StreamEnd
from msgflux.models.gateway.schedule import in_blackout, parse_timezone, window_times
from msgflux.models.gateway.serialization import load_models, serialize
from msgflux.models.gateway.state import StateStore, resolve_store
from msgflux.models.gateway.strategy import apply_ranking, resolve_strategy
from msgflux.models.gateway.streaming import native_stream, outer_stream, stamp
from msgflux.models.gateway.wrappers import (
    MSGFLUX,
    RAW,
    Call,
    Wrapper,
    achain,
    chain,
    check_wrappers,
)
from msgflux.models.native import NativeAnswer, NativeStream, native_request
from msgflux.models.request import BUILDERS, CHAT, KINDS, Request, from_openai
from msgflux.models.response import ModelResponse, metadata_of
from msgflux.pricing import usage_tokens
from msgflux.retry import RetryState
from msgflux.tracing import Tracer

__all__ = ["ModelGateway"]

logger = logging.getLogger("msgflux.gateway")

_SPEEDS = ("fast", "ultrafast", "nitro")


class _PackageClock(Clock):
    """Real time, with the wall clock read through ``msgflux.models.gateway.utc_now`` when it
    is called, so code that patches that name (as msgflux's own tests do) moves the gateway."""

    def now(self) -> datetime:
        value = sys.modules["msgflux.models.gateway"].utc_now()
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"utc_now() must return an aware datetime, got {value!r}")
        return value


_DEFAULT_CLOCK = _PackageClock()


def _factory(model_path: str, **arguments: Any) -> Any:
    """``Model.chat_completion`` looked up through ``msgflux.models.gateway`` when called
    (msgflux's tests patch ``msgflux.models.gateway.Model.chat_completion``)."""
    return sys.modules["msgflux.models.gateway"].Model.chat_completion(model_path, **arguments)


def _accepted_names(model: BaseModel) -> frozenset[str] | None:
    """The keywords a user-written model's ``__call__`` takes (None: any, ``**kwargs``)."""
    if getattr(model, "canonical", False):
        return None
    try:
        params = inspect.signature(model.__call__).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def _messages_ok(value: Any) -> None:
    if type(value) is not str and not (
        isinstance(value, list) and all(isinstance(m, dict) for m in value)
    ):
        raise TypeError(
            f"messages must be a str or a list of message dicts, got {type(value).__name__}"
        )


def _stream_ok(value: Any) -> None:
    if value is not True and value is not False:
        raise TypeError(f"stream must be a bool, got {value!r}")


def _text_ok(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")

    return check


_CHAT_CHECKS: dict[str, Callable[[Any], None]] = {
    "messages": _messages_ok,
    "stream": _stream_ok,
    "system_prompt": _text_ok("system_prompt"),
    "prefilling": _text_ok("prefilling"),
}
"""Cheap checks of msgflux's chat arguments, for gateways of user-written models (a built-in
provider's request is built, and so fully validated, before any attempt)."""


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
    model_types = None
    current_model_index = 0
    """msgflux's attribute: always 0 (the order comes from the plan of each call)."""

    def __init__(
        self,
        models: list[dict[str, Any]],
        *,
        fallback: bool = True,
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
        first_chunk_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_response_bytes: int | None = None,
        max_event_bytes: int | None = None,
        timezone: str | None = None,
        clock: Clock | Callable[[], datetime] | None = None,
        mid_stream: str = "raise",
        on_attempt: Hook | Sequence[Hook] | None = None,
        on_fallback: Hook | Sequence[Hook] | None = None,
        on_success: Hook | Sequence[Hook] | None = None,
        on_failure: Hook | Sequence[Hook] | None = None,
        on_complete: Completion | Sequence[Completion] | None = None,
        name: str | None = None,
        tracing: Any = None,
        trace_content: bool = False,
        breaker: Breaker | dict[str, Any] | bool | None = True,
        state: StateStore | str | None = None,
        strategy: Any = "ordered",
        hedge: Hedge | float | str | dict[str, Any] | None = None,
        when_all_open: str = "fail",
        stats_window: float = 300.0,
        translation: Mapping[str, str] | None = None,
        wrappers: Wrapper | Sequence[Wrapper] | None = None,
        cache: Any = None,
    ) -> None:
        cfg = GatewayConfig(
            fallback=fallback,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            retry_after_cap=retry_after_cap,
            retry=retry,
            wait=wait,
            stop=stop,
            fallback_on=fallback_on,
            raise_on=raise_on,
            max_attempts=max_attempts,
            timeout=timeout,
            deadline=deadline,
            first_chunk_timeout=first_chunk_timeout,
            idle_timeout=idle_timeout,
            max_response_bytes=max_response_bytes,
            max_event_bytes=max_event_bytes,
            timezone=timezone,
            mid_stream=mid_stream,
            breaker=breaker,
            strategy=strategy,
            hedge=hedge,
            when_all_open=when_all_open,
            stats_window=stats_window,
            name=name,
            translation=translation,
        )
        self._config = cfg
        self._clock = _DEFAULT_CLOCK if clock is None else as_clock(clock)
        self._cache, self._owns_cache = as_cache(cache)
        own = check_wrappers(wrappers)
        self._wrappers = own if self._cache is None else (*own, self._cache)
        self._wrapper_options = frozenset().union(*(w.options for w in self._wrappers))
        self._chain = chain(self._wrappers, self._core)
        self._achain = achain(self._wrappers, self._acore)
        hooks = Hooks(on_attempt, on_fallback, on_success, on_failure)
        self._deployments = parse_deployments(
            models,
            default_timezone=parse_timezone(timezone),
            default_retry=cfg.retry_policy,
            default_timeout=cfg.timeout,
            default_first_chunk_timeout=cfg.first_chunk_timeout,
            default_idle_timeout=cfg.idle_timeout,
            default_max_response_bytes=cfg.max_response_bytes,
            default_max_event_bytes=cfg.max_event_bytes,
            default_breaker=cfg.default_breaker,
            stats_window=float(stats_window),
            factory=_factory,
        )
        deployments = self._deployments
        self._by_name = {d.name: d for d in deployments}
        self._scheduled = any(d.windows for d in deployments)
        self._policies = [d.policy for d in deployments]
        self._kind = KINDS.get(str(deployments[0].model.model_type))
        self._recorder = Recorder(
            name,
            self._kind or str(deployments[0].model.model_type),
            self._clock,
            as_hooks(on_complete, "on_complete"),
            Tracer.coerce(tracing, trace_content),
        )
        self._build = BUILDERS.get(self._kind) if self._kind else None
        self._canonical = any(d.canonical for d in deployments)
        accepted = [_accepted_names(d.model) for d in deployments]
        self._accepts: frozenset[str] | None = (
            None if any(a is None for a in accepted) else frozenset().union(*accepted)  # type: ignore[arg-type]
        )
        self._call_cfg = CallConfig(
            cfg.max_attempts,
            cfg.deadline,
            cfg.fallback_match,
            cfg.raise_match,
            cfg.mid_stream,
            cfg.hedge_policy,
        )
        self._owns_store = isinstance(state, str)
        self._store: StateStore = resolve_store(state)
        self._store.register(self._policies)
        tracked = any(p.active for p in self._policies)
        self._ranking, self._strategy_name = resolve_strategy(strategy, self._clock)
        self._loop_lock = threading.Lock()
        self._loop_thread: LoopThread | None = None
        self._driver = Driver(
            self._clock,
            self._store,
            tracked,
            hooks,
            self._by_name,
            when_all_open == "probe",
            cfg.hedge_policy is not None,
            self._loop,
        )
        if self._cache is not None:
            self._bind_cache(self._cache)
        if len(deployments) < 2:
            logger.warning(
                "ModelGateway has only %d deployment: fallback cannot help when it fails",
                len(deployments),
            )

    # -- the documented surface ------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The ``name=`` it was given (labels its records, metrics and spans)."""
        return self._config.name

    @property
    def models(self) -> list[BaseModel]:
        return [d.model for d in self._deployments]

    @property
    def model_names(self) -> list[str]:
        return [d.name for d in self._deployments]

    @property
    def model_type(self) -> str:
        return str(self._deployments[0].model.model_type)

    @property
    def fallback(self) -> bool:
        """False: only the preferred (or first) deployment is ever tried."""
        return self._config.fallback

    @property
    def batch_support(self) -> bool:
        return all(bool(getattr(d.model, "batch_support", False)) for d in self._deployments)

    def get_model_info(self) -> list[dict[str, str]]:
        return [dict(d.model.get_model_info()) for d in self._deployments]

    def __repr__(self) -> str:
        return f"ModelGateway(model_names={self.model_names!r}, model_type={self.model_type!r})"

    # -- names and descriptions ------------------------------------------------------------
    def validate_model_name(self, model_name: Any) -> str:
        """``model_name`` when it names a deployment; TypeError/ValueError otherwise."""
        if not isinstance(model_name, str) or not model_name:
            raise TypeError(f"`model_name` must be a non-empty string, got {model_name!r}")
        if model_name not in self._by_name:
            raise ValueError(
                f"Unknown model `{model_name}`. Available models: {', '.join(self.model_names)}."
            )
        return model_name

    @property
    def model_descriptions(self) -> dict[str, str | None]:
        return {d.name: d.description for d in self._deployments}

    def get_model_description(self, model_name: str) -> str | None:
        return self._by_name[self.validate_model_name(model_name)].description

    # -- time windows (msgflux's view of them) ---------------------------------------------
    @property
    def raw_time_constraints(self) -> dict[str, Any] | None:
        raw = {
            d.name: d.raw["time_constraints"]
            for d in self._deployments
            if d.raw.get("time_constraints") is not None
        }
        return raw or None

    @property
    def parsed_time_constraints(self) -> dict[str, list[Any]]:
        return {d.name: window_times(d.windows) for d in self._deployments if d.windows}

    def _is_time_restricted(self, model_name: str) -> bool:
        dep = self._by_name[self.validate_model_name(model_name)]
        return bool(dep.windows) and in_blackout(dep.windows, self._clock.now(), dep.timezone)

    # -- model settings forwarded to every (or one) deployment -----------------------------
    def _targets(self, model_name: str | None) -> list[BaseModel]:
        if model_name is None:
            return self.models
        return [self._by_name[self.validate_model_name(model_name)].model]

    def _forward(self, setter: str, what: str, value: Any, model_name: str | None) -> ModelGateway:
        for model in self._targets(model_name):
            method = getattr(model, setter, None)
            if callable(method):
                method(value)
            elif value is not None:
                warnings.warn(
                    f"Model `{model.model_id}` from provider `{model.provider}` does not support "
                    f"{what}; the setting was ignored.",
                    UserWarning,
                    stacklevel=3,
                )
        if self._cache is not None:
            self._bind_cache(self._cache)  # the deployments answer differently now
        return self

    def set_reasoning_effort(
        self, reasoning_effort: Any, *, model_name: str | None = None
    ) -> ModelGateway:
        """Set ``reasoning_effort`` on every deployment's model (or only ``model_name``'s)."""
        if reasoning_effort is not None and (
            not isinstance(reasoning_effort, str) or not reasoning_effort.strip()
        ):
            raise TypeError("`reasoning_effort` must be a non-empty string or None")
        return self._forward(
            "set_reasoning_effort", "request-level `reasoning_effort`", reasoning_effort, model_name
        )

    def set_speed(self, speed: Any, *, model_name: str | None = None) -> ModelGateway:
        """Set ``speed`` (``"fast"``, ``"ultrafast"`` or ``"nitro"``) on every model (or one)."""
        if speed is not None:
            if not isinstance(speed, str):
                raise TypeError("`speed` must be a string or None")
            if speed not in _SPEEDS:
                raise ValueError(f"`speed` must be one of: {', '.join(_SPEEDS)}")
        return self._forward("set_speed", f"`speed={speed!r}`", speed, model_name)

    @property
    def context_capacity(self) -> int | None:
        """The smallest context window among the deployments (None when one is unknown)."""
        return context_capacity(self.models)

    # -- planning ----------------------------------------------------------------------------
    def _plan(self, model_preference: str | None) -> CallState:
        """The call's ranked deployments: preference first, then the strategy's order."""
        deployments: Sequence[Deployment] = self._deployments
        preferred: Deployment | None = None
        if model_preference is not None:
            preferred = self._by_name[self.validate_model_name(model_preference)]
        if not self._config.fallback:
            selected = preferred or deployments[0]
            if self._scheduled and in_blackout(
                selected.windows, self._clock.now(), selected.timezone
            ):
                raise ModelRouterError(
                    [],
                    [],
                    f"Selected model `{selected.name}` is unavailable due to time constraints",
                )
            return CallState(self._call_cfg, [selected], self._clock.perf())
        if preferred is not None:
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
        return CallState(self._call_cfg, deployments, self._clock.perf(), policies)

    def plan(self, model_preference: str | None = None) -> list[str]:
        """The deployments a call made now would try, in order (time windows, preference and
        strategy applied; breakers and limits are judged per attempt, so they are not). Like
        a call, it advances a rotating strategy such as ``round_robin``."""
        return [d.name for d in self._plan(model_preference).deployments]

    def _invoker(self, call: CallState, kwargs: dict[str, Any]) -> MsgfluxCall:
        """The msgflux-style call, its arguments validated before any attempt."""
        accepts = self._accepts
        if accepts is not None and not accepts.issuperset(kwargs):
            unknown = sorted(set(kwargs) - accepts)
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                f"the deployments accept: {', '.join(sorted(accepts))}"
            )
        if self._kind == CHAT:
            checks = _CHAT_CHECKS
            for name in kwargs:
                check = checks.get(name)
                if check is not None:
                    check(kwargs[name])
        clock = self._clock
        invoker = MsgfluxCall(kwargs, self._build or _no_build, clock, call)
        if self._canonical and self._build is not None:
            invoker.request()  # builds and validates the canonical request
        return invoker

    def _finish(
        self,
        call: CallState,
        invoker: Invoker,
        result: Any,
        is_async: bool,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        """The msgflux path's answer: stamped, success hooks run (and, when someone wants
        them, the call's record made: see :meth:`_complete`)."""
        if self._recorder.active or isinstance(result, STREAMS):
            return self._complete(call, invoker, result, is_async, False, meta)[0]
        stamp(call, result, self._by_name)
        if meta:
            _add_meta(result, meta)
        if self._driver.hooks.on_success or logger.isEnabledFor(logging.DEBUG):
            self._succeeded(call, result)
        return result

    def _succeeded(self, call: CallState, result: Any) -> None:
        winner = call.winner or call.attempts[-1]
        self._driver.hooks.success(call, self._by_name[winner.model_name], result)

    def _complete(
        self,
        call: CallState,
        invoker: Invoker,
        result: Any,
        is_async: bool,
        raw: bool,
        meta: dict[str, Any] | None = None,
    ) -> tuple[Any, CallRecord | StreamEnd | None]:
        """Stamp the answer (with what the wrappers add: ``meta``), run the success hooks and
        make the call's record (a stream's when it ends): for the ``on_complete`` hooks and
        tracer, or for the raw path."""
        recorder = self._recorder
        wanted = raw or recorder.active
        record: CallRecord | StreamEnd | None = None
        if isinstance(result, STREAMS):
            end = None
            if wanted:
                end = StreamEnd(
                    recorder, call, self._clock.perf() - call.started, self._content_in(invoker)
                )
            if isinstance(result, NativeStream):
                result = native_stream(self._driver, call, result, is_async, end)
            else:
                result = outer_stream(self._driver, call, invoker, result, is_async, end)
            stamp(call, result, self._by_name, False)
            record = end
        else:
            stamp(call, result, self._by_name)
        if meta:
            _add_meta(result, meta)
        if self._driver.hooks.on_success or logger.isEnabledFor(logging.DEBUG):
            self._succeeded(call, result)
        if record is None and wanted:
            gateway = (
                metadata_of(result).get("gateway")
                if isinstance(result, (ModelResponse, NativeAnswer))
                else None
            )
            record = recorder.build(call, False, *recorder.now(), gateway=gateway)
            if recorder.active:
                content_in = self._content_in(invoker)
                content = None if content_in is None else (lambda: (content_in(), result.data))
                recorder.deliver(record, content)
        return result, record

    def _content_in(self, invoker: Invoker) -> Any:
        """What a content-recording tracer shows as the call's input (None: not wanted)."""
        tracer = self._recorder.tracer
        return invoker.content if tracer is not None and tracer.content else None

    def _failed(self, call: CallState | None, stream: bool, error: BaseException) -> None:
        if self._recorder.active:
            self._recorder.failed(call, stream, error)

    def _plan_call(self, model_preference: str | None, stream: bool) -> CallState:
        """:meth:`_plan` for a call: one refused before any attempt still has its record."""
        try:
            return self._plan(model_preference)
        except ModelRouterError as exc:
            self._failed(None, stream, exc)
            raise

    # -- calls -------------------------------------------------------------------------------
    def __call__(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Call the deployments in order until one answers; see the class docstring."""
        if self._wrappers:
            return self._chain(self._call(MSGFLUX, model_preference, kwargs, is_async=False))
        return self._msgflux(kwargs, model_preference)

    async def acall(self, *, model_preference: str | None = None, **kwargs: Any) -> Any:
        """Async form of ``__call__``; never blocks the event loop."""
        if self._wrappers:
            return await self._achain(self._call(MSGFLUX, model_preference, kwargs, is_async=True))
        return await self._amsgflux(kwargs, model_preference)

    def _msgflux(
        self,
        kwargs: dict[str, Any],
        model_preference: str | None,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        try:
            call = self._plan(model_preference)
        except ModelRouterError as exc:
            self._failed(None, kwargs.get("stream") is True, exc)
            raise
        invoker = self._invoker(call, kwargs)
        try:
            result = self._driver.run(call, invoker, call.begin(call.started))
        except BaseException as exc:
            self._failed(call, invoker.stream, exc)
            raise
        return self._finish(call, invoker, result, False, meta)

    async def _amsgflux(
        self,
        kwargs: dict[str, Any],
        model_preference: str | None,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        try:
            call = self._plan(model_preference)
        except ModelRouterError as exc:
            self._failed(None, kwargs.get("stream") is True, exc)
            raise
        invoker = self._invoker(call, kwargs)
        try:
            result = await self._driver.arun(call, invoker, call.begin(call.started))
        except BaseException as exc:
            self._failed(call, invoker.stream, exc)
            raise
        return self._finish(call, invoker, result, True, meta)

    # -- call wrappers -------------------------------------------------------------------------
    def _call(
        self,
        path: str,
        model_preference: str | None,
        kwargs: dict[str, Any],
        request: Request | None = None,
        is_async: bool = False,
    ) -> Call:
        """The :class:`~.wrappers.Call` its wrappers see (their options taken out of
        ``kwargs``: no deployment ever gets them)."""
        names = self._wrapper_options
        options = {k: kwargs.pop(k) for k in [k for k in kwargs if k in names]}
        return Call(
            self,
            path,
            request=request,
            kwargs=kwargs,
            model_preference=model_preference,
            options=options,
            is_async=is_async,
        )

    def _core(self, call: Call) -> Any:
        """The call itself, inside every wrapper."""
        if call.path == MSGFLUX:
            return self._msgflux(call.kwargs, call.model_preference, call.meta)
        request = call.request
        assert request is not None
        return self._complete_raw(request, call.model_preference, call.meta)

    async def _acore(self, call: Call) -> Any:
        if call.path == MSGFLUX:
            return await self._amsgflux(call.kwargs, call.model_preference, call.meta)
        request = call.request
        assert request is not None
        return await self._acomplete_raw(request, call.model_preference, call.meta)

    def _canonical_of(self, kwargs: dict[str, Any]) -> Request | None:
        """The canonical request msgflux arguments make (None for a gateway of user-written
        models, which take the arguments as they are)."""
        if self._build is None or not self._canonical:
            return None
        return self._build(**kwargs)

    def _answer_of(self, call: Call, completion: dict[str, Any], deployment: str) -> Any:
        """What :meth:`Call.answer <.wrappers.Call.answer>` gives: ``completion`` as the
        answer of the call's path."""
        from msgflux.models.gateway.replay import replay

        return replay(self, call, completion, deployment)

    def _replayed(self, call: Call, who: tuple[str, str], meta: dict[str, Any]) -> CallRecord:
        """The record of an answer a wrapper gave (delivered to the hooks)."""
        return self._recorder.replayed(call.started, call.stream, who, meta)

    # -- the response cache ------------------------------------------------------------------
    @property
    def cache(self) -> ResponseCache | None:
        """The gateway's response cache (``cache=``), or None."""
        return self._cache

    def _bind_cache(self, cache: ResponseCache) -> None:
        """Key the cache to this gateway: its name, its deployments and their settings."""
        deployments = [(d.name, _serialized(d.model)) for d in self._deployments]
        temperatures = [getattr(d.model, "sampling_run_params", None) for d in self._deployments]
        own = [t.get("temperature") if isinstance(t, dict) else None for t in temperatures]
        numbers = [t for t in own if isinstance(t, (int, float)) and not isinstance(t, bool)]
        cache.bind(
            self.name,
            deployments,
            max(numbers) if len(numbers) == len(own) else None,
            self._clock,
            self._cost_of,
        )

    def _cost_of(self, deployment: str, usage: Any) -> float | None:
        """What an answer with ``usage`` costs on ``deployment`` at its price (None: unknown)."""
        dep = self._by_name.get(deployment)
        if dep is None or dep.price is None:
            return None
        tokens = usage_tokens(usage)
        return None if tokens is None else dep.price.charge(tokens)

    # -- the raw path (a request in its API family in, the answer in that family out) -------
    def _coerce(
        self, request: Request | dict[str, Any], api: str, headers: Mapping[str, str] | None
    ) -> Request:
        if isinstance(request, dict):
            request = self.request(request, api=api, headers=headers)
        elif not isinstance(request, Request):
            raise TypeError(
                f"request must be a Request or a request body dict, got {type(request).__name__}"
            )
        if request.kind != self._kind:
            raise ValueError(f"a {request.kind} request cannot go to a {self.model_type} gateway")
        return request

    def _raw(self, request: Request, model_preference: str | None) -> tuple[CallState, RawCall]:
        call = self._plan_call(model_preference, request.stream)
        return call, RawCall(request, self._clock, call, self._config.translation)

    def request(
        self,
        body: dict[str, Any],
        *,
        api: str = CHAT_API,
        headers: Mapping[str, str] | None = None,
    ) -> Request:
        """The request :meth:`complete` makes of ``body``, a request body in API family
        ``api`` (``"chat"``: an OpenAI body; ``"messages"``: Anthropic's) with its client's
        ``headers`` (those of the family's own, like ``anthropic-beta``, go upstream on a
        native lane). Validated now: a chat body as :func:`~msgflux.models.request.from_openai`
        does (a ``TypeError``/``ValueError`` naming the field); another family's body when a
        deployment needs it translated (a deployment it cannot be translated for is skipped).
        """
        if not isinstance(body, dict):
            raise TypeError(f"body must be a dict, got {type(body).__name__}")
        if self._kind is None:
            raise ValueError(f"a {self.model_type} gateway has no canonical request form")
        fam = family(api)
        if self._kind != CHAT:
            if api != CHAT_API:
                raise ValueError(f"a {self.model_type} gateway takes OpenAI bodies, not {api!r}")
            return from_openai(self._kind, body)
        native = native_request(fam, body, headers)
        if api == CHAT_API:
            req = from_openai(CHAT, body)
        else:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise ValueError("model is required: a str")
            req = Request(CHAT, {}, native.stream)
        req.native = native
        return req

    def _raw_result(
        self,
        call: CallState,
        invoker: RawCall,
        result: Any,
        is_async: bool,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        result, record = self._complete(call, invoker, result, is_async, True, meta)
        gateway = metadata_of(result)["gateway"]
        native = invoker.req.native
        fam = family(native.family) if native is not None else None
        if isinstance(result, STREAMS):
            return RawStream(result, invoker.req, gateway, call.attempts, record, fam)
        return RawAnswer(result, invoker.req, gateway, call.attempts, record, fam)

    def complete(
        self,
        request: Request | dict[str, Any],
        *,
        model_preference: str | None = None,
        api: str = CHAT_API,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> RawAnswer | RawStream:
        """The raw path: a request in, the answer in the request's API family out, who gave
        it and the attempts.

        ``request`` is a :class:`~msgflux.models.request.Request` or a request body: an
        OpenAI chat body, or with ``api="messages"`` an Anthropic Messages body (``headers``:
        its client's headers, see :meth:`request`). A deployment that speaks the request's
        family gets it as it is (a native lane); any other gets it translated. Every
        resilience feature applies exactly as for ``gateway(...)``. A streamed request gives
        a :class:`~msgflux.models.gateway.raw.RawStream`. ``options`` are the per-call
        options of the gateway's wrappers.
        """
        req = self._coerce(request, api, headers)
        if self._wrappers:
            return self._chain(self._call(RAW, model_preference, options, req, False))  # type: ignore[no-any-return]
        self._no_options(options)
        return self._complete_raw(req, model_preference)

    async def acomplete(
        self,
        request: Request | dict[str, Any],
        *,
        model_preference: str | None = None,
        api: str = CHAT_API,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> RawAnswer | RawStream:
        """Async form of :meth:`complete` (a stream is read with ``async for``)."""
        req = self._coerce(request, api, headers)
        if self._wrappers:
            return await self._achain(self._call(RAW, model_preference, options, req, True))  # type: ignore[no-any-return]
        self._no_options(options)
        return await self._acomplete_raw(req, model_preference)

    def _no_options(self, options: dict[str, Any]) -> None:
        if options:
            names = ", ".join(map(repr, sorted(options)))
            raise TypeError(
                f"unexpected keyword argument(s) {names}: no wrapper of this gateway takes them"
            )

    def _complete_raw(
        self,
        request: Request,
        model_preference: str | None,
        meta: dict[str, Any] | None = None,
    ) -> RawAnswer | RawStream:
        call, invoker = self._raw(request, model_preference)
        try:
            result = self._driver.run(call, invoker, call.begin(call.started))
        except BaseException as exc:
            self._failed(call, invoker.stream, exc)
            raise
        return self._raw_result(call, invoker, result, False, meta)  # type: ignore[no-any-return]

    async def _acomplete_raw(
        self,
        request: Request,
        model_preference: str | None,
        meta: dict[str, Any] | None = None,
    ) -> RawAnswer | RawStream:
        call, invoker = self._raw(request, model_preference)
        try:
            result = await self._driver.arun(call, invoker, call.begin(call.started))
        except BaseException as exc:
            self._failed(call, invoker.stream, exc)
            raise
        return self._raw_result(call, invoker, result, True, meta)  # type: ignore[no-any-return]

    # -- msgflux's routed context methods ---------------------------------------------------
    def _routed(
        self, name: str, kwargs: dict[str, Any], model_preference: str | None
    ) -> tuple[CallState, MethodCall]:
        call = self._plan(model_preference)
        clock = self._clock
        return call, MethodCall(name, kwargs, clock, call)

    def _method(self, name: str, kwargs: dict[str, Any], model_preference: str | None) -> Any:
        call, invoker = self._routed(name, kwargs, model_preference)
        return self._driver.run(call, invoker, call.begin(call.started))

    async def _amethod(
        self, name: str, kwargs: dict[str, Any], model_preference: str | None
    ) -> Any:
        call, invoker = self._routed(name, kwargs, model_preference)
        return await self._driver.arun(call, invoker, call.begin(call.started))

    def count_context_tokens(
        self,
        messages: Any,
        *,
        system_prompt: Any = None,
        tool_catalog: Any = None,
        model_preference: str | None = None,
    ) -> Any:
        """How many input tokens ``messages`` take, asked of the deployments in order."""
        kwargs = {
            "messages": messages,
            "system_prompt": system_prompt,
            "tool_catalog": tool_catalog,
        }
        return self._method("count_context_tokens", kwargs, model_preference)

    async def acount_context_tokens(
        self,
        messages: Any,
        *,
        system_prompt: Any = None,
        tool_catalog: Any = None,
        model_preference: str | None = None,
    ) -> Any:
        kwargs = {
            "messages": messages,
            "system_prompt": system_prompt,
            "tool_catalog": tool_catalog,
        }
        return await self._amethod("count_context_tokens", kwargs, model_preference)

    def compact_context(
        self,
        messages: Any,
        *,
        system_prompt: Any = None,
        model_preference: str | None = None,
        native: bool = True,
    ) -> Any:
        """Compact ``messages``, always in the portable form (``native=False``): a fallback may
        cross providers, and provider state must never pin a later request to one of them."""
        kwargs = {"messages": messages, "system_prompt": system_prompt, "native": False}
        return self._method("compact_context", kwargs, model_preference)

    async def acompact_context(
        self,
        messages: Any,
        *,
        system_prompt: Any = None,
        model_preference: str | None = None,
        native: bool = True,
    ) -> Any:
        kwargs = {"messages": messages, "system_prompt": system_prompt, "native": False}
        return await self._amethod("compact_context", kwargs, model_preference)

    def warmup_system_prompt(
        self, *, system_prompt: Any, tool_catalog: Any = None, model_preference: str | None = None
    ) -> Any:
        kwargs = {"system_prompt": system_prompt, "tool_catalog": tool_catalog}
        return self._method("warmup_system_prompt", kwargs, model_preference)

    async def awarmup_system_prompt(
        self, *, system_prompt: Any, tool_catalog: Any = None, model_preference: str | None = None
    ) -> Any:
        kwargs = {"system_prompt": system_prompt, "tool_catalog": tool_catalog}
        return await self._amethod("warmup_system_prompt", kwargs, model_preference)

    # -- serialization -----------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        """The documented structure; options appear only when set. Never holds secrets."""
        return serialize(self._deployments, self._config)

    @classmethod
    def from_serialized(cls, data: dict[str, Any], **overrides: Any) -> ModelGateway:
        """Rebuild a gateway from :meth:`serialize` output; hooks, clocks and ``state=`` go in
        ``overrides``."""
        models, options = load_models(data)
        options.update(overrides)
        return cls(models, **options)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ModelGateway is not picklable; use serialize()/from_serialized()")

    # -- live stats and health ---------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per deployment: calls, successes, failures by error class, in flight, skips,
        latency and time-to-first-chunk percentiles (seconds, recent window), last error,
        breaker state and reopen time, limit usage. Plain JSON-serializable data, no secret.
        """
        clock = self._clock
        cfg = self._config
        head = {
            "strategy": self._strategy_name,
            "hedge": None if cfg.hedge_policy is None else cfg.hedge_policy.as_dict(),
        }
        if self._cache is not None:
            head["cache"] = self._cache.stats()
        return report.stats(
            self._deployments, self._store, self._driver.tracked, clock.perf(), clock.time(), head
        )

    def health(self) -> dict[str, Any]:
        """``{"status": "healthy" | "degraded" | "down", "deployments": {...}}``."""
        return report.health(
            self._deployments, self._store, self._driver.tracked, self._clock.time()
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def _loop(self) -> LoopThread:
        """The private event loop the sync driver runs hedged races on (created on first use)."""
        with self._loop_lock:
            if self._loop_thread is None:
                self._loop_thread = LoopThread()
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
        if self._cache is not None and self._owns_cache:
            self._cache.store.close()


def _add_meta(result: Any, meta: dict[str, Any]) -> None:
    """Add what the wrappers say (``meta``) to an answer's ``metadata.gateway``."""
    gateway = (getattr(result, "metadata", None) or {}).get("gateway")
    if isinstance(gateway, dict):
        gateway.update(meta)


def _serialized(model: BaseModel) -> Any:
    """A model's ``serialize()`` (its settings, never a secret), or its identity when a
    user-written model cannot serialize itself."""
    try:
        return model.serialize()
    except Exception:
        return [str(getattr(model, "provider", "")), str(getattr(model, "model_id", ""))]


def _no_build(**kwargs: Any) -> Request:
    raise TypeError("this model type has no canonical request form")
