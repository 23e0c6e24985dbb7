"""``serialize()`` / ``from_serialized()``: msgflux's documented structure, never a secret.

``{"msgflux_type": "model_gateway", "state": {"models": [...], <options that differ from
their defaults>}}``. Each entry holds the model's own ``serialize()`` (a user's model may
return a custom dict), plus the deployment keys that were set (``time_constraints`` as
given, ``description`` stripped). ``fallback`` appears when it is False. Hooks, predicates,
clocks and ``state=`` are code or may hold passwords: they are left out (predicates with a
logged warning) and go in ``from_serialized(..., **overrides)``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.config import GatewayConfig
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.strategy import STRATEGIES, Strategy

__all__ = ["load_models", "serialize"]

logger = logging.getLogger("msgflux.gateway")

_NOT_SERIALIZED = ("retry", "wait", "stop")


def _type_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _load_type(name: str) -> type:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _option(key: str, value: Any, cfg: GatewayConfig) -> tuple[bool, Any]:
    """(keep it?, the serialized value) for one changed option."""
    if key in _NOT_SERIALIZED:
        return False, None
    if key in ("fallback_on", "raise_on"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(i, type) for i in items):
            logger.warning("%s holds callables, which cannot be serialized; left out", key)
            return False, None
        return True, [_type_name(i) for i in items]
    if key == "breaker":
        resolved = cfg.default_breaker
        if resolved is None:
            return True, False
        if resolved == Breaker():
            return False, None
        return True, resolved.as_dict()
    if key == "strategy":
        if isinstance(value, str):
            return True, value
        name = getattr(value, "name", None)
        if isinstance(value, Strategy) and name in STRATEGIES and name != "ordered":
            return True, name
        return False, None
    if key == "hedge":
        return True, None if cfg.hedge_policy is None else cfg.hedge_policy.as_dict()
    return True, value


def serialize(deployments: Sequence[Deployment], cfg: GatewayConfig) -> dict[str, Any]:
    models = []
    for d in deployments:
        entry: dict[str, Any] = {"model_name": d.name, "model": d.model.serialize()}
        entry.update((k, v) for k, v in d.raw.items() if k != "model_name" and v is not None)
        models.append(entry)
    state: dict[str, Any] = {"models": models}
    for key, value in cfg.changed().items():
        keep, serialized = _option(key, value, cfg)
        if keep and serialized is not None:
            state[key] = serialized
        elif keep and key == "hedge":
            continue
    return {"msgflux_type": "model_gateway", "state": state}


def load_models(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The deployment dicts (models rebuilt) and the options of a serialized gateway."""
    from msgflux.models import model as model_module

    if not isinstance(data, dict) or data.get("msgflux_type") != "model_gateway":
        given = data.get("msgflux_type") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"Incorrect msgflux type. Expected `model_gateway`, given `{given}` "
            "(pass the dict ModelGateway.serialize() returned)"
        )
    state = dict(data.get("state") or {})
    entries = state.pop("models", None)
    if not entries:
        raise ValueError("Serialized data does not contain models")
    models = []
    for entry in entries:
        spec = dict(entry)
        # Looked up on the class when called, so that tests can patch Model.from_serialized.
        spec["model"] = model_module.Model.from_serialized(**spec["model"])
        models.append(spec)
    for key in ("fallback_on", "raise_on"):
        if key in state:
            state[key] = tuple(_load_type(n) for n in state[key])
    return models, state
