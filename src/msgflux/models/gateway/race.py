"""The hedged race: run an attempt and, every ``delay`` seconds it stays unanswered, start the
next eligible deployment beside it; the first answer wins and the others are cancelled
(their connections closed, their admissions given back, nothing counted against them).

One coroutine serves both drivers (the sync one runs it on a private event-loop thread, so
losers can really be cancelled). The engine decides (hedge or not, who won, what each
attempt settles); this module only waits, through the injected clock, so a manual clock
makes a race deterministic and instant.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from msgflux.models.gateway.engine import CANCEL, RAISE, CallState, Step
from msgflux.models.gateway.invoke import STREAMS, Invoker
from msgflux.models.gateway.state import FIRST

if TYPE_CHECKING:
    from msgflux.models.gateway.drivers import Driver

__all__ = ["race"]

Flight = tuple[Step, float, float]
"""A running attempt: its step, and when it started (perf, wall)."""


async def race(driver: Driver, call: CallState, invoker: Invoker, step: Step, delay: float) -> Step:
    """Run ``step`` hedged every ``delay`` seconds. Returns the engine's RETURN step for the
    first answer (the others cancelled and settled), or the next step once all failed."""
    hedge = call._cfg.hedge
    assert hedge is not None
    clock = driver.clock
    flights: dict[asyncio.Future[Any], Flight] = {}

    def launch(s: Step) -> None:
        began, wall = driver.begin(s)
        flights[asyncio.ensure_future(invoker.acall(s))] = (s, began, wall)

    launch(step)
    hedges = hedge.max_hedges
    try:
        while True:
            done = await clock.wait_first(flights, delay if hedges > 0 else None)
            if not done:
                hedges -= 1
                extra = await _admit_hedge(driver, call)
                if extra is None:
                    hedges = 0
                else:
                    launch(extra)
                continue
            winner: tuple[asyncio.Future[Any], Flight] | None = None
            failures: list[tuple[asyncio.Future[Any], Flight]] = []
            for task in done:
                flight = flights.pop(task)
                if task.exception() is not None:
                    failures.append((task, flight))
                elif winner is None:
                    winner = (task, flight)
                else:
                    flights[task] = flight  # a tie: discarded like the losers
            nxt: Step | None = None
            for i, (task, (s, began, wall)) in enumerate(failures):
                exc = task.exception()
                assert exc is not None
                racing = winner is not None or bool(flights) or i < len(failures) - 1
                failed, settle = driver.failed(call, s, exc, began, wall, racing)
                await driver.asettle(settle)
                if failed is not None and (nxt is None or nxt.action is not RAISE):
                    nxt = failed  # a RAISE (raise_on) sticks
            if winner is not None:
                task, (s, began, wall) = winner
                if call.won(s).action is CANCEL:
                    await _cancel(driver, call, flights, began)
                answer = driver.answered(call, s, task.result(), began, wall)
                await driver.asettle(answer.settle)
                return answer
            if nxt is not None:
                await _cancel(driver, call, flights, None)
                return nxt
    except BaseException:
        await _cancel(driver, call, flights, None)
        raise


async def _admit_hedge(driver: Driver, call: CallState) -> Step | None:
    clock = driver.clock
    step = call.hedge(clock.perf())
    if step is None:
        return None
    if not driver.tracked:
        step.ticket = FIRST
        return step
    adm = await driver.aadmit(call, step, probe=False)
    mark = len(call.attempts)
    hedge = call.hedge_admitted(adm, step, clock.perf(), clock.time())
    driver.hooks.skips(call, mark, driver.by_name)
    return hedge


async def _cancel(
    driver: Driver,
    call: CallState,
    flights: dict[asyncio.Future[Any], Flight],
    winner_began: float | None,
) -> None:
    """Cancel the losers, wait until they are gone (connections closed), settle them.

    ``winner_began`` is when the winning attempt started (None: nobody won). It runs to the
    end even when the caller is cancelled meanwhile (then re-raises), so no admission is
    left unsettled.
    """
    if not flights:
        return
    for task in flights:
        task.cancel()
    interrupted = False
    while True:
        try:
            await asyncio.wait(flights)
            break
        except asyncio.CancelledError:
            interrupted = True
    clock = driver.clock
    now, wall = clock.perf(), clock.time()
    settles = []
    for task, (s, began, _) in flights.items():
        if not task.cancelled() and task.exception() is None:
            await _close(task.result())
        dep = s.deployment
        assert dep is not None
        # An attempt that began before the winner was slower than it: its elapsed time is a
        # lower bound of its latency, kept so the tail stays visible to "p95" hedging.
        slower = winner_began is not None and began < winner_began
        dep.stats.abandoned(now - began if slower else None, now)
        settles.append(call.cancelled(s, began, now, wall))
    flights.clear()
    for settle in settles:
        await driver.asettle(settle)
    if interrupted:
        raise asyncio.CancelledError


async def _close(result: Any) -> None:
    """Release what a discarded answer holds (a stream's connection)."""
    if isinstance(result, STREAMS):
        try:
            await result.aclose()
        except Exception:
            pass
