"""The LiteLLM importer's cloud providers: ``bedrock/`` and ``vertex_ai/`` deployments become
msgflux's ``bedrock/`` and ``vertex/`` ones with their credential parameters, and the result
builds (what ``msgflux config check`` does)."""

from __future__ import annotations

from typing import Any

from msgflux.server.config import parse_config
from msgflux.server.runtime import build_runtime
from msgflux.tools.litellm_import import import_litellm, parse_litellm, render

LITELLM = """
model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/converse/anthropic.claude-3-5-sonnet-20240620-v1:0
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY
      aws_session_token: os.environ/AWS_SESSION_TOKEN
      aws_region_name: eu-central-1
  - model_name: claude-profile
    litellm_params:
      model: bedrock/invoke/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc
      aws_profile_name: work
      aws_region_name: us-east-1
      aws_bedrock_runtime_endpoint: https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com
      aws_role_name: arn:aws:iam::123456789012:role/bedrock
  - model_name: titan
    litellm_params:
      model: bedrock/amazon.titan-embed-text-v2:0
      aws_region_name: us-east-1
  - model_name: gemini
    litellm_params:
      model: vertex_ai/gemini-2.5-flash
      vertex_project: my-project
      vertex_location: europe-west4
      vertex_credentials: os.environ/VERTEX_CREDENTIALS
  - model_name: claude-vertex
    litellm_params:
      model: vertex_ai/claude-sonnet-4@20250514
      vertex_project: my-project
      vertex_location: us-east5
"""
ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDLITELLM",
    "AWS_SECRET_ACCESS_KEY": "litellm-secret",
    "AWS_SESSION_TOKEN": "litellm-token",
    "VERTEX_CREDENTIALS": '{"type": "service_account"}',
}


def test_cloud_deployments_are_imported_with_their_credentials() -> None:
    out = import_litellm(parse_litellm(LITELLM))
    models: dict[str, Any] = {
        name: gateway["models"][0] for name, gateway in out.config["gateways"].items()
    }
    assert models["claude"] == {
        "model_name": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "aws_access_key_id": "${AWS_ACCESS_KEY_ID}",
        "aws_secret_access_key": "${AWS_SECRET_ACCESS_KEY}",
        "aws_session_token": "${AWS_SESSION_TOKEN}",
        "aws_region_name": "eu-central-1",
    }
    profile = models["claude-profile"]
    assert profile["model"] == (
        "bedrock/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    )
    assert profile["aws_profile"] == "work"
    assert profile["base_url"] == "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"
    assert out.config["gateways"]["titan"]["type"] == "text_embedder"
    assert models["gemini"] == {
        "model_name": "gemini-2.5-flash",
        "model": "vertex/gemini-2.5-flash",
        "vertex_project": "my-project",
        "vertex_location": "europe-west4",
        "vertex_credentials": "${VERTEX_CREDENTIALS}",
    }
    assert models["claude-vertex"]["model"] == "vertex/claude-sonnet-4@20250514"
    (role,) = [line for line in out.unmapped if "aws_role_name" in line]
    assert "aws_profile" in role  # what to do instead
    build_runtime(parse_config(render(out, "litellm.yaml"), ENV), shared_state=False).close()
