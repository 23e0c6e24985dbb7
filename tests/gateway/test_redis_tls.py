"""The Redis state store, key limiter and key store over TLS (``rediss://``), against a real
``redis-server`` that listens only on a TLS port with a certificate of a CA made here.

The URL trusts the test CA with ``?ssl_ca_certs=``; a client that does not trust it never
talks to that server (and the store serves from memory, as for any unreachable Redis).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgflux.models.gateway import Breaker, Policy, RedisState
from msgflux.models.gateway.state import FAILURE, Settlement
from msgflux.server.directory import Directory
from msgflux.server.key_admin import KeyAdmin
from msgflux.server.key_limits import KeyLimits
from msgflux.server.keystore import RedisKeyStore
from msgflux.server.limits import Ticket
from msgflux.server.limits_redis import RedisLimiter
from msgflux.server.vkeys import digest_of
from tests.redis_tls import TLSRedis, make_ca, running_tls_redis
from tests.store_contract import T0, StoreContract

pytestmark = pytest.mark.redis

_namespaces = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TLSRedis]:
    with running_tls_redis() as server:
        yield server


@pytest.fixture
def store(tls_redis: TLSRedis) -> Iterator[RedisState]:
    s = RedisState(tls_redis.url, namespace=f"tls-{os.getpid()}-{next(_namespaces)}", timeout=1)
    yield s
    s.close()


class TestTLSStoreContract(StoreContract):
    """Everything the memory store promises, the store keeps over TLS."""


def test_the_store_really_shares_over_tls(tls_redis: TLSRedis, store: RedisState) -> None:
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1, open_for=30))
    store.settle(Settlement(p, store.admit([p], T0), FAILURE, T0))
    other = RedisState(tls_redis.url, namespace=store.namespace)
    assert other.admit([p], T0 + 1).index == -1
    assert store.healthy and store.info()["url"].startswith("rediss://127.0.0.1:")
    other.close()


def test_a_server_the_ca_does_not_vouch_for_is_never_used(
    tls_redis: TLSRedis, tmp_path: Path
) -> None:
    stranger, _, _ = make_ca(tmp_path, "another CA")
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={stranger}"
    s = RedisState(url, namespace="untrusted", timeout=0.5)
    p = Policy("x", "mock", "m", breaker=Breaker())
    assert s.admit([p], T0).index == 0  # served from memory, never raised
    info = s.info()
    assert not info["healthy"] and "CERTIFICATE_VERIFY_FAILED" in str(info["last_error"])
    s.close()


async def test_key_limits_and_virtual_keys_over_tls(tls_redis: TLSRedis) -> None:
    limiter = RedisLimiter(tls_redis.url, timeout=1.0)
    results = [await limiter.admit("tls-key", KeyLimits(rpm=2)) for _ in range(3)]
    assert [isinstance(r, Ticket) for r in results] == [True, True, False]
    assert limiter.healthy()
    await limiter.aclose()

    store = RedisKeyStore(tls_redis.url)
    admin = KeyAdmin(Directory(store))
    _, secret = await admin.create("ops", {"name": "over-tls", "models": "*"}, ["chat"], ())
    other = Directory(RedisKeyStore(tls_redis.url))
    await other.refresh()
    assert other.lookup(digest_of(secret)) is not None
    await store.aclose()
    await other.store.aclose()
