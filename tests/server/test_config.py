"""The config file: strict keys with suggestions, ${VAR} expansion, building every gateway type,
``msgflux config check`` and the startup refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from msgflux.exceptions import BadRequestError, RateLimitError
from msgflux.server.config import ConfigError, is_loopback, load_config, parse_config, plan
from msgflux.server.lifecycle import StartupError, check, resolve
from msgflux.server.runtime import build_model, build_runtime
from tests.server.harness import run_cli, write_config

MINIMAL = """
gateways:
  fake:                       # the name clients send as "model"
    models:                   # ModelGateway's deployment dicts, in fallback order
      - model_name: up
        model: openai_compatible/fake
        base_url: http://127.0.0.1:8000/v1
"""


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env or {})
    return info.value


def test_the_minimal_file_works_as_is() -> None:
    config = parse_config(MINIMAL, {})
    gateway = config.gateways["fake"]
    assert gateway.type == "chat_completion"
    assert gateway.deployments[0].params == {"base_url": "http://127.0.0.1:8000/v1"}
    runtime = build_runtime(config)
    try:
        route = runtime.routes["fake"]
        assert route.kind == "chat" and route.gateway.model_names == ["up"]
    finally:
        runtime.close()


def test_an_unknown_key_names_its_path_and_the_closest_valid_key() -> None:
    err = error_of(
        """
gateways:
  chat:
    models:
      - {model_name: a, model: openai_compatible/x, base_url: "http://h/v1"}
      - {model_name: b, model: openai_compatible/y, base_url: "http://h/v1", timout: 3}
"""
    )
    assert str(err) == "gateways.chat.models[1].timout: unknown key; did you mean 'timeout'?"
    assert "did you mean 'max_retries'" in str(
        error_of("gateways: {chat: {max_retrie: 1, models: [{model_name: a, model: openai/x}]}}")
    )
    assert str(error_of("gateway: {}")).startswith("gateway: unknown key; did you mean 'gateways'")
    assert "server.shutdown_grase: unknown key; did you mean 'shutdown_grace'" in str(
        error_of(MINIMAL + "server: {shutdown_grase: 5}")
    )
    nested = error_of(
        "gateways: {c: {breaker: {failure_treshold: 2}, "
        "models: [{model_name: a, model: openai/x}]}}"
    )
    assert "gateways.c.breaker.failure_treshold" in str(nested) and "failure_threshold" in str(
        nested
    )


def test_other_mistakes_name_where_they_are() -> None:
    assert "duplicate key 'models'" in str(
        error_of(
            "gateways:\n  c:\n    models: [{model_name: a, model: openai/x}]\n    models: []\n"
        )
    )
    assert "gateways.c.type: unknown type 'embedder'; did you mean 'text_embedder'" in str(
        error_of("gateways: {c: {type: embedder, models: [{model_name: a, model: openai/x}]}}")
    )
    assert "gateways.c.models[0].model: unknown provider 'nope'" in str(
        error_of("gateways: {c: {models: [{model_name: a, model: nope/x}]}}")
    )
    assert "gateways.c.models[0].model_name: required" in str(
        error_of("gateways: {c: {models: [{model: openai/x}]}}")
    )
    assert "duplicate model_name 'a'" in str(
        error_of(
            "gateways: {c: {models: [{model_name: a, model: openai/x}, "
            "{model_name: a, model: openai/y}]}}"
        )
    )
    assert "gateways.c.raise_on: unknown exception 'BadRequest'" in str(
        error_of(
            "gateways: {c: {raise_on: BadRequest, models: [{model_name: a, model: openai/x}]}}"
        )
    )
    assert (
        str(error_of(""))
        == "gateways: required: a mapping of gateway name -> {models: [...], options}"
    )


def test_environment_references_expand_with_defaults_and_types() -> None:
    text = """
server:
  port: ${PORT:-4100}
  shutdown_grace: ${GRACE}
gateways:
  chat:
    timeout: ${TIMEOUT:-2.5}
    models:
      - model_name: a
        model: openai_compatible/x
        base_url: http://${HOST}:8000/v1
        api_key: ${KEY}
        temperature: ${TEMP:-0.2}
"""
    config = parse_config(text, {"GRACE": "30", "HOST": "127.0.0.1", "KEY": "12345678"})
    assert config.server.port == 4100 and config.server.shutdown_grace == 30.0
    assert config.gateways["chat"].options["timeout"] == 2.5
    params = config.gateways["chat"].deployments[0].params
    assert params["base_url"] == "http://127.0.0.1:8000/v1"
    assert params["api_key"] == "12345678"  # text stays text, even when it looks like a number
    assert params["temperature"] == 0.2
    assert (
        parse_config("gateways: {c: {models: [{model_name: '$${X}', model: openai/x}]}}", {})
        .gateways["c"]
        .deployments[0]
        .model_name
        == "${X}"
    )


def test_a_missing_variable_fails_naming_it() -> None:
    err = error_of(
        "gateways:\n  c:\n    models:\n      - model_name: a\n        model: openai/x\n"
        "        api_key: ${OPENAI_KEY}\n"
    )
    assert err.path == "gateways.c.models[0].api_key"
    assert "environment variable OPENAI_KEY is not set" in str(err)


def test_gateway_options_and_deployment_keys_reach_the_gateway() -> None:
    text = """
gateways:
  chat:
    max_retries: 2
    deadline: 20
    mid_stream: continue
    strategy: least_latency
    hedge: {delay: 0.5}
    breaker: {failure_threshold: 3, open_for: 10}
    raise_on: [BadRequestError]
    fallback_on: RateLimitError
    timezone: Europe/Berlin
    models:
      - model_name: a
        model: openai_compatible/x
        base_url: http://127.0.0.1:1/v1
        rpm: 100
        max_concurrency: 4
        timeout: 5
        time_constraints: [["23:00", "07:00"]]
        temperature: 0.1
        max_tokens: 64
"""
    config = parse_config(text, {})
    options = config.gateways["chat"].options
    assert options["raise_on"] == [BadRequestError]
    assert options["fallback_on"] == [RateLimitError]
    dep = config.gateways["chat"].deployments[0]
    assert dict(dep.keys) == {
        "rpm": 100,
        "max_concurrency": 4,
        "timeout": 5,
        "time_constraints": [["23:00", "07:00"]],
    }
    assert dep.limited
    runtime = build_runtime(config)
    try:
        gateway = runtime.routes["chat"].gateway
        assert gateway.stats()["strategy"] == "least_latency"
        model = gateway.models[0]
        assert model.sampling_run_params["temperature"] == 0.1  # type: ignore[attr-defined]
        assert gateway.raw_time_constraints == {"a": [["23:00", "07:00"]]}
    finally:
        runtime.close()


def test_import_paths_give_code_options() -> None:
    text = (
        "gateways: {c: {on_fallback: 'logging:getLogger', retry: 'msgflux.exceptions:is_transient',"
        " models: [{model_name: a, model: openai/x}]}}"
    )
    import logging

    from msgflux.exceptions import is_transient

    options = parse_config(text, {}).gateways["c"].options
    assert options["on_fallback"] is logging.getLogger and options["retry"] is is_transient
    assert "cannot import 'nope_module'" in str(
        error_of(
            "gateways: {c: {retry: 'nope_module:x', models: [{model_name: a, model: openai/x}]}}"
        )
    )


@pytest.mark.parametrize(
    ("kind", "provider"),
    [
        ("text_embedder", "openai_compatible/e"),
        ("moderation", "openai_compatible/m"),
        ("text_to_speech", "openai_compatible/s"),
        ("speech_to_text", "openai_compatible/t"),
        ("text_to_image", "openai_compatible/i"),
    ],
)
def test_every_gateway_type_builds(kind: str, provider: str) -> None:
    text = (
        f"gateways: {{g: {{type: {kind}, models: [{{model_name: a, model: {provider}, "
        "base_url: 'http://127.0.0.1:1/v1'}]}}"
    )
    runtime = build_runtime(parse_config(text, {}))
    try:
        assert runtime.routes["g"].gateway.model_type == kind
    finally:
        runtime.close()


def test_a_model_parameter_of_another_type_is_an_unknown_key() -> None:
    err = error_of(
        "gateways: {g: {type: text_embedder, models: [{model_name: a, model: openai/e, "
        "temperature: 0.2}]}}"
    )
    assert "gateways.g.models[0].temperature: unknown key" in str(err)


def test_an_http_chat_model_adds_no_max_tokens_of_its_own() -> None:
    config = parse_config(MINIMAL, {})
    model: Any = build_model("chat_completion", config.gateways["fake"].deployments[0])
    assert "max_tokens" not in model._defaults


def test_client_keys() -> None:
    digest = hashlib.sha256(b"sk-hashed-key-123").hexdigest()
    text = (
        MINIMAL
        + f"""
server:
  keys:
    - name: alice
      key: ${{ALICE}}
      models: [fake]
    - name: ops
      key_sha256: {digest}
      models: "*"
"""
    )
    config = parse_config(text, {"ALICE": "sk-alice-key-1"})
    alice, ops = config.server.keys
    assert alice.digest == hashlib.sha256(b"sk-alice-key-1").digest()
    assert alice.models == frozenset({"fake"}) and ops.models is None
    assert "server.keys[0].models[0]: unknown gateway 'fak'; did you mean 'fake'" in str(
        error_of(MINIMAL + "server: {keys: [{name: a, key: sk-aaaaaaaaa, models: [fak]}]}")
    )
    assert "give exactly one of `key`" in str(
        error_of(MINIMAL + "server: {keys: [{name: a, models: '*'}]}")
    )
    assert 'the gateways this key may use, a list or "*"' in str(
        error_of(MINIMAL + "server: {keys: [{name: a, key: sk-aaaaaaaaa}]}")
    )


def test_the_plan_masks_every_secret() -> None:
    text = """
server:
  state: redis://:hunter2-password@127.0.0.1:6379/0
  keys:
    - {name: a, key: sk-client-secret-1, models: "*"}
gateways:
  chat:
    models:
      - {model_name: a, model: openai/x, api_key: sk-upstream-secret-1}
"""
    shown = repr(plan(parse_config(text, {})))
    for secret in ("hunter2-password", "sk-client-secret-1", "sk-upstream-secret-1"):
        assert secret not in shown
    assert "***" in shown


def test_config_check_prints_the_plan_and_fails_with_exit_1(tmp_path: Path) -> None:
    good = write_config(
        tmp_path, MINIMAL.replace("base_url", "api_key: ${UPSTREAM_KEY}\n        base_url")
    )
    result = run_cli("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert "model: openai_compatible/fake" in result.stdout
    assert "api_key: '***'" in result.stdout and "sk-upstream" not in result.stdout
    bad = write_config(
        tmp_path, MINIMAL.replace("base_url", "timout: 3\n        base_url"), "bad.yaml"
    )
    failed = run_cli("config", "check", str(bad))
    assert failed.returncode == 1
    assert "gateways.fake.models[0].timout: unknown key; did you mean 'timeout'?" in failed.stderr
    missing = run_cli("config", "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_without_keys_only_loopback_unless_no_auth() -> None:
    config = parse_config(MINIMAL, {})
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    check(config, resolve(config, "127.0.0.1", 0, 1), no_auth=False)
    with pytest.raises(StartupError, match="without client keys"):
        check(config, resolve(config, "0.0.0.0", 0, 1), no_auth=False)
    check(config, resolve(config, "0.0.0.0", 0, 1), no_auth=True)


def test_serve_refuses_a_non_loopback_host_without_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    result = run_cli("serve", "--config", str(path), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1
    assert "--no-auth" in result.stderr and "server.keys" in result.stderr


def test_n_workers_refuse_limits_that_are_not_shared(tmp_path: Path) -> None:
    limited = MINIMAL.replace("base_url", "rpm: 60\n        base_url")
    path = write_config(tmp_path, limited)
    result = run_cli("serve", "--config", str(path), "--port", "0", "--workers", "2")
    assert result.returncode == 1
    assert "2 times the limit" in result.stderr and "server.state" in result.stderr
    config = parse_config(limited + "server: {state: 'redis://127.0.0.1:1/0'}", {})
    check(config, resolve(config, None, 0, 2), no_auth=False)  # shared: allowed


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    assert load_config(path).source == str(path)
