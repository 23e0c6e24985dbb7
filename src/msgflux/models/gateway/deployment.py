"""Deployment specs: validate the user's list of dicts once, at construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from msgflux.models.base import BaseModel
from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.schedule import Window, parse_timezone, parse_windows
from msgflux.models.gateway.state import Policy
from msgflux.models.gateway.stats import DeploymentStats
from msgflux.retry import RetryPolicy

__all__ = [
    "DEPLOYMENT_KEYS",
    "Deployment",
    "parse_deployments",
    "positive_int",
    "validate_timeout",
]

DEPLOYMENT_KEYS = (
    "model_name",
    "model",
    "description",
    "time_constraints",
    "timezone",
    "max_retries",
    "timeout",
    "breaker",
    "weight",
    "rpm",
    "tpm",
    "max_concurrency",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Deployment:
    """One validated entry of the gateway's list."""

    index: int
    name: str
    model: BaseModel
    provider: str
    model_id: str
    retry: RetryPolicy
    """The gateway's policy with this deployment's ``max_retries`` override applied."""
    windows: tuple[Window, ...] = ()
    timezone: ZoneInfo | None = None
    timeout: float | None = None
    """Per-attempt timeout (the deployment's override, else the gateway's)."""
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The user's dict without ``model``, for serialization."""
    policy: Policy = None  # type: ignore[assignment]
    """Identity, breaker settings and limits: what the state store applies."""
    weight: float = 1.0
    """Share of first picks under ``strategy="weighted"``."""
    stats: DeploymentStats = dataclasses.field(default_factory=DeploymentStats)
    """Live, process-local counters and latency (read by strategies and hedging)."""

    def __post_init__(self) -> None:
        if self.policy is None:
            object.__setattr__(self, "policy", Policy(self.name, self.provider, self.model_id))


def validate_timeout(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number of seconds > 0 or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"{field} must be a number of seconds > 0 or None, got {value!r}")
    return float(value)


def positive_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int >= 1 or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be an int >= 1 or None, got {value!r}")
    return value


def _weight(value: Any, field: str) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number >= 0, got {value!r}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")
    return float(value)


def _breaker(value: Any, default: Breaker | None, field: str) -> Breaker | None:
    if value is True:
        return default or Breaker()
    return Breaker.coerce(value, field)


def _model(name: str, value: Any) -> BaseModel:
    if isinstance(value, str):
        from msgflux.models.model import Model

        value = Model.chat_completion(value)
    if not isinstance(value, BaseModel):
        raise TypeError(
            f"model of deployment {name!r} must be a BaseModel instance (or a "
            f"'provider/model_id' string), got {type(value).__name__}"
        )
    for attr in ("model_type", "model_id", "provider"):
        if not getattr(value, attr, None):
            raise AttributeError(
                f"model of deployment {name!r} ({type(value).__name__}) has no valid "
                f"`{attr}` attribute"
            )
    return value


def parse_deployments(
    models: Any,
    *,
    default_timezone: ZoneInfo | None,
    default_retry: RetryPolicy,
    default_timeout: float | None,
    default_breaker: Breaker | None = None,
    stats_window: float = 300.0,
    extra_keys: Sequence[str] = (),
) -> list[Deployment]:
    """Validate the deployment list with the error types msgflux documents."""
    if not isinstance(models, list) or not models:
        raise TypeError("models must be a non-empty list of deployment dicts")
    if not all(isinstance(d, dict) for d in models):
        raise TypeError("models must be a list of dicts with 'model_name' and 'model' keys")
    accepted = DEPLOYMENT_KEYS + tuple(extra_keys)
    out: list[Deployment] = []
    seen: set[str] = set()
    for i, spec in enumerate(models):
        for key in ("model_name", "model"):
            if key not in spec:
                raise ValueError(f"deployment #{i} is missing required key {key!r}")
        unknown = [k for k in spec if k not in accepted]
        if unknown:
            raise ValueError(
                f"deployment #{i} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"accepted keys: {', '.join(accepted)}"
            )
        name = spec["model_name"]
        if not isinstance(name, str) or not name:
            raise TypeError(f"model_name of deployment #{i} must be a non-empty str, got {name!r}")
        if name in seen:
            raise ValueError(f"duplicate model_name {name!r}; model names must be unique")
        seen.add(name)
        model = _model(name, spec["model"])
        windows: tuple[Window, ...] = ()
        if spec.get("time_constraints") is not None:
            windows = parse_windows(spec["time_constraints"], name)
        tz = parse_timezone(spec.get("timezone"), f"timezone of deployment {name!r}")
        retry = default_retry
        if spec.get("max_retries") is not None:
            retry = dataclasses.replace(default_retry, max_retries=spec["max_retries"])
        timeout = validate_timeout(spec.get("timeout"), f"timeout of deployment {name!r}")
        raw = {k: v for k, v in spec.items() if k != "model"}
        if "breaker" in spec:
            breaker = _breaker(spec["breaker"], default_breaker, f"breaker of deployment {name!r}")
            raw["breaker"] = breaker.as_dict() if breaker is not None else False
        else:
            breaker = default_breaker
        provider, model_id = str(model.provider), str(model.model_id)
        policy = Policy(
            name,
            provider,
            model_id,
            breaker=breaker,
            rpm=positive_int(spec.get("rpm"), f"rpm of deployment {name!r}"),
            tpm=positive_int(spec.get("tpm"), f"tpm of deployment {name!r}"),
            max_concurrency=positive_int(
                spec.get("max_concurrency"), f"max_concurrency of deployment {name!r}"
            ),
            lease=max(600.0, timeout or default_timeout or 0.0),
        )
        out.append(
            Deployment(
                index=i,
                name=name,
                model=model,
                provider=provider,
                model_id=model_id,
                windows=windows,
                timezone=tz or default_timezone,
                retry=retry,
                timeout=default_timeout if timeout is None else timeout,
                raw=raw,
                policy=policy,
                weight=_weight(spec.get("weight"), f"weight of deployment {name!r}"),
                stats=DeploymentStats(window=stats_window),
            )
        )
    types = {d.model.model_type for d in out}
    if len(types) > 1:
        raise TypeError(
            f"all models must have the same model_type, got {', '.join(sorted(map(str, types)))}"
        )
    return out
