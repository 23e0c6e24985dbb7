"""``gateway.stats()`` and ``gateway.health()``: plain, JSON-ready dicts, never a secret.

Counters and latency percentiles are this process's (:class:`~.stats.DeploymentStats`);
breaker and limit state come from the state store (shared across processes with a shared
store). A deployment is *down* while its breaker is open, *degraded* while half-open or when
its last call failed for a reason of its own (a rejected request does not count), else
*healthy*.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from msgflux._secrets import scrub_value
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.state import Policy, StateStore

__all__ = ["health", "stats"]

logger = logging.getLogger("msgflux.gateway")

_SNAPSHOT_RENAMES = {"consecutive_failures": "breaker_consecutive_failures"}
"""The store's count (shared, reset when the breaker opens) next to this process's own."""


def _snapshots(
    store: StateStore, policies: Sequence[Policy], tracked: bool, wall: float
) -> list[dict[str, Any]]:
    if tracked:
        try:
            return store.snapshot(policies, wall)
        except Exception:
            logger.exception("state store failed to report its state")
    return [
        {"breaker": "disabled" if p.breaker is None else "unknown", "reopens_at": None}
        for p in policies
    ]


def store_info(store: StateStore) -> dict[str, Any]:
    try:
        return dict(store.info())
    except Exception as exc:
        return {"backend": type(store).__name__, "healthy": False, "error": str(exc)}


def stats(
    deployments: Sequence[Deployment],
    store: StateStore,
    tracked: bool,
    now: float,
    wall: float,
    head: dict[str, Any],
) -> dict[str, Any]:
    """Per deployment: calls, successes, failures by error class, in flight, skips, latency
    and time-to-first-chunk percentiles, last error, breaker state and limit usage."""
    snaps = _snapshots(store, [d.policy for d in deployments], tracked, wall)
    out: dict[str, Any] = {}
    for dep, snap in zip(deployments, snaps, strict=True):
        policy = dep.policy
        out[dep.name] = {
            "provider": dep.provider,
            "model_id": dep.model_id,
            **dep.stats.as_dict(now),
            **{_SNAPSHOT_RENAMES.get(k, k): v for k, v in snap.items()},
            "limits": {
                "rpm": policy.rpm,
                "tpm": policy.tpm,
                "max_concurrency": policy.max_concurrency,
            },
            "weight": dep.weight,
        }
    result = {"at": wall, **head, "state": store_info(store), "deployments": out}
    return scrub_value(result)  # type: ignore[no-any-return]


def health(
    deployments: Sequence[Deployment], store: StateStore, tracked: bool, wall: float
) -> dict[str, Any]:
    """``{"status": "healthy" | "degraded" | "down", "deployments": {...}}`` (see above).

    The gateway is down when every deployment is, healthy when every one is (and the state
    store is reachable), else degraded.
    """
    snaps = _snapshots(store, [d.policy for d in deployments], tracked, wall)
    out: dict[str, Any] = {}
    statuses = []
    for dep, snap in zip(deployments, snaps, strict=True):
        breaker = snap.get("breaker")
        if breaker == "open":
            status = "down"
        elif breaker == "half_open" or dep.stats.consecutive_failures:
            status = "degraded"
        else:
            status = "healthy"
        statuses.append(status)
        entry: dict[str, Any] = {"status": status, "breaker": breaker}
        if snap.get("reopens_at") is not None:
            entry["reopens_at"] = snap["reopens_at"]
        last = dep.stats.last_error
        if last is not None:
            entry["last_error"] = {"type": last[0], "at": last[2]}
        out[dep.name] = entry
    info = store_info(store)
    if all(s == "down" for s in statuses):
        overall = "down"
    elif all(s == "healthy" for s in statuses) and info.get("healthy", True):
        overall = "healthy"
    else:
        overall = "degraded"
    return scrub_value({"status": overall, "at": wall, "state": info, "deployments": out})  # type: ignore[no-any-return]
