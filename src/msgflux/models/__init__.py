"""Models: the base contract, type mixins, responses and the ``Model`` factory."""

from msgflux.models.base import BaseModel
from msgflux.models.model import Model
from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = ["BaseModel", "Model", "ModelResponse", "ModelStreamResponse"]
