"""A Redis Cluster over TLS (``rediss+cluster://``): 3 primaries and 3 replicas started here,
speaking only TLS to clients, between nodes and to replicas, with certificates of a CA made
for the test. The store contract runs on it; the key limiter and the virtual keys share it; a
client that does not trust the CA never uses it; a primary's failover is followed over TLS.
"""

from __future__ import annotations

import os
import time
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
from tests.redis_cluster import RedisCluster, running_cluster
from tests.redis_tls import make_ca
from tests.store_contract import T0, StoreContract

pytestmark = [pytest.mark.redis, pytest.mark.slow]

_namespaces = iter(range(1, 1_000_000))


def fresh_namespace() -> str:
    return f"tlscl-{os.getpid()}-{next(_namespaces)}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with running_cluster(tls=True) as c:
        yield c


@pytest.fixture
def store(cluster: RedisCluster) -> Iterator[RedisState]:
    s = RedisState(cluster.url, namespace=fresh_namespace(), timeout=1.0)
    yield s
    s.close()


class TestTLSClusterStoreContract(StoreContract):
    """Everything the memory store promises, the store keeps on a Redis Cluster over TLS."""


def test_the_store_shares_state_on_a_tls_cluster(cluster: RedisCluster) -> None:
    assert cluster.url.startswith("rediss+cluster://")
    ns = fresh_namespace()
    a, b = RedisState(cluster.url, namespace=ns), RedisState(cluster.url, namespace=ns)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1, open_for=30))
    a.settle(Settlement(p, a.admit([p], T0), FAILURE, T0))
    assert b.admit([p], T0 + 1).index == -1  # b sees the breaker a opened
    assert a.healthy and b.healthy and a.info()["url"].startswith("rediss+cluster://")
    a.close()
    b.close()


async def test_key_limits_and_virtual_keys_on_a_tls_cluster(cluster: RedisCluster) -> None:
    limiter = RedisLimiter(cluster.url, timeout=1.0)
    results = [await limiter.admit("tls-cluster-key", KeyLimits(rpm=2)) for _ in range(3)]
    assert [isinstance(r, Ticket) for r in results] == [True, True, False]
    assert limiter.healthy()
    await limiter.aclose()

    store = RedisKeyStore(cluster.url)
    admin = KeyAdmin(Directory(store))
    _, secret = await admin.create("ops", {"name": "on-tls-cluster", "models": "*"}, ["c"], ())
    other = Directory(RedisKeyStore(cluster.url))
    await other.refresh()
    assert other.lookup(digest_of(secret)) is not None
    await admin.revoke("ops", "on-tls-cluster", ())
    await other.refresh()
    assert other.lookup(digest_of(secret)) is None
    assert [e["action"] for e in await store.audit(2)] == ["revoke", "create"]
    await store.aclose()
    await other.store.aclose()


def test_a_tls_cluster_the_ca_does_not_vouch_for_is_never_used(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    stranger, _, _ = make_ca(tmp_path, "another CA")
    url = cluster.url.split("?")[0] + f"?ssl_ca_certs={stranger}"
    s = RedisState(url, namespace=fresh_namespace(), timeout=0.5)
    p = Policy("x", "mock", "m", breaker=Breaker())
    assert s.admit([p], T0).index == 0  # served from memory, never raised
    info = s.info()
    assert not info["healthy"] and "CERTIFICATE_VERIFY_FAILED" in str(info["last_error"])
    s.close()


def test_a_failover_is_followed_over_tls(cluster: RedisCluster) -> None:
    """Kill the primary of a namespace: calls go on from memory, then the store finds the
    promoted replica (over TLS) and shares state again."""
    ns = fresh_namespace()
    store = RedisState(cluster.url, namespace=ns, timeout=0.2, retry_interval=0.1)
    other = RedisState(cluster.url, namespace=ns, timeout=0.2, retry_interval=0.1)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1, open_for=60))
    assert store.admit([p], T0).index == 0 and store.healthy
    old = cluster.kill_primary_of(f"{{{ns}}}:")
    assert store.admit([p], T0).index == 0  # from memory meanwhile, never raised
    cluster.wait_promoted(f"{{{ns}}}:", old)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        store.settle(Settlement(p, store.admit([p], T0), FAILURE, T0))
        if store.healthy and other.admit([p], T0 + 1).index == -1:
            break
        time.sleep(0.1)
    assert store.healthy and other.healthy
    assert other.admit([p], T0 + 1).index == -1  # the breaker store opened, shared again
    store.close()
    other.close()
