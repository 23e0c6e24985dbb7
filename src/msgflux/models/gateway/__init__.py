"""The gateway: fallback, retries, deadlines and time windows over several deployments, plus
health-aware routing (circuit breakers, live stats, rate limits, strategies, hedging)."""

from typing import Any

from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.gateway import GatewayEvent, ModelGateway
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.gateway.state import Admission, MemoryStore, Policy, Skip, StateStore
from msgflux.models.gateway.strategy import (
    LeastBusy,
    LeastLatency,
    Ordered,
    RoundRobin,
    Strategy,
    Weighted,
)

__all__ = [
    "Admission",
    "Breaker",
    "GatewayEvent",
    "Hedge",
    "LeastBusy",
    "LeastLatency",
    "MemoryStore",
    "ModelGateway",
    "Ordered",
    "Policy",
    "RedisState",
    "RoundRobin",
    "Skip",
    "StateStore",
    "Strategy",
    "Weighted",
]


def __getattr__(name: str) -> Any:
    # The Redis store is imported on first use, so `import msgflux` never imports redis.
    if name == "RedisState":
        from msgflux.models.gateway.redis_state import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
