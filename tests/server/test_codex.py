"""OpenAI's Codex CLI itself (npm ``@openai/codex``, installed by ``make node-deps`` into
``tests/clients``) against a real ``msgflux serve``, configured with nothing but a
``config.toml`` whose model provider names the server's URL and a client key's variable.

Codex speaks only the Responses API: a streamed request of about 40 KB with ``store: false``,
``include: ["reasoning.encrypted_content"]``, ``reasoning``, ``prompt_cache_key``,
``client_metadata`` and tools of types ``function``, ``namespace`` and ``web_search``.

* native lane: an ``openai`` deployment gets it as Codex sent it;
* translated lanes: a chat-only deployment and an Anthropic one answer the same request (the
  hosted ``web_search`` dropped and named, a namespace's functions flattened).
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

CODEX = Path(__file__).resolve().parent.parent / "clients" / "node_modules" / ".bin" / "codex"

pytestmark = pytest.mark.skipif(
    not CODEX.exists(), reason="Codex CLI is not installed: run `make node-deps` (needs npm)"
)


class Env:
    def __init__(self, server: Served, oa: Upstream, chat: Upstream, an: Upstream) -> None:
        self.server = server
        self.oa = oa
        self.chat = chat
        self.an = an


def _gateway(name: str, model: str, base_url: str) -> dict[str, Any]:
    dep = {"model_name": name, "model": model, "base_url": base_url, "api_key": "${UPSTREAM_KEY}"}
    return {"models": [dep]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    oa, chat, an = Upstream().start(), Upstream().start(), Upstream().start()
    config = {
        "server": {"keys": [{"name": "codex", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "codex-native": _gateway("openai", "openai/gpt-5-codex", oa.base_url),
            "codex-via-chat": _gateway("chat", "openai_compatible/qwen-coder", chat.base_url),
            "codex-via-claude": _gateway("claude", "anthropic/claude-x", an.url),
        },
    }
    server = start(tmp_path_factory.mktemp("codex"), config)
    try:
        yield Env(server, oa, chat, an)
    finally:
        server.stop()
        for up in (oa, chat, an):
            up.stop()


def codex(env: Env, gateway: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``codex exec --skip-git-repo-check "say hi"`` with a ``config.toml`` naming the server
    and nothing else in its environment but PATH, a fresh HOME and the client key."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{gateway}"\n'
        'model_provider = "msgflux"\n\n'
        "[model_providers.msgflux]\n"
        'name = "msgflux gateway"\n'
        f'base_url = "{env.server.base_url}"\n'
        'env_key = "MSGFLUX_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "MSGFLUX_API_KEY": SERVER_KEY,
    }
    return subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "say hi"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sent(up: Upstream, route: str) -> Any:
    recorded = [r for r in up.requests if r.route == route]
    assert recorded and all(r.invalid is None for r in recorded), [r.invalid for r in recorded]
    return recorded[-1]


def test_codex_through_the_native_lane(env: Env, tmp_path: Path) -> None:
    env.oa.reset()
    env.oa.set_default(Reply(text="Hi from GPT behind the gateway"))
    done = codex(env, "codex-native", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Hi from GPT behind the gateway" in done.stdout
    rec = _sent(env.oa, "responses")
    body: Any = rec.json
    # Codex's own request, untouched; only the model and the key are the deployment's.
    assert body["model"] == "gpt-5-codex" and body["stream"] is True
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert "prompt_cache_key" in body and "reasoning" in body
    assert {"function", "namespace", "web_search"} <= {t["type"] for t in body["tools"]}
    assert len(rec.body) > 20_000
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert SERVER_KEY not in str(rec.headers)


@pytest.mark.parametrize("gateway", ["codex-via-chat", "codex-via-claude"])
def test_codex_through_a_translated_lane(env: Env, tmp_path: Path, gateway: str) -> None:
    up = env.chat if gateway == "codex-via-chat" else env.an
    up.reset()
    up.set_default(Reply(text="Hi from a translated lane"))
    done = codex(env, gateway, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Hi from a translated lane" in done.stdout
    rec = _sent(up, "chat" if gateway == "codex-via-chat" else "messages")
    body: Any = rec.json
    assert body["stream"] is True
    if gateway == "codex-via-chat":
        roles = [m["role"] for m in body["messages"]]
        names = [t["function"]["name"] for t in body["tools"]]
        assert {t["type"] for t in body["tools"]} == {"function"}
    else:
        roles = [m["role"] for m in body["messages"]]
        names = [t["name"] for t in body["tools"]]
        assert body["system"]
    assert "user" in roles
    assert "exec_command" in names and "web_search" not in names  # hosted: dropped
    assert any("__" in name for name in names)  # a namespace's functions, flattened
    assert "include" not in body and "client_metadata" not in body
    log = env.server.log()
    assert f'"gateway":"{gateway}"' in log and '"status":200' in log
