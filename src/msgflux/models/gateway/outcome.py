"""How an attempt's outcome is judged, as pure functions the engine calls.

* whose fault a failure is (:func:`blames_request`): a request the upstream rejected as
  malformed (400/422) or one a provider cannot express is the *request's* fault, so it never
  trips a breaker nor marks a deployment degraded;
* whether it counts against the breaker (:func:`counted`);
* what the state store must record (:func:`settlement`), for every way an admitted call ends:
  it answered, failed, was cancelled, or its stream ended.
"""

from __future__ import annotations

from typing import Any

from msgflux.exceptions import BadRequestError, UnsupportedFeatureError
from msgflux.models.gateway.breaker import counts_as_failure
from msgflux.models.gateway.state import FAILURE, SUCCESS, Admission, Policy, Settlement

__all__ = ["blames_request", "counted", "settlement", "tokens_of"]


def blames_request(exc: BaseException) -> bool:
    """True when ``exc`` says the request was wrong, not that the deployment is unwell."""
    return isinstance(exc, (BadRequestError, UnsupportedFeatureError))


def counted(policy: Policy, exc: BaseException, raise_on: Any) -> bool:
    """True when ``exc`` counts against ``policy``'s breaker (provider-side trouble)."""
    cfg = policy.breaker
    if cfg is None or blames_request(exc):
        return False
    if raise_on is not None and raise_on(exc):
        return False
    return counts_as_failure(cfg, exc)


def tokens_of(result: Any) -> int:
    """Tokens the answer reported (``metadata.usage``), for ``tpm``."""
    meta = getattr(result, "metadata", None)
    usage = meta.get("usage") if isinstance(meta, dict) else None
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int):
            return total
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return (prompt if isinstance(prompt, int) else 0) + (
            completion if isinstance(completion, int) else 0
        )
    total = getattr(usage, "total_tokens", None)
    return total if isinstance(total, int) else 0


def settlement(
    policy: Policy,
    ticket: Admission | None,
    outcome: int,
    wall: float,
    duration: float,
    *,
    exc: BaseException | None = None,
    result: Any = None,
) -> Settlement | None:
    """What the store records for an admitted call (None: nothing was admitted or tracked).

    ``outcome`` is ``SUCCESS``, ``FAILURE`` (only when :func:`counted`; the caller decides) or
    ``IGNORED``; a failure passes its exception for Retry-After, a success its result for the
    tokens it reported.
    """
    if ticket is None or not policy.active:
        return None
    tokens = tokens_of(result) if outcome == SUCCESS and policy.tpm is not None else 0
    retry_after = 0.0
    if outcome == FAILURE and exc is not None:
        value = getattr(exc, "retry_after", None)
        if isinstance(value, (int, float)) and value > 0:
            retry_after = float(value)
    # Positional: keyword arguments cost ~0.1 us here, on every call.
    return Settlement(policy, ticket, outcome, wall, tokens, retry_after, duration)
