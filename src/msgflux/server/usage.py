"""``msgflux keys usage``: each client key's spend and what is left of its budget, from Redis
(the config file's keys, then the virtual keys stored next to them, :mod:`.keystore`).

The per-key counters live in ``server.state`` (:mod:`.limits_redis`), so any machine that
reaches that Redis can read them, whether or not a server runs. Without ``server.state`` the
counters are in each server process's memory, which nothing outside the process can read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.models.gateway.redis.cluster import Connector
from msgflux.models.gateway.redis.url import parse_url
from msgflux.server.config import ServerConfig
from msgflux.server.key_limits import period_bounds
from msgflux.server.keystore import RedisKeyStore
from msgflux.server.limits import utc
from msgflux.server.limits_redis import key_names, spend_key
from msgflux.server.vkeys import VirtualKey

__all__ = ["KeyUsage", "UsageError", "read_usage", "render_usage"]


class UsageError(Exception):
    """Usage cannot be read (no shared state, or Redis unreachable); the message says why."""


@dataclasses.dataclass(frozen=True)
class KeyUsage:
    name: str
    budget_usd: float | None
    period: str | None
    spent_usd: float | None
    """Spend in the current period (None: the key has no budget, so spend is not kept)."""
    remaining_usd: float | None
    resets_at: str | None
    """When the current budget period ends (UTC)."""
    requests_last_minute: int | None
    """Requests admitted in the last 60 s (keys with an rpm limit)."""
    in_flight: int | None
    """Requests holding a concurrency lease (keys with max_concurrency)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_usage(config: ServerConfig, clock: Clock | None = None) -> list[KeyUsage]:
    """Every configured key's usage, then every active virtual key's (raises
    :class:`UsageError`)."""
    state = config.server.state
    if state is None:
        raise UsageError(
            "no shared state: server.state is not set, so each server process counts its "
            "keys' spend and limits in its own memory, which nothing outside it can read. Set "
            "server.state to a redis:// URL to share them (and read them here)."
        )
    import redis

    url = parse_url(state)
    now = (clock or Clock()).time()
    connector = Connector(url, 2.0)
    options = {"socket_timeout": 2, "socket_connect_timeout": 2}
    try:
        keys = [(k.name, k.limits) for k in config.server.keys]
        taken = {name for name, _ in keys}
        stored = connector.client(RedisKeyStore.RECORDS, **options).hvals(RedisKeyStore.RECORDS)
        for raw in sorted(stored):
            record = VirtualKey.from_json(orjson.loads(raw))
            if record.name not in taken and record.status(now) == "active":
                keys.append((record.name, record.limits))
        pipes: dict[int, Any] = {}
        plans = []
        for name, limits in keys:
            rpm_key, leases_key, _ = key_names(name)
            client = connector.client(rpm_key, **options)  # on a cluster: the key's node
            pipe = pipes.get(id(client))
            if pipe is None:
                pipe = pipes[id(client)] = client.pipeline(transaction=False)
            budget = limits.budget
            end = None
            if budget is not None:
                start, end = period_bounds(budget.period, now)
                pipe.get(spend_key(name, budget.period, start))
            if limits.rpm is not None:
                pipe.zcount(rpm_key, f"({now - 60.0!r}", "+inf")
            if limits.max_concurrency is not None:
                pipe.zcount(leases_key, f"({now!r}", "+inf")
            plans.append((name, limits, end, id(client)))
        replies = {k: iter(p.execute()) for k, p in pipes.items()}
    except redis.RedisError as exc:
        raise UsageError(
            f"cannot read {url.redacted}: {scrub(f'{type(exc).__name__}: {exc}')}"
        ) from None
    finally:
        connector.close()
    out = []
    for name, limits, end, pipe_id in plans:
        answers = replies[pipe_id]
        budget = limits.budget
        spent = remaining = None
        if budget is not None:
            raw = next(answers)
            spent = float(raw) if raw is not None else 0.0
            remaining = max(0.0, budget.usd - spent)
        requests = int(next(answers)) if limits.rpm is not None else None
        in_flight = int(next(answers)) if limits.max_concurrency is not None else None
        out.append(
            KeyUsage(
                name,
                budget.usd if budget is not None else None,
                budget.period if budget is not None else None,
                spent,
                remaining,
                utc(end) if end is not None else None,
                requests,
                in_flight,
            )
        )
    return out


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def render_usage(rows: list[KeyUsage]) -> str:
    """A plain-text table, one key per line."""
    header = ("key", "budget", "spent", "remaining", "resets at (UTC)", "req/min", "in flight")
    lines = [header]
    for r in rows:
        budget = f"{_usd(r.budget_usd)}/{r.period}" if r.budget_usd is not None else "none"
        lines.append(
            (
                r.name,
                budget,
                _usd(r.spent_usd),
                _usd(r.remaining_usd),
                r.resets_at or "-",
                "-" if r.requests_last_minute is None else str(r.requests_last_minute),
                "-" if r.in_flight is None else str(r.in_flight),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )
