"""msgflux-gateway: reliable calls to AI models.

>>> import msgflux as mf
>>> gateway = mf.ModelGateway([
...     {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
...     {"model_name": "fallback", "model": mf.Model.chat_completion("together/gpt-oss-120B")},
... ])
"""

import logging
from typing import Any

from msgflux._time import Clock, ManualClock
from msgflux.envs import set_envs
from msgflux.models.base import BaseModel
from msgflux.models.gateway import (
    Breaker,
    Hedge,
    LeastBusy,
    LeastLatency,
    MemoryStore,
    ModelGateway,
    Ordered,
    RoundRobin,
    StateStore,
    Strategy,
    Weighted,
)
from msgflux.models.model import Model
from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = [
    "BaseModel",
    "Breaker",
    "Clock",
    "Hedge",
    "LeastBusy",
    "LeastLatency",
    "ManualClock",
    "MemoryStore",
    "Model",
    "ModelGateway",
    "ModelResponse",
    "ModelStreamResponse",
    "Ordered",
    "RedisState",
    "RoundRobin",
    "StateStore",
    "Strategy",
    "Weighted",
    "set_envs",
]


def __getattr__(name: str) -> Any:
    # The Redis store is imported on first use, so `import msgflux` never imports redis.
    if name == "RedisState":
        from msgflux.models.gateway.redis import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A library must not configure logging; applications attach their own handlers.
logging.getLogger("msgflux").addHandler(logging.NullHandler())
