"""The translation policy (``msgflux.formats.policy``): hints are dropped and named, what would
change the answer makes the deployment ineligible, a gateway overrides either, and the table in
docs/providers.md is the one the code applies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from msgflux import Model, ModelGateway
from msgflux.exceptions import ModelRouterError, UnsupportedFeatureError
from msgflux.formats.policy import DROP, REFUSE, RULES, Translation, check_overrides
from tests.upstream import Upstream

DOCS = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def test_the_documented_table_is_the_one_applied() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| .* \| (drop|refuse) \|$", DOCS.read_text(), re.M)
    assert dict(rows) == {name: rule.default for name, rule in RULES.items()}


def test_a_hint_is_dropped_and_named_once() -> None:
    ctx = Translation()
    ctx.lose("seed", "seed", "Anthropic", "take seed")
    ctx.lose("seed", "seed", "Anthropic", "take seed")
    ctx.lose("unknown_fields", "x_vendor", "Anthropic", "take x_vendor")
    assert ctx.dropped == ["seed", "x_vendor"]


def test_what_would_change_the_answer_refuses() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"^Anthropic cannot return logprobs$"):
        Translation().lose("logprobs", "logprobs", "Anthropic", "return logprobs")


def test_overrides_turn_either_way() -> None:
    ctx = Translation({"logprobs": DROP, "seed": REFUSE})
    ctx.lose("logprobs", "logprobs", "Anthropic", "return logprobs")
    assert ctx.dropped == ["logprobs"]
    with pytest.raises(UnsupportedFeatureError):
        ctx.lose("seed", "seed", "Anthropic", "take seed")


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("drop", TypeError, "translation must be a dict"),
        ({"nope": "drop"}, ValueError, "unknown feature 'nope'; known: "),
        ({"seed": "ignore"}, ValueError, r"translation\['seed'\] must be 'drop' or 'refuse'"),
    ],
)
def test_overrides_are_checked(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_overrides(value)
    with pytest.raises(error, match=match):
        ModelGateway(
            [
                {
                    "model_name": "a",
                    "model": Model.chat_completion("openai_compatible/m", base_url="http://x"),
                }
            ],
            translation=value,
        )


def _claude(up: Upstream, **options: Any) -> ModelGateway:
    model = Model.chat_completion("anthropic/claude-x", base_url=up.url, api_key="sk-policy-001")
    return ModelGateway([{"model_name": "claude", "model": model}], **options)


def test_a_gateway_drops_hints_and_says_so(upstream: Upstream) -> None:
    answer = _claude(upstream).complete(
        {"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": 7}
    )
    assert answer.dropped == ["seed"]
    assert "seed" not in upstream.last.json


def test_a_refused_field_skips_the_deployment_and_blames_nobody(upstream: Upstream) -> None:
    gw = _claude(upstream)
    with pytest.raises(ModelRouterError) as info:
        gw.complete({"model": "x", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    [attempt] = info.value.attempts
    assert attempt.skipped == "unsupported: Anthropic cannot return n=2 choices (only n=1)"
    assert upstream.count() == 0
    assert gw.health()["deployments"]["claude"]["status"] == "healthy"


def test_a_gateway_override_drops_what_would_be_refused(upstream: Upstream) -> None:
    gw = _claude(upstream, translation={"n": "drop"})
    answer = gw.complete({"model": "x", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert answer.dropped == ["n"]
    assert upstream.count() == 1
