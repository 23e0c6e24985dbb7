"""What a gateway tells the outside world as a call goes: hooks and log lines.

Hooks (``on_attempt``, ``on_fallback``, ``on_success``, ``on_failure``) receive a
:class:`GatewayEvent`; a hook that raises is logged and ignored. The ``msgflux.gateway``
logger writes one DEBUG line per attempt or skip and one WARNING per fallback after a real
failure (a fallback caused by a skip, such as a known-open breaker, is routine: DEBUG).
Every message goes through the secret scrubber.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from msgflux._secrets import scrub
from msgflux.exceptions import Attempt
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.engine import RAISE, CallState, Step

__all__ = ["GatewayEvent", "Hook", "Hooks", "as_hooks", "logger"]

logger = logging.getLogger("msgflux.gateway")

Hook = Callable[["GatewayEvent"], Any]


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


def as_hooks(value: Any, field: str) -> tuple[Any, ...]:
    """A hook option (None, a callable or a list of them) as a tuple, checked."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not callable(item):
            raise TypeError(f"{field} must be a callable or a list of callables, got {item!r}")
    return tuple(items)


class Hooks:
    """The four hook lists and the log lines that go with them."""

    __slots__ = ("on_attempt", "on_failure", "on_fallback", "on_success")

    def __init__(
        self,
        on_attempt: Hook | Sequence[Hook] | None = None,
        on_fallback: Hook | Sequence[Hook] | None = None,
        on_success: Hook | Sequence[Hook] | None = None,
        on_failure: Hook | Sequence[Hook] | None = None,
    ) -> None:
        self.on_attempt = as_hooks(on_attempt, "on_attempt")
        self.on_fallback = as_hooks(on_fallback, "on_fallback")
        self.on_success = as_hooks(on_success, "on_success")
        self.on_failure = as_hooks(on_failure, "on_failure")

    def attempt(self, dep: Deployment, number: int) -> None:
        if self.on_attempt:
            self._emit(self.on_attempt, "attempt", dep, number)

    def skips(self, call: CallState, mark: int, by_name: dict[str, Deployment]) -> None:
        """Count and log the skips the store reported since ``mark``."""
        for a in call.attempts[mark:]:
            if a.skipped is not None:
                by_name[a.model_name].stats.skipped(a.skipped)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("gateway skip: %s", a.describe())

    def moved(self, call: CallState, step: Step, quiet: bool = False) -> None:
        """Log and notify after a failure or skip, given the engine's next step.

        ``quiet``: the move comes from skips (a known-open breaker, a limit), which is routine
        and logged at DEBUG; a WARNING on every call that skips a dead deployment is noise.
        """
        last = call.attempts[-1]
        if not quiet and logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", last.describe())
        if step.action is RAISE or step.fallback_from is None:
            return
        dep = step.deployment
        assert dep is not None
        if quiet or last.skipped is not None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("skipping %r for %r (%s)", last.model_name, dep.name, last.skipped)
        else:
            logger.warning(
                "falling back from %r to %r after %s",
                last.model_name,
                dep.name,
                type(last.exception).__name__,
            )
        if self.on_fallback:
            self._emit(
                self.on_fallback,
                "fallback",
                step.fallback_from,
                last.attempt,
                exception=last.exception,
                next_model_name=dep.name,
                call=call,
            )

    def success(self, call: CallState, dep: Deployment, result: Any) -> None:
        last = call.winner or call.attempts[-1]
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("gateway attempt: %s", last.describe())
        if self.on_success:
            self._emit(
                self.on_success,
                "success",
                dep,
                last.attempt,
                duration=last.duration,
                call=call,
                response=result,
            )

    def failure(self, call: CallState, error: BaseException) -> None:
        if self.on_failure:
            self._emit(self.on_failure, "failure", None, call.total, exception=error, call=call)

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
            except Exception as exc:
                logger.error("gateway hook %r raised %s; ignoring it", hook, scrub(repr(exc)))
