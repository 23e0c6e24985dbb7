"""Streams through a gateway: committed at the first content, settled however they end.

The gateway commits to a deployment when its stream produced its first content (the
attempt's priming); from then on the caller reads the *outer* stream built here, which relays
the inner one's ``(canonical chunk, view item)`` pairs. When the inner stream breaks, the
engine decides: raise :class:`~msgflux.exceptions.StreamInterruptedError` with the partial
text, or (``mid_stream="continue"``) continue on the next deployment with the partial answer
as an assistant prefill. Servers differ in what they do with a prefill: most continue after
it, some repeat it first; a repeated prefill is stripped, so the caller never reads text
twice.

Whatever the ending (finished, broken, or dropped by the reader, even unread and garbage
collected), the stream's admission is settled exactly once, and its
:class:`~msgflux.models.gateway.record.StreamEnd` (when the call wants a record) is told once.
A stream's usage is priced and counted once, when it finished.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from msgflux.exceptions import ModelRouterError
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.drivers import Driver
from msgflux.models.gateway.engine import RAISE, CallState
from msgflux.models.gateway.invoke import Invoker
from msgflux.models.gateway.record import StreamEnd
from msgflux.models.native import NativeAnswer, NativeStream
from msgflux.models.response import Metadata, ModelResponse, ModelStreamResponse, Pair, metadata_of
from msgflux.pricing import usage_tokens

__all__ = ["outer_stream", "stamp"]


def stamp(
    call: CallState, result: Any, by_name: Mapping[str, Deployment], final: bool = True
) -> None:
    """Attach ``metadata.gateway`` (who answered, how many attempts, who failed before, the
    tokens and the cost; keys a wrapper added to an earlier stamp are kept). ``final``: the
    answer is complete, so its usage is priced and added to the deployment's stats (a stream
    is stamped again when it finished)."""
    if not isinstance(result, (ModelResponse, ModelStreamResponse, NativeAnswer, NativeStream)):
        return
    meta = result.metadata
    if not isinstance(meta, Metadata):
        meta = result.metadata = Metadata(meta or {})
    attempts = call.attempts
    winner = call.winner or attempts[-1]
    fallbacks: list[str] = []
    if len(attempts) > 1:
        name = winner.model_name
        for a in attempts:
            if a.model_name != name and a.model_name not in fallbacks and not a.cancelled:
                fallbacks.append(a.model_name)
    usage: dict[str, int] | None = None
    cost: float | None = None
    reported = meta.get("usage") if final else None
    tokens = None if reported is None else usage_tokens(reported)
    if tokens is not None:
        dep = by_name[winner.model_name]
        cost = None if dep.price is None else dep.price.charge(tokens)
        dep.stats.spent(tokens.input, tokens.output, tokens.cached_input, cost)
        usage = {
            "input_tokens": tokens.input,
            "output_tokens": tokens.output,
            "cached_input_tokens": tokens.cached_input,
        }
    stamped = {
        "model_name": winner.model_name,
        "attempts": call.total,
        "fallbacks": fallbacks,
        "hedged": winner.hedge,
        "history": [a.as_dict() for a in attempts],
        "usage": usage,
        "cost": cost,
    }
    earlier = meta.get("gateway")
    # A stream is stamped again when it ends: what the wrappers added (its cache verdict) stays.
    meta["gateway"] = {**earlier, **stamped} if isinstance(earlier, dict) else stamped


class _Echo:
    """Strips a continuation's repetition of its own prefill from the start of its text."""

    __slots__ = ("held", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.held = ""

    def feed(self, text: str) -> str | None:
        """The text to pass on (None: held back while it may still be the echo)."""
        candidate = self.held + text
        prefix = self.prefix
        if prefix.startswith(candidate):
            if len(candidate) == len(prefix):
                self.prefix = ""
                self.held = ""
                return ""
            self.held = candidate
            return None
        self.prefix = ""
        self.held = ""
        return candidate[len(prefix) :] if candidate.startswith(prefix) else candidate


def _with_text(chunk: Any, text: str) -> Any:
    """A copy of a canonical chunk whose first choice's content is ``text``."""
    if not isinstance(chunk, dict):
        return chunk
    choice = chunk["choices"][0]
    delta = {**choice["delta"], "content": text}
    return {**chunk, "choices": [{**choice, "delta": delta}, *chunk["choices"][1:]]}


def _dedup(echo: _Echo | None, pair: Pair) -> tuple[_Echo | None, Pair | None]:
    if echo is None or not isinstance(pair[1], str):
        return echo, pair
    text = echo.feed(pair[1])
    if not echo.prefix:  # decided: an echo stripped, or none
        echo = None
    if text is None:
        return echo, None
    if text == pair[1]:
        return echo, pair
    return echo, (_with_text(pair[0], text), text)


def _ended(
    driver: Driver, call: CallState, how: BaseException | None, cancelled: bool, inner: Any
) -> Any:
    """Stats for a committed stream's end, and the settlement of its admission."""
    lease = call.lease
    if lease is None:
        return None
    clock = driver.clock
    now = clock.perf()
    stats = lease.deployment.stats
    if cancelled:
        stats.abandoned()
    elif how is None:
        stats.answered(now - lease.began, now, lease.hedge)
    else:
        stats.interrupted(how, clock.time())
    return call.stream_ended(how, cancelled, inner, now, clock.time())


def _finished(driver: Driver, call: CallState, inner: Any, outer: ModelStreamResponse) -> None:
    """The stream ended: copy usage/finish_reason/tool calls and refresh the gateway record."""
    meta = getattr(inner, "metadata", None)
    if isinstance(meta, dict):
        metadata_of(outer).update((k, v) for k, v in meta.items() if k != "gateway")
    outer.response_type = getattr(inner, "response_type", None) or outer.response_type
    if getattr(inner, "data", None) is not None:
        outer.data = inner.data
    stamp(call, outer, driver.by_name)


def _pairs(
    driver: Driver,
    call: CallState,
    invoker: Invoker,
    inner: Any,
    outer: ModelStreamResponse,
    end: StreamEnd | None,
) -> Iterator[Pair]:
    parts: list[str] = []
    echo: _Echo | None = None
    clock = driver.clock
    error: BaseException | None = None
    try:
        while True:
            began = clock.perf()
            try:
                for pair in inner.pairs():
                    echo, kept = _dedup(echo, pair)
                    if kept is None:
                        continue
                    if isinstance(kept[1], str):
                        parts.append(kept[1])
                    yield kept
            except Exception as exc:
                driver.settle(_ended(driver, call, exc, False, inner))
                partial = "".join(parts)
                step = call.interrupted(exc, partial, began, clock.perf(), clock.time())
                if step.action is RAISE:
                    assert step.error is not None
                    raise step.error from exc
                driver.hooks.moved(call, step)
                invoker = invoker.continued(partial)
                echo = _Echo(invoker.prefill) if invoker.prefill else None
                try:
                    inner = driver.run(call, invoker, step)
                except ModelRouterError as err:
                    raise call.broken(partial, err, "no deployment could continue it") from err
                continue
            _finished(driver, call, inner, outer)
            driver.settle(_ended(driver, call, None, False, inner))
            return
    except BaseException as exc:
        error = exc
        raise
    finally:
        driver.settle(_ended(driver, call, None, True, inner))
        if end is not None:
            end(error, metadata_of(outer).get("gateway"), parts)


async def _apairs(
    driver: Driver,
    call: CallState,
    invoker: Invoker,
    inner: Any,
    outer: ModelStreamResponse,
    end: StreamEnd | None,
) -> AsyncIterator[Pair]:
    parts: list[str] = []
    echo: _Echo | None = None
    clock = driver.clock
    error: BaseException | None = None
    try:
        while True:
            began = clock.perf()
            try:
                async for pair in inner.apairs():
                    echo, kept = _dedup(echo, pair)
                    if kept is None:
                        continue
                    if isinstance(kept[1], str):
                        parts.append(kept[1])
                    yield kept
            except Exception as exc:
                await driver.asettle(_ended(driver, call, exc, False, inner))
                partial = "".join(parts)
                step = call.interrupted(exc, partial, began, clock.perf(), clock.time())
                if step.action is RAISE:
                    assert step.error is not None
                    raise step.error from exc
                driver.hooks.moved(call, step)
                invoker = invoker.continued(partial)
                echo = _Echo(invoker.prefill) if invoker.prefill else None
                try:
                    inner = await driver.arun(call, invoker, step)
                except ModelRouterError as err:
                    raise call.broken(partial, err, "no deployment could continue it") from err
                continue
            _finished(driver, call, inner, outer)
            await driver.asettle(_ended(driver, call, None, False, inner))
            return
    except BaseException as exc:
        error = exc
        raise
    finally:
        await driver.asettle(_ended(driver, call, None, True, inner))
        if end is not None:
            end(error, metadata_of(outer).get("gateway"), parts)


def outer_stream(
    driver: Driver,
    call: CallState,
    invoker: Invoker,
    inner: ModelStreamResponse,
    is_async: bool,
    end: StreamEnd | None = None,
) -> ModelStreamResponse:
    """The stream the caller reads (see the module docstring); ``end`` is told how it ended."""
    outer = ModelStreamResponse()
    outer.response_type = inner.response_type
    outer.metadata = Metadata({k: v for k, v in (inner.metadata or {}).items() if k != "gateway"})
    if is_async:
        outer.set_pairs(_apairs(driver, call, invoker, inner, outer, end))
    else:
        outer.set_pairs(_pairs(driver, call, invoker, inner, outer, end))
    # A stream nobody reads never runs its generator's cleanup; release its admission
    # (concurrency lease, probe slot) when it is garbage-collected.
    weakref.finalize(outer, _release_unread, driver, call, end)
    return outer


def native_stream(
    driver: Driver,
    call: CallState,
    stream: NativeStream,
    is_async: bool,
    end: StreamEnd | None = None,
) -> NativeStream:
    """A native lane's committed stream, told how it ends: stats, settlement, the usage
    priced, the record (``end``). A break becomes :class:`StreamInterruptedError`: a native
    stream is never continued elsewhere, the client already has the upstream's own events."""

    def ended(how: BaseException | None, cancelled: bool) -> BaseException | None:
        error = None
        if cancelled:
            gone: BaseException | None = GeneratorExit()
        elif how is None:
            stamp(call, stream, driver.by_name)
            gone = None
        else:
            gone = error = call.broken(None, how, f"{type(how).__name__}: {how}")
        settle = _ended(driver, call, how, cancelled, stream)
        if is_async:
            driver.settle_soon(settle)
        else:
            driver.settle(settle)
        if end is not None:
            end(gone, metadata_of(stream).get("gateway"), stream.relay.texts or ())
        return error

    if end is not None and end.content_in is not None:
        stream.capture_text()  # a tracer records the answer's text
    stream.on_end(ended)
    weakref.finalize(stream, _release_unread, driver, call, end)
    return stream


def _release_unread(driver: Driver, call: CallState, end: StreamEnd | None) -> None:
    driver.settle(_ended(driver, call, None, True, None))
    if end is not None:
        end(GeneratorExit(), None)
