"""Shared fixtures. The scriptable OpenAI-compatible server lives in ``tests/upstream.py``.

* ``upstream``: a fresh :class:`~tests.upstream.Upstream` per test (starting one costs
  under a millisecond), so no request of one test can land in another's counts.
* ``upstream_env``: the same server, with ``OPENAI_*`` and ``TOGETHER_*`` (base URL and a
  fake key) pointing at it, which is how the msgflux docs' examples run offline.
* ``make_upstream``: more servers when one test needs several independent upstreams.
* ``closed_port``: a base URL where nothing listens (connection refused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from msgflux import _transport
from tests.redis_server import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.upstream import Upstream, closed_port_url

TEST_KEYS = {"OPENAI": "sk-test-openai-key", "TOGETHER": "sk-test-together-key"}
"""The fake keys ``upstream_env`` sets (tests assert they never leak into errors)."""


@pytest.fixture
def make_upstream() -> Iterator[Callable[[], Upstream]]:
    servers: list[Upstream] = []

    def make() -> Upstream:
        server = Upstream().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    _transport.close_pools()


@pytest.fixture
def upstream(make_upstream: Callable[[], Upstream]) -> Upstream:
    return make_upstream()


@pytest.fixture
def upstream_env(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    for prefix, key in TEST_KEYS.items():
        monkeypatch.setenv(f"{prefix}_BASE_URL", upstream.base_url)
        monkeypatch.setenv(f"{prefix}_API_KEY", key)
    return upstream


@pytest.fixture
def closed_port() -> str:
    return closed_port_url()
