"""Deployment specs: validate the user's list of dicts once, at construction.

Messages keep msgflux's phrases verbatim (users match on them: ``"`models` must be a
non-empty list"``, ``"missing required key `model_name`"``, ``"Duplicate model name"``, ...)
and add what we know beyond them (the position, the accepted keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from msgflux.models.base import BaseModel
from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.config import (
    DAY,
    MAX_RETRIES,
    check_bytes,
    check_count,
    check_seconds,
)
from msgflux.models.gateway.schedule import Window, parse_timezone, parse_windows
from msgflux.models.gateway.state import Policy
from msgflux.models.gateway.stats import DeploymentStats
from msgflux.pricing import Price, parse_price, price_of
from msgflux.retry import RetryPolicy

__all__ = [
    "DEPLOYMENT_KEYS",
    "MODEL_ARGUMENTS",
    "Deployment",
    "model_arguments",
    "parse_deployments",
]

DEPLOYMENT_KEYS = (
    "model_name",
    "model",
    "description",
    "time_constraints",
    "timezone",
    "max_retries",
    "timeout",
    "first_chunk_timeout",
    "idle_timeout",
    "max_response_bytes",
    "max_event_bytes",
    "breaker",
    "weight",
    "rpm",
    "tpm",
    "max_concurrency",
    "price",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Deployment:
    """One validated deployment: its model, identity, schedule and per-deployment overrides."""

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
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    max_response_bytes: int | None = None
    max_event_bytes: int | None = None
    description: str | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The user's dict without ``model``, for serialization."""
    policy: Policy = None  # type: ignore[assignment]
    """Identity, breaker settings and limits: what the state store applies."""
    weight: float = 1.0
    """Share of first picks under ``strategy="weighted"``."""
    stats: DeploymentStats = dataclasses.field(default_factory=DeploymentStats)
    """Live, process-local counters and latency (read by strategies and hedging)."""
    price: Price | None = None
    """What its tokens cost: the ``price`` override, else genai-prices' (None: unknown)."""
    canonical: bool = dataclasses.field(init=False, default=False)
    """The model takes the canonical request natively (a built-in provider)."""

    def __post_init__(self) -> None:
        if self.policy is None:
            object.__setattr__(self, "policy", Policy(self.name, self.provider, self.model_id))
        object.__setattr__(self, "canonical", bool(getattr(self.model, "canonical", False)))


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


def _description(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"`description` for model `{name}` must be a non-empty string or None")
    return value.strip()


MODEL_ARGUMENTS = ("base_url", "api_key")
"""Keys of a deployment whose ``model`` is a ``"provider/model_id"`` string that go to the
model it builds (as in the server's YAML); ``api_base`` is accepted for ``base_url``."""


def model_arguments(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The model's own arguments in a deployment ``spec`` (``api_base`` read as ``base_url``)."""
    args = {k: spec[k] for k in MODEL_ARGUMENTS if k in spec}
    if "api_base" in spec:
        if "base_url" in spec:
            raise ValueError(f"{where} has both base_url and api_base (its alias): keep one")
        args["base_url"] = spec["api_base"]
    return args


def _model(
    name: str, value: Any, factory: Callable[..., Any], args: dict[str, Any] | None = None
) -> BaseModel:
    if isinstance(value, str):
        provider, sep, model_id = value.partition("/")
        if not sep or not provider or not model_id:
            raise TypeError(
                f"Model `{name}` does not inherit from `BaseModel` or use a valid "
                f"`provider/model-id` string (e.g. 'openai/gpt-4.1-nano'), got {value!r}"
            )
        value = factory(value, **(args or {}))
    elif args:
        raise TypeError(
            f"{', '.join(args)} of deployment {name!r} apply to a 'provider/model_id' string; "
            "a model object takes them when it is built"
        )
    if not isinstance(value, BaseModel):
        raise TypeError(
            f"Model `{name}` must inherit from `BaseModel` or be a `provider/model-id` string, "
            f"got {type(value).__name__}"
        )
    for attr in ("model_type", "model_id", "provider"):
        if not getattr(value, attr, None):
            raise AttributeError(
                f"Model `{name}` does not have a valid `{attr}` attribute ({type(value).__name__})"
            )
    return value


def parse_deployments(
    models: Any,
    *,
    default_timezone: ZoneInfo | None,
    default_retry: RetryPolicy,
    default_timeout: float | None,
    default_first_chunk_timeout: float | None = None,
    default_idle_timeout: float | None = None,
    default_max_response_bytes: int | None = None,
    default_max_event_bytes: int | None = None,
    default_breaker: Breaker | None = None,
    stats_window: float = 300.0,
    factory: Callable[[str], Any] | None = None,
) -> list[Deployment]:
    """Validate the deployment list with the error types msgflux documents.

    ``factory`` builds a model from a ``"provider/model_id"`` string (msgflux's
    ``Model.chat_completion``, looked up when called so that tests can patch it).
    """
    if not isinstance(models, list) or not models:
        raise TypeError(
            f"`models` must be a non-empty list of model deployment dicts, "
            f"got {type(models).__name__ if not isinstance(models, list) else 'an empty list'}"
        )
    if not all(isinstance(d, dict) for d in models):
        raise TypeError("`models` requires a list of dicts with `model_name` and `model` keys")
    if factory is None:
        from msgflux.models.model import Model

        factory = Model.chat_completion
    out: list[Deployment] = []
    seen: set[str] = set()
    for i, spec in enumerate(models):
        for key in ("model_name", "model"):
            if key not in spec:
                raise ValueError(f"Deployment at position {i} is missing required key `{key}`")
        accepted = (*DEPLOYMENT_KEYS, *MODEL_ARGUMENTS, "api_base")
        unknown = [k for k in spec if k not in accepted]
        if unknown:
            raise ValueError(
                f"Deployment at position {i} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"accepted keys: {', '.join(accepted)}"
            )
        name = spec["model_name"]
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"`model_name` at position {i} must be a non-empty string, got {name!r}"
            )
        if name in seen:
            raise ValueError(f"Duplicate model name found: `{name}`. Names must be unique")
        seen.add(name)
        model = _model(name, spec["model"], factory, model_arguments(spec, f"deployment {name!r}"))
        description = _description(spec.get("description"), name)
        windows: tuple[Window, ...] = ()
        if spec.get("time_constraints") is not None:
            windows = parse_windows(spec["time_constraints"], name)
        tz = parse_timezone(spec.get("timezone"), f"timezone of deployment {name!r}")
        retry = default_retry
        if spec.get("max_retries") is not None:
            retries = check_count(
                spec["max_retries"], f"max_retries of deployment {name!r}", low=0, high=MAX_RETRIES
            )
            retry = dataclasses.replace(default_retry, max_retries=retries or 0)
        seconds = {
            key: check_seconds(spec.get(key), f"{key} of deployment {name!r}", high=DAY)
            for key in ("timeout", "first_chunk_timeout", "idle_timeout")
        }
        raw = {k: v for k, v in spec.items() if k != "model"}
        if description is not None:
            raw["description"] = description
        if "breaker" in spec:
            breaker = _breaker(spec["breaker"], default_breaker, f"breaker of deployment {name!r}")
            raw["breaker"] = breaker.as_dict() if breaker is not None else False
        else:
            breaker = default_breaker
        provider, model_id = str(model.provider), str(model.model_id)
        price: Price | None = None
        if spec.get("price") is not None:
            override = parse_price(spec["price"], f"price of deployment {name!r}")
            raw["price"] = override.as_dict()
            price = override
        else:
            price = price_of(provider, model_id)
        timeout = default_timeout if seconds["timeout"] is None else seconds["timeout"]
        policy = Policy(
            name,
            provider,
            model_id,
            breaker=breaker,
            rpm=check_count(spec.get("rpm"), f"rpm of deployment {name!r}", low=1, high=10**9),
            tpm=check_count(spec.get("tpm"), f"tpm of deployment {name!r}", low=1, high=10**12),
            max_concurrency=check_count(
                spec.get("max_concurrency"),
                f"max_concurrency of deployment {name!r}",
                low=1,
                high=10**6,
            ),
            lease=max(600.0, timeout or 0.0),
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
                timeout=timeout,
                first_chunk_timeout=seconds["first_chunk_timeout"] or default_first_chunk_timeout,
                idle_timeout=seconds["idle_timeout"] or default_idle_timeout,
                max_response_bytes=check_bytes(
                    spec.get("max_response_bytes"), f"max_response_bytes of deployment {name!r}"
                )
                or default_max_response_bytes,
                max_event_bytes=check_bytes(
                    spec.get("max_event_bytes"), f"max_event_bytes of deployment {name!r}"
                )
                or default_max_event_bytes,
                description=description,
                raw=raw,
                policy=policy,
                weight=_weight(spec.get("weight"), f"weight of deployment {name!r}"),
                stats=DeploymentStats(window=stats_window),
                price=price,
            )
        )
    types = {d.model.model_type for d in out}
    if len(types) > 1:
        raise TypeError(
            "All models in `models` must be of the same `model_type`. Given: "
            f"`{', '.join(sorted(map(str, types)))}`"
        )
    return out
