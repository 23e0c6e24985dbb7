"""``msgflux --version``, help that shows defaults, and ``msgflux config check`` reporting
every problem of a config in one run, each message naming where and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redis_server import free_port
from tests.test_cli import run_cli
from tests.upstream import Upstream


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_version_prints_the_package_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("msgflux-gateway 0.")


def test_serve_help_shows_every_default_and_no_broken_sentence() -> None:
    done = run_cli("serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for default in ("127.0.0.1", "4000", "0 picks a free one", "else 1"):
        assert default in text
    assert "listen on ." not in text and "Port ." not in text
    check = " ".join(run_cli("config", "--help").stdout.split())
    assert "and print the resolved plan" in check  # one paragraph, not the source's lines


def test_every_missing_environment_variable_in_one_run(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "gateways:\n  chat:\n    models:\n"
        "      - model_name: a\n        model: openai/x\n        api_key: ${MISSING_ONE}\n"
        "      - model_name: b\n        model: groq/y\n        api_key: ${MISSING_TWO}\n"
        "      - model_name: c\n        model: groq/z\n        api_key: ${SET_LATER:-fallback}\n",
    )
    done = run_cli("config", "check", str(config))
    assert done.returncode == 1
    assert "gateways.chat.models[0].api_key: environment variable MISSING_ONE" in done.stderr
    assert "gateways.chat.models[1].api_key: environment variable MISSING_TWO" in done.stderr
    assert "SET_LATER" not in done.stderr


def test_a_deployment_without_credentials_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "gateways:\n  chat:\n    models:\n"
        "      - {model_name: primary, model: openai/gpt-4.1-nano}\n",
    )
    done = run_cli("config", "check", str(config))
    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert "deployment primary (openai/gpt-4.1-nano) has no credentials" in text
    assert "OPENAI_API_KEY" in text and "set_envs" not in text
    ok = run_cli("config", "check", str(config), env={"OPENAI_API_KEY": "sk-from-env"})
    assert ok.returncode == 0, ok.stderr
    assert "sk-from-env" not in ok.stdout + ok.stderr


def test_an_unreachable_redis_is_a_warning_and_a_base_url_without_v1_a_hint(
    tmp_path: Path,
) -> None:
    config = write(
        tmp_path,
        f"server:\n  state: redis://127.0.0.1:{free_port()}/0\n"
        "gateways:\n  chat:\n    models:\n"
        "      - {model_name: a, model: openai_compatible/m, api_base: http://127.0.0.1:9}\n",
    )
    done = run_cli("config", "check", str(config))
    text = " ".join(done.stderr.split())
    assert done.returncode == 0, done.stderr
    assert "warning: server.state does not answer" in text
    assert "hint: gateways.chat.models[0].base_url" in text and "/v1" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gateways:\n  chat: [oops\n", 'in "{file}", line 2'),
        (
            "gateways:\n  chat:\n    timeout: ten\n    models:\n"
            "      - {model_name: a, model: openai_compatible/m, base_url: http://x/v1}\n",
            "gateways.chat.timeout: timeout must be a number",
        ),
        (
            "gateways:\n  chat:\n    models:\n      - {model_name: a, model: openai_compatible/m,"
            " base_url: http://x/v1, api_base: http://y/v1}\n",
            "api_base: an alias of base_url, which is set too",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path, text)
    done = run_cli("config", "check", str(config))
    assert done.returncode == 1
    assert expected.format(file=config) in " ".join(done.stderr.split())


def test_python_deployment_dicts_take_base_url_and_its_api_base_alias() -> None:
    from msgflux.models.gateway import ModelGateway

    gateway = ModelGateway(
        [
            {"model_name": "a", "model": "openai_compatible/m", "base_url": "http://h:1/v1"},
            {"model_name": "b", "model": "openai_compatible/m", "api_base": "http://h:2/v1"},
        ]
    )
    assert [m.base_url() for m in gateway.models] == ["http://h:1/v1", "http://h:2/v1"]
    from msgflux import Model

    with pytest.raises(TypeError, match="apply to a 'provider/model_id' string"):
        ModelGateway(
            [
                {
                    "model_name": "a",
                    "model": Model.chat_completion("openai/x"),
                    "base_url": "http://h",
                }
            ]
        )


def test_an_upstream_404_from_a_base_url_without_v1_says_so(upstream: Upstream) -> None:
    from msgflux import Model
    from msgflux.exceptions import NotFoundError

    model = Model.chat_completion("openai/x", base_url=upstream.url, api_key="sk-test-404")
    with pytest.raises(NotFoundError) as caught:
        model(messages="hi")
    assert "is base_url missing /v1?" in str(caught.value)
    assert "/chat/completions" in str(caught.value)
    right = Model.chat_completion("openai/x", base_url=upstream.base_url, api_key="sk-test-404")
    assert right(messages="hi").consume()
