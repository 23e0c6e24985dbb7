"""Per-key limits in one process: config validation, budget periods, the memory limiter, and
the Redis limiter against a real redis-server (the same table of steps on both, compared).

Time is a :class:`~msgflux._time.ManualClock`: windows and budget periods move without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis

from msgflux._time import ManualClock
from msgflux.server.config import ConfigError, parse_config
from msgflux.server.key_limits import Budget, KeyLimits, period_bounds
from msgflux.server.limits import MemoryLimiter, Rejection, Ticket, utc
from msgflux.server.limits_redis import RedisLimiter, key_names
from tests.redis_server import RedisServer, free_port, running_redis

START = datetime(2026, 3, 31, 23, 56, 0, tzinfo=timezone.utc)  # a Tuesday, 4 min to midnight


def config_with(**key: Any) -> str:
    import yaml

    entry = {"name": "team", "key": "sk-team-key-0001", "models": "*", **key}
    return yaml.safe_dump(
        {
            "server": {"keys": [entry]},
            "gateways": {
                "chat": {"models": [{"model_name": "d0", "model": "openai_compatible/m0"}]}
            },
        }
    )


# -- config -------------------------------------------------------------------------------------
def test_key_limits_are_read_from_server_keys() -> None:
    config = parse_config(
        config_with(rpm=60, tpm=1000, max_concurrency=2, budget={"usd": 5, "period": "week"})
    )
    assert config.server.keys[0].limits == KeyLimits(60, 1000, 2, Budget(5.0, "week"))
    assert config.unshared_key_limits() == ["team"]


@pytest.mark.parametrize(
    ("key", "path", "words"),
    [
        ({"rpm": 0}, "server.keys[0].rpm", "between 1 and"),
        ({"tpm": "lots"}, "server.keys[0].tpm", "integer"),
        ({"max_concurrency": 1.5}, "server.keys[0].max_concurrency", "integer"),
        ({"budget": 10}, "server.keys[0].budget", "mapping"),
        ({"budget": {"usd": 10}}, "server.keys[0].budget.period", "required"),
        ({"budget": {"usd": -1, "period": "day"}}, "server.keys[0].budget.usd", "> 0"),
        ({"budget": {"usd": 1, "period": "dya"}}, "server.keys[0].budget.period", "'day'"),
        ({"budget": {"usd": 1, "period": "day", "cap": 2}}, "server.keys[0].budget.cap", "unknown"),
        ({"admin": "yes"}, "server.keys[0].admin", "true or false"),
        ({"rmp": 10}, "server.keys[0].rmp", "'rpm'"),
    ],
)
def test_a_bad_key_limit_is_an_error_naming_its_field(
    key: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_with(**key))
    assert info.value.path == path
    assert words in info.value.message


# -- budget periods -----------------------------------------------------------------------------
def epoch(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()  # type: ignore[misc]


def test_budget_periods_are_utc_days_iso_weeks_and_months() -> None:
    now = epoch(2026, 12, 31, 15, 30)  # a Thursday
    assert period_bounds("day", now) == (epoch(2026, 12, 31), epoch(2027, 1, 1))
    assert period_bounds("week", now) == (epoch(2026, 12, 28), epoch(2027, 1, 4))
    assert period_bounds("month", now) == (epoch(2026, 12, 1), epoch(2027, 1, 1))
    assert period_bounds("month", epoch(2026, 2, 10)) == (epoch(2026, 2, 1), epoch(2026, 3, 1))
    with pytest.raises(ValueError, match="day, week, month"):
        period_bounds("year", now)


# -- one table of steps, on memory and on Redis -------------------------------------------------
RPM2 = KeyLimits(rpm=2)
TPM = KeyLimits(tpm=100)
CONC = KeyLimits(max_concurrency=2)
BUDGET = KeyLimits(budget=Budget(1.0, "day"))
ALL = KeyLimits(rpm=5, tpm=1000, max_concurrency=1, budget=Budget(0.5, "week"))

STEPS: list[tuple[Any, ...]] = [
    # ("admit", key, limits) -> admitted or (reason, retry_at - now); ("settle", i, tokens, cost)
    # settles the i-th admitted ticket; ("advance", seconds)
    ("admit", "r", RPM2),
    ("advance", 10),
    ("admit", "r", RPM2),
    ("admit", "r", RPM2),  # rpm: the first slot frees 50 s from now
    ("advance", 50),
    ("admit", "r", RPM2),
    ("admit", "t", TPM),
    ("settle", 3, 60, None),
    ("admit", "t", TPM),
    ("settle", 4, 45, None),
    ("admit", "t", TPM),  # 105 tokens in the window: tpm
    ("advance", 60),  # the tokens' second left the window
    ("admit", "t", TPM),
    ("admit", "c", CONC),
    ("admit", "c", CONC),
    ("admit", "c", CONC),  # two in flight: max_concurrency
    ("settle", 6, 0, None),
    ("admit", "c", CONC),
    ("admit", "b", BUDGET),
    ("settle", 9, 0, 0.75),
    ("admit", "b", BUDGET),
    ("settle", 10, 0, 0.5),
    ("admit", "b", BUDGET),  # spent 1.25 of 1.00: budget, until midnight UTC (2 min)
    ("advance", 120),  # a new day (Wednesday, April 1st)
    ("admit", "b", BUDGET),
    ("admit", "a", ALL),
    ("admit", "a", ALL),  # one in flight
    ("settle", 12, 10, 0.6),
    ("admit", "a", ALL),  # the week's budget is spent
]


def outcome(result: Ticket | Rejection, now: float) -> Any:
    if isinstance(result, Ticket):
        return "admitted"
    return (result.reason, None if result.retry_at is None else round(result.retry_at - now, 6))


async def replay(limiter: Any, clock: ManualClock) -> list[Any]:
    tickets: list[Ticket] = []
    answers: list[Any] = []
    for step in STEPS:
        if step[0] == "advance":
            clock.advance(step[1])
        elif step[0] == "settle":
            tickets[step[1]].settle(step[2], step[3])
            if hasattr(limiter, "drain"):  # a shared store settles in the background
                await limiter.drain()
        else:
            result = await limiter.admit(step[1], step[2])
            if isinstance(result, Ticket):
                tickets.append(result)
            answers.append(outcome(result, clock.time()))
    return answers


EXPECTED = [
    "admitted",
    "admitted",
    ("rpm", 50.0),
    "admitted",
    "admitted",
    "admitted",
    ("tpm", 60.0),
    "admitted",
    "admitted",
    "admitted",
    ("max_concurrency", None),
    "admitted",
    "admitted",
    "admitted",
    ("budget", 120.0),
    "admitted",
    "admitted",
    ("max_concurrency", None),
    ("budget", 5 * 86400.0),  # the ISO week ends on Monday, April 6th
]


async def test_the_memory_limiter_counts_rpm_tpm_concurrency_and_budgets_exactly() -> None:
    clock = ManualClock(START)
    assert await replay(MemoryLimiter(clock), clock) == EXPECTED


@pytest.fixture(scope="module")
def redis_module() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.mark.redis
async def test_the_redis_limiter_answers_the_same_table_as_the_memory_limiter(
    redis_module: RedisServer,
) -> None:
    redis.Redis.from_url(redis_module.url).flushall()
    clock = ManualClock(START)
    limiter = RedisLimiter(redis_module.url, clock=clock)
    try:
        assert await replay(limiter, clock) == EXPECTED
        assert limiter.healthy()
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_a_budget_resets_when_its_period_ends(redis_module: RedisServer) -> None:
    redis.Redis.from_url(redis_module.url).flushall()
    clock = ManualClock(datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc))
    monthly = KeyLimits(budget=Budget(2.0, "month"))
    for limiter in (MemoryLimiter(clock), RedisLimiter(redis_module.url, clock=clock)):
        ticket = await limiter.admit("m", monthly)
        assert isinstance(ticket, Ticket)
        ticket.settle(0, 2.5)
        if isinstance(limiter, RedisLimiter):
            await limiter.drain()
        refused = await limiter.admit("m", monthly)
        assert isinstance(refused, Rejection) and refused.reason == "budget"
        error = refused.error()
        assert error.status == 429 and "resets at 2026-02-01T00:00:00Z" in error.message
        assert dict(error.headers)[b"retry-after"] == str(12 * 3600).encode()
        clock.advance(12 * 3600)  # February
        assert isinstance(await limiter.admit("m", monthly), Ticket)
        clock.advance(-12 * 3600)
        await limiter.aclose()


@pytest.mark.redis
async def test_concurrent_admissions_through_redis_take_exactly_the_rpm(
    redis_module: RedisServer,
) -> None:
    redis.Redis.from_url(redis_module.url).flushall()
    limiters = [RedisLimiter(redis_module.url) for _ in range(4)]  # four "processes"
    try:
        results = await asyncio.gather(
            *(limiters[i % 4].admit("busy", KeyLimits(rpm=10)) for i in range(40))
        )
        assert sum(isinstance(r, Ticket) for r in results) == 10
        client = redis.Redis.from_url(redis_module.url)
        assert client.zcard(key_names("busy")[0]) == 10
    finally:
        for limiter in limiters:
            await limiter.aclose()


@pytest.mark.redis
async def test_leases_are_released_in_redis_when_settled(redis_module: RedisServer) -> None:
    redis.Redis.from_url(redis_module.url).flushall()
    limiter = RedisLimiter(redis_module.url)
    try:
        tickets = [await limiter.admit("lease", CONC) for _ in range(3)]
        assert [isinstance(t, Ticket) for t in tickets] == [True, True, False]
        for t in tickets[:2]:
            assert isinstance(t, Ticket)
            t.settle(0, None)
            t.settle(0, None)  # twice: nothing more
        await limiter.drain()
        assert redis.Redis.from_url(redis_module.url).zcard(key_names("lease")[1]) == 0
        assert isinstance(await limiter.admit("lease", CONC), Ticket)
    finally:
        await limiter.aclose()


async def test_with_redis_down_admission_counts_in_process_memory() -> None:
    clock = ManualClock(START)
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", clock=clock)
    first = await limiter.admit("down", KeyLimits(rpm=1))
    assert isinstance(first, Ticket) and not limiter.healthy()
    second = await limiter.admit("down", KeyLimits(rpm=1))
    assert isinstance(second, Rejection) and second.reason == "rpm"
    clock.advance(2)  # past retry_interval: Redis is tried again (and still down)
    assert limiter.healthy()
    await limiter.aclose()


def test_rejections_are_429s_with_retry_after_and_an_openai_error_body() -> None:
    import orjson

    rpm = Rejection("team", "rpm", KeyLimits(rpm=10), 100.0, 112.2).error()
    assert rpm.status == 429 and dict(rpm.headers)[b"retry-after"] == b"13"
    body = orjson.loads(rpm.body())["error"]
    assert body["code"] == "rate_limit_exceeded" and "10 requests per minute" in body["message"]
    conc = Rejection("team", "max_concurrency", KeyLimits(max_concurrency=3), 100.0).error()
    assert dict(conc.headers)[b"retry-after"] == b"1" and "3 requests in flight" in conc.message
    assert utc(0) == "1970-01-01T00:00:00Z"


def test_the_production_docs_config_examples_are_valid_configs() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "production.md").read_text()
    examples = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "gateways:" in b]
    assert examples
    env = {"TEAM_A_KEY": "sk-team-a-0001", "OPS_KEY": "sk-ops-key-0001", "OPENAI_API_KEY": "sk-x"}
    for example in examples:
        config = parse_config(example, env)
        assert config.server.keys[0].limits.budget == Budget(100.0, "day")
        assert config.server.keys[1].admin
