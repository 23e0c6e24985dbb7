"""msgflux-gateway: reliable calls to AI models.

>>> import msgflux as mf
>>> gateway = mf.ModelGateway([
...     {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
...     {"model_name": "fallback", "model": mf.Model.chat_completion("together/gpt-oss-120B")},
... ])
"""

import logging

from msgflux._time import Clock, ManualClock
from msgflux.envs import set_envs
from msgflux.models.base import BaseModel
from msgflux.models.gateway import ModelGateway
from msgflux.models.model import Model
from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = [
    "BaseModel",
    "Clock",
    "ManualClock",
    "Model",
    "ModelGateway",
    "ModelResponse",
    "ModelStreamResponse",
    "set_envs",
]

# A library must not configure logging; applications attach their own handlers.
logging.getLogger("msgflux").addHandler(logging.NullHandler())
