"""The gateway: fallback, retries, deadlines and time windows over several deployments."""

from msgflux.models.gateway.gateway import GatewayEvent, ModelGateway

__all__ = ["GatewayEvent", "ModelGateway"]
