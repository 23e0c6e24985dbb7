"""Claude Code itself through a real ``msgflux serve`` to Claude on AWS Bedrock (the fake
Bedrock of :mod:`tests.upstream_cloud`, which verifies every SigV4 signature), configured with
nothing but ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY``: the native lane, Claude's own API
on Bedrock (``InvokeModelWithResponseStream``) with Claude Code's body as it sent it, its betas
as Bedrock's ``anthropic_beta`` (those Bedrock refuses, Anthropic's own ``claude-code-...``,
dropped)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msgflux.formats.bedrock import BEDROCK_BETAS
from tests.server.harness import SERVER_KEY, Served, start
from tests.upstream import Reply, Upstream

CLAUDE = Path(__file__).resolve().parent.parent / "clients" / "node_modules" / ".bin" / "claude"
MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
KEY_ID = "AKIDCLAUDECODE01"
SECRET = "claude-code-bedrock-secret-key"

pytestmark = pytest.mark.skipif(
    not CLAUDE.exists(),
    reason="Claude Code is not installed: run `make node-deps` (needs npm)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Upstream]]:
    up = Upstream().start()
    up.cloud.add_aws_key(KEY_ID, SECRET)
    config = {
        "server": {"keys": [{"name": "claude-code", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "claude-bedrock": {
                "models": [
                    {
                        "model_name": "bedrock",
                        "model": f"bedrock/{MODEL}",
                        "aws_region_name": "us-east-1",
                        "aws_access_key_id": "${AWS_KEY_ID}",
                        "aws_secret_access_key": "${AWS_SECRET}",
                        "base_url": up.url,
                    }
                ]
            }
        },
    }
    env = {"AWS_KEY_ID": KEY_ID, "AWS_SECRET": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}
    server = start(tmp_path_factory.mktemp("claude_code_bedrock"), config, env=env)
    try:
        yield server, up
    finally:
        server.stop()
        up.stop()


def test_claude_code_through_the_native_lane_to_bedrock(
    served: tuple[Served, Upstream], tmp_path: Path
) -> None:
    server, up = served
    up.set_default(Reply(text="Hi from Claude on Bedrock behind the gateway"))
    home = tmp_path / "home"
    home.mkdir()
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": SERVER_KEY,
    }
    done = subprocess.run(
        [str(CLAUDE), "-p", "say hi", "--model", "claude-bedrock"],
        env=environ,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Hi from Claude on Bedrock behind the gateway" in done.stdout
    sent = [r for r in up.requests if r.route in ("invoke", "invoke_stream")]
    assert sent and all(r.invalid is None for r in up.requests), [r.invalid for r in up.requests]
    rec = sent[-1]
    assert rec.route == "invoke_stream" and rec.model == MODEL
    body: Any = rec.json
    # Claude Code's own fields, untouched; the model in the URL, the version and betas in the body
    assert "model" not in body and "stream" not in body
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    # its betas as Bedrock's anthropic_beta, those Bedrock refuses (claude-code-...) dropped
    # (the fake refuses any other with Bedrock's 400 "invalid beta flag")
    assert all(b in BEDROCK_BETAS for b in body.get("anthropic_beta", []))
    assert body["thinking"]["type"] == "adaptive"
    assert "context_management" in body and "effort" in body["output_config"]
    assert "system" in [m["role"] for m in body["messages"]]
    assert rec.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert SERVER_KEY not in str(rec.headers) and SECRET not in server.log()
