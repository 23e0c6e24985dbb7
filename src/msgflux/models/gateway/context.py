"""msgflux's context methods, routed like any call: ``count_context_tokens``,
``compact_context`` and ``warmup_system_prompt`` (and their async twins) try the deployments
in order with the same time windows, fallback, retries, breakers and limits as ``__call__``.

``compact_context`` always asks for the portable form (``native=False``): a gateway may fall
back across providers after compaction, and opaque provider state must never pin a later
request to one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgflux.models.gateway.engine import Step
from msgflux.models.gateway.invoke import Invoker

__all__ = ["MethodCall", "context_capacity"]


class MethodCall(Invoker):
    """One attempt is ``model.<name>(**kwargs)`` (async: ``await model.a<name>(**kwargs)``)."""

    def __init__(self, name: str, kwargs: dict[str, Any], clock: Any, call: Any) -> None:
        super().__init__(clock, call)
        self.name = name
        self.kwargs = kwargs

    def _method(self, step: Step, prefix: str = "") -> Any:
        dep = step.deployment
        assert dep is not None
        method = getattr(dep.model, prefix + self.name, None)
        if not callable(method):
            raise NotImplementedError(
                f"{type(dep.model).__name__} ({dep.provider}/{dep.model_id}) has no "
                f"{prefix + self.name}()"
            )
        return method

    def call(self, step: Step) -> Any:
        return self._method(step)(**self.kwargs)

    async def acall(self, step: Step) -> Any:
        return await self._method(step, "a")(**self.kwargs)


def context_capacity(models: Sequence[Any]) -> int | None:
    """The smallest context window among the models; None when any of them is unknown."""
    capacities = [getattr(model, "context_capacity", None) for model in models]
    known = [c for c in capacities if isinstance(c, int) and not isinstance(c, bool)]
    if not capacities or len(known) < len(capacities):
        return None
    return min(known)
