"""How one attempt calls one deployment: the only code that differs between the msgflux-style
call (``gateway(messages=...)``) and the raw path (``gateway.complete(request)``).

Both are *invokers*: ``call(step)`` / ``acall(step)`` make one attempt bounded by the step's
timeout and return a primed answer (a stream has produced its first content, so an error
before that is this attempt's failure). ``continued(partial)`` gives the invoker that resumes
a broken stream on the next deployment.

* :class:`MsgfluxCall` passes the caller's own keyword arguments to a user-written model
  (exactly what msgflux does) and the canonical request, built once and validated before any
  attempt, to a built-in provider.
* :class:`RawCall` passes a request to every model: as its client sent it to a deployment that
  speaks its API family (a native lane), else in the canonical form, translated once per call
  (a user-written model gets it as msgflux arguments, see :meth:`BaseModel.send`). Each
  translated attempt has its own :class:`~msgflux.formats.policy.Translation`, whose drops
  the answer reports (``metadata["dropped"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from msgflux._time import Clock
from msgflux.exceptions import APITimeoutError, UnsupportedFeatureError
from msgflux.formats import CHAT, family
from msgflux.formats.policy import Translation
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.engine import CallState, Step
from msgflux.models.native import NativeStream
from msgflux.models.request import CHAT as CHAT_KIND
from msgflux.models.request import Request, from_openai
from msgflux.models.response import ModelStreamResponse

__all__ = ["Invoker", "MsgfluxCall", "RawCall", "aprime", "prime"]


STREAMS = (ModelStreamResponse, NativeStream)
"""What a streamed attempt returns: a view's stream, or a native lane's relay."""


def prime(result: Any) -> Any:
    """Wait for a stream's first content, so errors before it count as this attempt's."""
    if isinstance(result, STREAMS):
        result.first_chunk()
    return result


async def aprime(result: Any) -> Any:
    if isinstance(result, STREAMS):
        await result.afirst_chunk()
    return result


def _first(a: Any, b: Any) -> Any:
    return b if a is None else a


def _timeout_error(dep: Deployment, timeout: float) -> APITimeoutError:
    return APITimeoutError(
        f"attempt abandoned after {timeout:g}s (timeout)",
        provider=dep.provider,
        model_id=dep.model_id,
    )


def _abandonable(fn: Callable[[], Any], timeout: float, clock: Clock, dep: Deployment) -> Any:
    """Run ``fn`` on a daemon thread for at most ``timeout`` seconds (judged by ``clock``).

    A sync model cannot be interrupted, so a timed-out attempt is abandoned: its thread
    finishes on its own, and being a daemon it never holds up interpreter exit (a pool thread
    would).
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
    if not clock.wait_event(done, timeout):
        raise _timeout_error(dep, timeout)
    ok, value = box[0]
    if ok:
        return value
    raise value


class Invoker:
    """One call's way of attempting a deployment (see the module docstring)."""

    stream: bool = False

    def __init__(self, clock: Clock, call: CallState) -> None:
        self.clock = clock
        self.state = call

    def _request(self, base: Request, dep: Deployment, step: Step) -> Request:
        """The canonical request of this attempt: the call's, with the deployment's bounds
        (copied only when they differ: most attempts send the call's request as it is)."""
        bounds = (
            step.timeout,
            _first(dep.first_chunk_timeout, base.first_chunk_timeout),
            _first(dep.idle_timeout, base.idle_timeout),
            _first(dep.max_response_bytes, base.max_response_bytes),
            _first(dep.max_event_bytes, base.max_event_bytes),
            self.state.remaining(self.clock.perf()),
        )
        if bounds == (
            base.timeout,
            base.first_chunk_timeout,
            base.idle_timeout,
            base.max_response_bytes,
            base.max_event_bytes,
            base.deadline,
        ):
            return base
        return base.bounded(*bounds)

    def _send(self, dep: Deployment, req: Request, step: Step) -> Any:
        model = dep.model
        if dep.canonical or step.timeout is None or model.supports_timeout:
            return prime(model.send(req))
        return _abandonable(lambda: prime(model.send(req)), step.timeout, self.clock, dep)

    async def _asend(self, dep: Deployment, req: Request, step: Step) -> Any:
        model = dep.model
        if dep.canonical or step.timeout is None or model.supports_timeout:
            return await aprime(await model.asend(req))
        return await _within(self.clock, _aprimed_send(model, req), step.timeout, dep)

    def call(self, step: Step) -> Any:
        raise NotImplementedError

    async def acall(self, step: Step) -> Any:
        raise NotImplementedError

    def continued(self, partial: str) -> Invoker:
        raise NotImplementedError

    @property
    def prefill(self) -> str:
        """The assistant prefill this call sends (what a continuation may echo back)."""
        return ""

    def content(self) -> Any:
        """The call's input (messages, or an embedding's input), for a tracer that records
        content."""
        return None


async def _within(clock: Clock, coro: Any, timeout: float, dep: Deployment) -> Any:
    """Await ``coro`` for at most ``timeout`` seconds of ``clock`` time (a manual clock decides
    when the timeout fires); past it, the attempt is cancelled and fails as a timeout."""
    task = asyncio.ensure_future(coro)
    try:
        done = await clock.wait_first({task}, timeout)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise _timeout_error(dep, timeout)


async def _aprimed_send(model: Any, req: Request) -> Any:
    return await aprime(await model.asend(req))


async def _aprimed_call(model: Any, kwargs: dict[str, Any]) -> Any:
    return await aprime(await model._acall_once(**kwargs))


class MsgfluxCall(Invoker):
    """``gateway(**kwargs)``: user models get ``kwargs``, built-in ones the canonical request."""

    def __init__(
        self,
        kwargs: dict[str, Any],
        build: Callable[..., Request],
        clock: Clock,
        call: CallState,
        request: Request | None = None,
    ) -> None:
        super().__init__(clock, call)
        self.kwargs = kwargs
        self.build = build
        self.stream = kwargs.get("stream") is True
        self._req = request

    def request(self) -> Request:
        """The canonical request (built once, on the first built-in deployment's attempt)."""
        req = self._req
        if req is None:
            req = self._req = self.build(**self.kwargs)
        return req

    def call(self, step: Step) -> Any:
        dep = step.deployment
        assert dep is not None
        if dep.canonical:
            return self._send(dep, self._request(self.request(), dep, step), step)
        model = dep.model
        timeout = step.timeout
        if timeout is None:
            return prime(model._call_once(**self.kwargs))
        if model.supports_timeout:
            return prime(model._call_once(timeout=timeout, **self.kwargs))
        kwargs = self.kwargs
        return _abandonable(lambda: prime(model._call_once(**kwargs)), timeout, self.clock, dep)

    async def acall(self, step: Step) -> Any:
        dep = step.deployment
        assert dep is not None
        if dep.canonical:
            return await self._asend(dep, self._request(self.request(), dep, step), step)
        model = dep.model
        timeout = step.timeout
        if timeout is None:
            return await aprime(await model._acall_once(**self.kwargs))
        if model.supports_timeout:
            return await aprime(await model._acall_once(timeout=timeout, **self.kwargs))
        return await _within(self.clock, _aprimed_call(model, self.kwargs), timeout, dep)

    def continued(self, partial: str) -> MsgfluxCall:
        prefill = (self.kwargs.get("prefilling") or "") + partial
        kwargs = {**self.kwargs, "prefilling": prefill}
        return MsgfluxCall(kwargs, self.build, self.clock, self.state)

    @property
    def prefill(self) -> str:
        return self.kwargs.get("prefilling") or ""

    def content(self) -> Any:
        req = self._req
        if req is not None:
            return _input_of(req)
        return self.kwargs.get("messages", self.kwargs.get("data"))


class RawCall(Invoker):
    """``gateway.complete(request)``: the native lane where a deployment speaks the request's
    family, the canonical request (translated once) everywhere else."""

    def __init__(
        self,
        request: Request,
        clock: Clock,
        call: CallState,
        policy: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(clock, call)
        self.req = request
        self.stream = request.stream
        self.policy = policy
        native = request.native
        self._native = native.family if native is not None else None
        self._canonical: Request | None = None
        self._call_ctx: Translation | None = None
        self._error: UnsupportedFeatureError | None = None
        if native is None or native.family == CHAT:
            self._canonical = request

    def canonical(self) -> Request:
        """The canonical request (a family's translated once; its error kept for every
        deployment it concerns: each is then skipped, none is blamed)."""
        req = self._canonical
        if req is not None:
            return req
        if self._error is not None:
            raise self._error
        native = self.req.native
        assert native is not None
        ctx = self._call_ctx = Translation(self.policy)
        try:
            body = family(native.family).to_canonical(native.body, ctx, native.headers)
            req = from_openai(CHAT_KIND, body)
        except UnsupportedFeatureError as exc:
            self._error = exc
            raise
        except (TypeError, ValueError) as exc:
            self._error = UnsupportedFeatureError(
                f"take this {native.family} request: no other form of it could be made ({exc})"
            )
            raise self._error from None
        req.native = native
        self._canonical = req
        return req

    def _lane(self, dep: Deployment, step: Step) -> Request:
        """The attempt's request: the client's own on a native lane, else the canonical one
        with a translation policy of its own."""
        family_name = self._native
        if family_name is not None and dep.model.speaks(family_name):
            req = self._request(self.req, dep, step)
            pinned = req.native_for
            if pinned is not None and dep.name in pinned:
                req = req.replace(native=pinned[dep.name])
            return req
        req = self._request(self.canonical(), dep, step)
        if req.kind == CHAT_KIND:
            if req is self._canonical:
                req = req.replace()
            req.translation = Translation(self.policy)
        return req

    def _dropped(self, result: Any, req: Request) -> Any:
        ctx = req.translation
        if ctx is None:
            return result
        call = self._call_ctx
        dropped = ctx.dropped if call is None else call.merged(ctx)
        meta = getattr(result, "metadata", None)
        if dropped and isinstance(meta, dict):
            meta["dropped"] = dropped
        return result

    def call(self, step: Step) -> Any:
        dep = step.deployment
        assert dep is not None
        req = self._lane(dep, step)
        return self._dropped(self._send(dep, req, step), req)

    async def acall(self, step: Step) -> Any:
        dep = step.deployment
        assert dep is not None
        req = self._lane(dep, step)
        return self._dropped(await self._asend(dep, req, step), req)

    def continued(self, partial: str) -> RawCall:
        req = self.canonical()
        messages = list(req.body["messages"])
        prefill = (req.prefill or "") + partial
        if req.prefill is not None and messages and messages[-1].get("role") == "assistant":
            messages[-1] = {**messages[-1], "content": prefill}
        else:
            messages.append({"role": "assistant", "content": prefill})
        body = {**req.body, "messages": messages}
        continued = req.replace(body=body, prefill=prefill, native=None)
        return RawCall(continued, self.clock, self.state, self.policy)

    @property
    def prefill(self) -> str:
        return self.req.prefill or ""

    def content(self) -> Any:
        native = self.req.native
        if native is not None and native.family != CHAT:
            return native.body.get("messages", native.body.get("input"))
        return _input_of(self.req)


def _input_of(req: Request) -> Any:
    body = req.body
    return body.get("messages", body.get("input"))
