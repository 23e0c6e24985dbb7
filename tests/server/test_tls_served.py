"""``msgflux serve`` with ``server.state: rediss://...?ssl_ca_certs=...``: a real redis-server
that speaks only TLS, with a certificate of a CA made for the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from msgflux.server.config import load_config
from msgflux.server.usage import read_usage
from tests.redis_tls import running_tls_redis
from tests.server.harness import SERVER_KEY, chat_gateway, server_env, start
from tests.upstream import Upstream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHAT: Any = [{"role": "user", "content": "hi"}]


def test_state_over_tls_serves_keys_limits_and_readiness(tmp_path: Path) -> None:
    with running_tls_redis() as redis, Upstream() as up:
        config = {
            "server": {
                "state": redis.url,
                "keys": [{"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True}],
            },
            "gateways": {"chat": chat_gateway(up.base_url)},
        }
        server = start(tmp_path, config, "--workers", "2")
        try:
            assert httpx.get(server.url + "/health/readiness").status_code == 200
            made = httpx.post(
                server.url + "/admin/keys",
                json={"name": "tls-key", "models": "*", "rpm": 2},
                headers={"Authorization": f"Bearer {SERVER_KEY}"},
            )
            assert made.status_code == 201, made.text
            secret = made.json()["secret"]
            statuses = []
            for _ in range(3):
                with httpx.Client() as client:  # any worker
                    statuses.append(
                        client.post(
                            server.base_url + "/chat/completions",
                            json={"model": "chat", "messages": CHAT},
                            headers={"Authorization": f"Bearer {secret}"},
                        ).status_code
                    )
            assert statuses == [200, 200, 429]
            rows = {
                r.name: r for r in read_usage(load_config(tmp_path / "config.yaml", server_env()))
            }
            assert rows["tls-key"].requests_last_minute == 2
        finally:
            server.stop()
        assert "CERTIFICATE" not in server.log()
