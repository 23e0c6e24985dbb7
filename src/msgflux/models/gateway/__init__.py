"""The gateway: fallback, retries, deadlines and time windows over several deployments, plus
health-aware routing (circuit breakers, live stats, rate limits, strategies, hedging).

``Model``, ``utc_now`` and ``datetime`` live here as in msgflux, where code (and msgflux's own
tests) patch them: ``msgflux.models.gateway.Model.chat_completion`` builds a deployment given
as a ``"provider/model_id"`` string, and a gateway built without ``clock=`` reads the time
through ``msgflux.models.gateway.utc_now`` (which reads ``msgflux.models.gateway.datetime``).
``clock=`` stays the documented way to control time.
"""

from datetime import datetime, timezone
from typing import Any

from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.cache import MemoryCache, RedisCache, ResponseCache
from msgflux.models.gateway.gateway import ModelGateway
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.gateway.hooks import GatewayEvent
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.gateway.state import (
    Admission,
    MemoryStore,
    Policy,
    Settlement,
    Skip,
    StateStore,
)
from msgflux.models.gateway.strategy import (
    LeastBusy,
    LeastLatency,
    Ordered,
    RoundRobin,
    Strategy,
    Weighted,
)
from msgflux.models.gateway.wrappers import Call, Wrapper
from msgflux.models.model import Model

__all__ = [
    "Admission",
    "Breaker",
    "Call",
    "GatewayEvent",
    "Hedge",
    "LeastBusy",
    "LeastLatency",
    "MemoryCache",
    "MemoryStore",
    "Model",
    "ModelGateway",
    "Ordered",
    "Policy",
    "RawAnswer",
    "RawStream",
    "RedisCache",
    "RedisState",
    "ResponseCache",
    "RoundRobin",
    "Settlement",
    "Skip",
    "StateStore",
    "Strategy",
    "Weighted",
    "Wrapper",
    "utc_now",
]


def utc_now() -> datetime:
    """The current aware UTC time (what a gateway without ``clock=`` reads)."""
    return datetime.now(tz=timezone.utc)


def __getattr__(name: str) -> Any:
    # The Redis store is imported on first use, so `import msgflux` never imports redis.
    if name == "RedisState":
        from msgflux.models.gateway.redis import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
