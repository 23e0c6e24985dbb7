"""The msgflux documentation's ModelGateway examples, verbatim, against the local upstream.

The providers are pointed at tests/upstream.py through OPENAI_BASE_URL / TOGETHER_BASE_URL
(the ``upstream_env`` fixture); the examples' code is unchanged.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest

import msgflux as mf
from msgflux.exceptions import ModelRouterError
from msgflux.models.gateway import ModelGateway
from tests.upstream import Reply, Upstream

EXAMPLE_1_1 = """
import msgflux as mf

mf.set_envs(OPENAI_API_KEY="sk-...", TOGETHER_API_KEY="<>")

gateway = mf.ModelGateway([
    {
        "model_name": "primary",
        "model": mf.Model.chat_completion("openai/gpt-4.1-nano"),
    },
    {
        "model_name": "fallback",
        "model": mf.Model.chat_completion("together/gpt-oss-120B"),
    },
])

response = gateway(messages="Who was Frank Rosenblatt?")
print(response.consume())
"""


def run_example(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(source, "docs-example", "exec"), namespace)
    return namespace


def test_example_1_1_query(upstream_env: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(EXAMPLE_1_1)
    assert capsys.readouterr().out == "Hello from gpt-4.1-nano\n"
    body = upstream_env.last.json
    assert body["model"] == "gpt-4.1-nano"
    assert body["messages"][-1] == {"role": "user", "content": "Who was Frank Rosenblatt?"}
    assert upstream_env.last.headers["authorization"] == "Bearer sk-..."


def test_example_1_1_falls_back_when_the_primary_fails(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=503), model="gpt-4.1-nano")
    gateway = mf.ModelGateway(
        [
            {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
            {"model_name": "fallback", "model": mf.Model.chat_completion("together/gpt-oss-120B")},
        ]
    )
    response = gateway(messages="Who was Frank Rosenblatt?")
    assert response.consume() == "Hello from gpt-oss-120B"
    assert response.metadata.gateway["fallbacks"] == ["primary"]
    assert response.metadata.usage["total_tokens"] > 0


EXAMPLE_1_2 = """
import msgflux as mf
from msgflux.models.base import BaseModel
from msgflux.models.types import ChatCompletionModel

# Simulate a model that fails
class BrokenModel(BaseModel, ChatCompletionModel):
    provider = "mock"
    model_id = "broken-model"

    def _initialize(self):
        pass

    def __call__(self, **kwargs):
        raise RuntimeError("Simulate failure")

broken = BrokenModel()
fallback = mf.Model.chat_completion("openai/gpt-4.1-nano")

gateway_broken = mf.ModelGateway([
    {"model_name": "broken", "model": broken},
    {"model_name": "fallback", "model": fallback},
])

response = gateway_broken(messages="Who were Warren McCulloch and Walter Pitts?")
print(response.consume())
"""


def test_example_1_2_simulated_failure(
    upstream_env: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = run_example(EXAMPLE_1_2)
    assert capsys.readouterr().out == "Hello from gpt-4.1-nano\n"
    assert namespace["response"].metadata.gateway["fallbacks"] == ["broken"]
    assert upstream_env.count("chat") == 1


EXAMPLE_1_3 = """
import random
from typing import Any

from msgflux.exceptions import ModelRouterError
from msgflux.models.base import BaseModel
from msgflux.models.gateway import ModelGateway
from msgflux.models.response import ModelResponse
from msgflux.models.types import ChatCompletionModel

class MockChatCompletion(BaseModel, ChatCompletionModel):

    provider = "mock"

    def __init__(
        self,
        model_id: str,
        fail_sometimes: bool = False,
        success_rate: float = 0.7
    ):
        self.model_id = model_id
        self._fail_sometimes = fail_sometimes
        self._success_rate = success_rate
        self._call_count = 0

    def _initialize(self):
        pass

    def __call__(self, **kwargs: Any):
        response = ModelResponse()
        response.set_response_type("text_generation")
        self._call_count += 1
        if self._fail_sometimes:
            if random.random() > self._success_rate:
                raise ValueError(f"Simulated failure for {self.model_id}")
        messages = kwargs.get("messages", "Default prompt")
        response_text = f"Response from {self.model_id} to messages: '{messages}' (Call #{self._call_count})"
        response.add(response_text)
        return response

model1 = MockChatCompletion(model_id="model-A", fail_sometimes=True, success_rate=0.3)
model2 = MockChatCompletion(model_id="model-B", fail_sometimes=True, success_rate=0.5)
model3 = MockChatCompletion(model_id="model-C") # Always works
model4 = MockChatCompletion(model_id="model-D") # Always works

gateway_mock = ModelGateway([
    {
        "model_name": "unstable-A",
        "model": model1,
    },
    {
        "model_name": "unstable-B",
        "model": model2,
        "time_constraints": [("23:00", "07:00")],
    },
    {
        "model_name": "reliable-C",
        "model": model3,
        "time_constraints": [("10:00", "11:00")],
    },
    {
        "model_name": "reliable-D",
        "model": model4,
    },
])

try:
    response = gateway_mock(messages="Hi")
    print("Result:", response.consume())
except ModelRouterError as e:
    print("Error:", e)
"""


def expected_1_3(now: datetime, draws: list[float]) -> str:
    """Which model answers example 1.3 at ``now`` given the random draws, worked out by hand."""
    minute = now.hour * 60 + now.minute
    night = minute >= 23 * 60 or minute <= 7 * 60
    morning = 10 * 60 <= minute <= 11 * 60
    order = [
        ("model-A", 0.3),
        ("model-B", 0.5) if not night else None,
        ("model-C", 1.0) if not morning else None,
        ("model-D", 1.0),
    ]
    it = iter(draws)
    for entry in order:
        if entry is None:
            continue
        model_id, rate = entry
        if rate == 1.0 or next(it) <= rate:
            return model_id
    raise AssertionError("unreachable: model-D always works")


def test_example_1_3_time_constraints_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    random.seed(1234)
    draws = [random.random() for _ in range(2)]
    random.seed(1234)
    now = datetime.now(timezone.utc)
    exec(compile(EXAMPLE_1_3, "docs-example-1.3", "exec"), {"__name__": "example_1_3"})
    out = capsys.readouterr().out
    if now.minute == datetime.now(timezone.utc).minute:  # skip the check across a minute edge
        answer = expected_1_3(now, draws)
        assert out == f"Result: Response from {answer} to messages: 'Hi' (Call #1)\n"


@pytest.mark.parametrize(
    ("hour", "seed"),
    [(3, 1), (3, 7), (10, 1), (10, 7), (15, 1), (15, 7), (23, 3)],
)
def test_example_1_3_with_fixed_clock_and_seed(hour: int, seed: int) -> None:
    now = datetime(2026, 11, 26, hour, 30, tzinfo=timezone.utc)
    source = EXAMPLE_1_3.replace(
        "gateway_mock = ModelGateway([", "gateway_mock = ModelGateway(clock=CLOCK, models=["
    )
    random.seed(seed)
    draws = [random.random() for _ in range(2)]
    random.seed(seed)
    printed: list[str] = []
    namespace: dict[str, Any] = {
        "__name__": "example_1_3",
        "CLOCK": lambda: now,
        "print": lambda *a: printed.append(" ".join(map(str, a))),
    }
    exec(compile(source, "docs-example-1.3", "exec"), namespace)
    answer = expected_1_3(now, draws)
    assert printed == [f"Result: Response from {answer} to messages: 'Hi' (Call #1)"]


def test_example_1_3_all_restricted_reports_time_constraints() -> None:
    source = (
        EXAMPLE_1_3.replace(
            '"model_name": "unstable-A",',
            '"model_name": "unstable-A", "time_constraints": [("00:00", "23:59")],',
        )
        .replace(
            '"model_name": "reliable-D",',
            '"model_name": "reliable-D", "time_constraints": [("00:00", "23:59")],',
        )
        .replace('("23:00", "07:00")', '("00:00", "23:59")')
        .replace('("10:00", "11:00")', '("00:00", "23:59")')
    )
    printed: list[str] = []
    exec(
        compile(source, "docs-example-1.3", "exec"),
        {"__name__": "x", "print": lambda *a: printed.append(" ".join(map(str, a)))},
    )
    assert printed == ["Error: No model available due to time constraints"]


def test_model_info_and_model_type_as_documented(upstream_env: Upstream) -> None:
    gateway = mf.ModelGateway(
        [
            {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
            {"model_name": "fallback", "model": mf.Model.chat_completion("together/mistral-7b")},
        ]
    )
    assert gateway.get_model_info() == [
        {"model_id": "gpt-4.1-nano", "provider": "openai"},
        {"model_id": "mistral-7b", "provider": "together"},
    ]
    assert gateway.model_type == "chat_completion"


def test_serialization_matches_the_documented_structure(upstream_env: Upstream) -> None:
    gateway = mf.ModelGateway(
        [
            {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
            {"model_name": "fallback", "model": mf.Model.chat_completion("together/mistral-7b")},
        ]
    )

    def model(provider: str, model_id: str) -> dict[str, Any]:
        return {
            "msgflux_type": "model",
            "provider": provider,
            "model_type": "chat_completion",
            "state": {
                "model_id": model_id,
                "sampling_params": {"organization": None, "project": None},
                "sampling_run_params": {
                    "max_tokens": 512,
                    "temperature": None,
                    "top_p": None,
                    "modalities": ["text"],
                    "audio": None,
                },
            },
        }

    assert gateway.serialize() == {
        "msgflux_type": "model_gateway",
        "state": {
            "models": [
                {"model_name": "primary", "model": model("openai", "gpt-4.1-nano")},
                {"model_name": "fallback", "model": model("together", "mistral-7b")},
            ]
        },
    }
    assert "sk-test" not in repr(gateway.serialize())


def test_from_serialized_restores_an_equivalent_working_gateway(upstream_env: Upstream) -> None:
    from msgflux.exceptions import BadRequestError

    gateway = mf.ModelGateway(
        [
            {
                "model_name": "primary",
                "model": mf.Model.chat_completion("openai/gpt-4.1-nano", temperature=0.2),
                "time_constraints": [("23:00", "07:00")],
                "max_retries": 1,
                "timeout": 5,
            },
            {"model_name": "fallback", "model": mf.Model.chat_completion("together/mistral-7b")},
        ],
        max_retries=2,
        deadline=30,
        raise_on=(BadRequestError,),
        timezone="Europe/Berlin",
    )
    data = gateway.serialize()
    assert data["state"]["max_retries"] == 2 and data["state"]["deadline"] == 30
    assert data["state"]["raise_on"] == ["msgflux.exceptions:BadRequestError"]
    restored = ModelGateway.from_serialized(
        data, clock=lambda: datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    )
    assert restored.serialize() == data
    assert restored.model_names == ["primary", "fallback"]
    response = restored(messages="hi")
    assert response.consume() == "Hello from gpt-4.1-nano"
    assert upstream_env.last.json["temperature"] == 0.2


def test_router_error_is_raised_when_the_upstream_is_down(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=500))
    gateway = mf.ModelGateway(
        [
            {"model_name": "primary", "model": mf.Model.chat_completion("openai/gpt-4.1-nano")},
            {"model_name": "fallback", "model": mf.Model.chat_completion("together/gpt-oss-120B")},
        ]
    )
    with pytest.raises(ModelRouterError, match="All 2 available models failed") as info:
        gateway(messages="hi")
    assert [a.exception.status_code for a in info.value.attempts] == [500, 500]  # type: ignore[union-attr]
    assert "sk-" not in str(info.value)
