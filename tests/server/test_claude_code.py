"""Claude Code itself (npm ``@anthropic-ai/claude-code``, installed by ``make node-deps`` into
``tests/clients``) against a real ``msgflux serve``, configured with nothing but
``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY``.

* native lane: a gateway whose deployment is an ``anthropic`` one gets Claude Code's request as
  it sent it: adaptive thinking, ``context_management``, ``output_config.effort``, a system turn
  in the middle of ``messages``, deferred tools and the ``anthropic-beta`` header included;
* translated lane: a gateway whose deployment is OpenAI-compatible answers the same request,
  the hints it has no form for dropped and named.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, start
from tests.upstream import Reply, Upstream

CLAUDE = Path(__file__).resolve().parent.parent / "clients" / "node_modules" / ".bin" / "claude"

pytestmark = pytest.mark.skipif(
    not CLAUDE.exists(),
    reason="Claude Code is not installed: run `make node-deps` (needs npm)",
)


class Env:
    def __init__(self, server: Served, an: Upstream, oa: Upstream) -> None:
        self.server = server
        self.an = an
        self.oa = oa


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    an, oa = Upstream().start(), Upstream().start()
    config = {
        "server": {"keys": [{"name": "claude-code", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "claude-native": {
                "models": [
                    {
                        "model_name": "anthropic",
                        "model": "anthropic/claude-x",
                        "base_url": an.url,
                        "api_key": "${UPSTREAM_KEY}",
                    }
                ]
            },
            "claude-via-gpt": {
                "models": [
                    {
                        "model_name": "gpt",
                        "model": "openai_compatible/gpt-x",
                        "base_url": oa.base_url,
                        "api_key": "${UPSTREAM_KEY}",
                    }
                ]
            },
        },
    }
    server = start(tmp_path_factory.mktemp("claude_code"), config)
    try:
        yield Env(server, an, oa)
    finally:
        server.stop()
        an.stop()
        oa.stop()


def claude(env: Env, gateway: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``claude -p "say hi" --model <gateway>`` with the server's URL and a client key, and
    nothing else in its environment but PATH and a fresh HOME."""
    home = tmp_path / "home"
    home.mkdir()
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": env.server.url,
        "ANTHROPIC_API_KEY": SERVER_KEY,
    }
    return subprocess.run(
        [str(CLAUDE), "-p", "say hi", "--model", gateway],
        env=environ,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_claude_code_through_the_native_lane(env: Env, tmp_path: Path) -> None:
    env.an.reset()
    env.an.set_default(Reply(text="Hi from Claude behind the gateway"))
    done = claude(env, "claude-native", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Hi from Claude behind the gateway" in done.stdout
    sent = [r for r in env.an.requests if r.route == "messages"]
    assert sent and all(r.invalid is None for r in sent), [r.invalid for r in sent]
    rec = sent[-1]
    body: Any = rec.json
    # Claude Code's own fields, untouched; only the model and the key are the deployment's.
    assert body["model"] == "claude-x"
    assert body["thinking"]["type"] == "adaptive"
    assert "context_management" in body and "effort" in body["output_config"]
    assert "system" in [m["role"] for m in body["messages"]]
    assert "claude-code" in rec.headers["anthropic-beta"]
    assert rec.headers["x-api-key"] == UPSTREAM_KEY
    assert SERVER_KEY not in str(rec.headers)
    assert env.oa.count() == 0


def test_claude_code_through_a_translated_lane(env: Env, tmp_path: Path) -> None:
    env.oa.reset()
    env.oa.set_default(Reply(text="Hi from GPT behind the gateway"))
    done = claude(env, "claude-via-gpt", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Hi from GPT behind the gateway" in done.stdout
    rec = [r for r in env.oa.requests if r.route == "chat"][-1]
    body: Any = rec.json
    assert body["model"] == "gpt-x" and body["stream"] is True
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and "user" in roles
    assert {t["type"] for t in body["tools"]} == {"function"}
    for hint in ("thinking", "context_management", "output_config", "metadata"):
        assert hint not in body
    log = env.server.log()
    assert '"gateway":"claude-via-gpt"' in log and '"status":200' in log
