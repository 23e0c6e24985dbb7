"""The two loops that carry out the engine's decisions: :meth:`Driver.run` (sync) and
:meth:`Driver.arun` (async). They are twins line by line; everything else they need (stats,
hooks, admission and settlement in the state store) is shared.

Every admission is settled exactly once, whatever happens: an attempt that answers, fails,
loses a race, is cancelled by the caller, or a stream that ends, breaks or is dropped. On the
async path the store operations are shielded from cancellation: an admission the store granted
while the caller was being cancelled is given back in the background, so a lease can never
leak (a Redis store would otherwise hold it for every process until it expired).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from msgflux._time import Clock
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.engine import RAISE, RETURN, CallState, Step
from msgflux.models.gateway.hooks import Hooks, logger
from msgflux.models.gateway.invoke import STREAMS, Invoker
from msgflux.models.gateway.outcome import blames_request
from msgflux.models.gateway.state import FIRST, IGNORED, Admission, Settlement, StateStore

__all__ = ["Driver"]


class Driver:
    """What both loops share; one per gateway."""

    def __init__(
        self,
        clock: Clock,
        store: StateStore,
        tracked: bool,
        hooks: Hooks,
        by_name: dict[str, Deployment],
        probe_when_all_open: bool,
        hedged: bool,
        loop: Callable[[], Any],
    ) -> None:
        self.clock = clock
        self.store = store
        self.tracked = tracked
        self.hooks = hooks
        self.by_name = by_name
        self.probe_when_all_open = probe_when_all_open
        self.hedged = hedged
        self.loop = loop
        """The private event-loop thread the sync driver runs hedged races on."""
        self._background: set[asyncio.Task[Any]] = set()
        # A store whose async operations never suspend (process memory) cannot be interrupted
        # half-way by a cancellation, so it needs no shield (which costs a task per call).
        self._shield = not getattr(store, "never_suspends", False)

    # -- shared by both loops ------------------------------------------------------------------
    def _probe(self, call: CallState) -> bool:
        """``when_all_open="probe"`` applies to a call's first admission only."""
        return self.probe_when_all_open and not call.attempts

    def admitted(self, call: CallState, step: Step, adm: Admission) -> Step:
        """Hand the store's answer to the engine; note the skips it reports."""
        if adm is FIRST:
            step.ticket = adm
            return step
        clock = self.clock
        mark = len(call.attempts)
        new = call.admitted(adm, step, clock.perf(), clock.time())
        if len(call.attempts) > mark:
            self.hooks.skips(call, mark, self.by_name)
            if new.action is not RAISE and new.fallback_from is not None:
                self.hooks.moved(call, new, quiet=True)
        return new

    def begin(self, step: Step) -> tuple[float, float]:
        """Count the attempt as started; returns its (perf, wall) start times."""
        dep = step.deployment
        assert dep is not None
        dep.stats.started(step.hedge)
        if self.hooks.on_attempt:
            self.hooks.attempt(dep, step.number)
        return self.clock.perf(), self.clock.time()

    def failed(
        self,
        call: CallState,
        step: Step,
        exc: BaseException,
        began: float,
        wall: float,
        racing: bool = False,
    ) -> tuple[Step | None, Settlement | None]:
        """An attempt raised: stats, the engine's decision, and what to settle."""
        dep = step.deployment
        assert dep is not None
        wall_now = self.clock.time()
        if blames_request(exc):
            dep.stats.rejected(exc, wall_now)
        else:
            dep.stats.failed(exc, wall_now)
        nxt, settle = call.failed(exc, began, self.clock.perf(), wall_now, step, racing)
        if nxt is not None:
            self.hooks.moved(call, nxt)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", call.attempts[-1].describe())
        return nxt, settle

    def answered(self, call: CallState, step: Step, result: Any, began: float, wall: float) -> Step:
        """An attempt answered (a stream: produced its first content)."""
        dep = step.deployment
        assert dep is not None
        now = self.clock.perf()
        stream = isinstance(result, STREAMS)
        if stream:
            dep.stats.first_chunk(now - began, now)
        else:
            dep.stats.answered(now - began, now, step.hedge)
        return call.answered(step, result, began, now, wall, stream)

    def abandoned(self, call: CallState, step: Step, began: float) -> Settlement | None:
        """The caller went away mid-attempt (cancelled, interrupted)."""
        dep = step.deployment
        assert dep is not None
        dep.stats.abandoned()
        return call.abandoned(step, self.clock.time(), self.clock.perf() - began)

    def raised(self, call: CallState, step: Step) -> BaseException:
        error = step.error
        assert error is not None
        self.hooks.failure(call, error)
        return error

    # -- the store -----------------------------------------------------------------------------
    def settle(self, s: Settlement | None) -> None:
        """Hand a settlement to the store (None: nothing to settle); never raises."""
        if s is None:
            return
        try:
            self.store.settle(s)
        except Exception:
            logger.exception("state store failed to settle a call to %r", s.policy.name)

    async def asettle(self, s: Settlement | None) -> None:
        """Async form of :meth:`settle`, shielded: a cancelled caller still settles."""
        if s is None:
            return
        if not self._shield:
            await self._asettle(s)
            return
        task = asyncio.ensure_future(self._asettle(s))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self._keep(task)
            raise

    async def _asettle(self, s: Settlement) -> None:
        try:
            await self.store.asettle(s)
        except Exception:
            logger.exception("state store failed to settle a call to %r", s.policy.name)

    def settle_soon(self, s: Settlement | None) -> None:
        """Settle from synchronous code running on the event loop (a stream's end): at once
        with a store that never suspends, else as a task kept until it is done."""
        if s is None:
            return
        if not self._shield:
            self.settle(s)
            return
        self._keep(asyncio.ensure_future(self._asettle(s)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def admit(self, call: CallState, step: Step) -> Step:
        adm = self.store.admit(call.candidates(step), self.clock.time(), self._probe(call))
        return self.admitted(call, step, adm)

    async def aadmit(self, call: CallState, step: Step, probe: bool | None = None) -> Admission:
        """The store's admission for ``step``, shielded from cancellation: if the caller is
        cancelled while the store admits, the admission is given back when it arrives."""
        candidates = call.candidates(step)
        probing = self._probe(call) if probe is None else probe
        if not self._shield:
            return await self.store.aadmit(candidates, self.clock.time(), probing)
        task = asyncio.ensure_future(self.store.aadmit(candidates, self.clock.time(), probing))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._release(t, candidates))
            raise

    def _release(self, task: asyncio.Future[Admission], candidates: Any) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        adm = task.result()
        if adm.index < 0:
            return
        s = Settlement(candidates[adm.index], adm, IGNORED, self.clock.time())
        self._keep(asyncio.ensure_future(self._asettle(s)))

    # -- the loops -----------------------------------------------------------------------------
    def run(self, call: CallState, invoker: Invoker, step: Step) -> Any:
        """Carry out the engine's steps until it returns or raises (sync)."""
        clock = self.clock
        tracked = self.tracked
        while True:
            if step.action is RAISE:
                raise self.raised(call, step)
            if step.delay:
                clock.sleep(step.delay)
            if tracked and step.ticket is None:
                step = self.admit(call, step)
                if step.action is RAISE:
                    continue
            if self.hedged:
                delay = call.hedge_delay(step, invoker.stream, clock.perf())
                if delay is not None:
                    from msgflux.models.gateway.race import race

                    thread = self.loop()
                    step = thread.run(race(self, call, invoker, step, delay))
                    if step.action is RETURN:
                        return thread.bridge(step.result)
                    continue
            began, wall = self.begin(step)
            try:
                result = invoker.call(step)
            except Exception as exc:
                nxt, settle = self.failed(call, step, exc, began, wall)
                self.settle(settle)
                assert nxt is not None
                step = nxt
                continue
            except BaseException:
                self.settle(self.abandoned(call, step, began))
                raise
            done = self.answered(call, step, result, began, wall)
            self.settle(done.settle)
            return done.result

    async def arun(self, call: CallState, invoker: Invoker, step: Step) -> Any:
        """Carry out the engine's steps until it returns or raises (async)."""
        clock = self.clock
        tracked = self.tracked
        while True:
            if step.action is RAISE:
                raise self.raised(call, step)
            if step.delay:
                await clock.asleep(step.delay)
            if tracked and step.ticket is None:
                step = self.admitted(call, step, await self.aadmit(call, step))
                if step.action is RAISE:
                    continue
            if self.hedged:
                delay = call.hedge_delay(step, invoker.stream, clock.perf())
                if delay is not None:
                    from msgflux.models.gateway.race import race

                    step = await race(self, call, invoker, step, delay)
                    if step.action is RETURN:
                        return step.result
                    continue
            began, wall = self.begin(step)
            try:
                result = await invoker.acall(step)
            except Exception as exc:
                nxt, settle = self.failed(call, step, exc, began, wall)
                await self.asettle(settle)
                assert nxt is not None
                step = nxt
                continue
            except BaseException:
                await self.asettle(self.abandoned(call, step, began))
                raise
            done = self.answered(call, step, result, began, wall)
            await self.asettle(done.settle)
            return done.result
