"""Per-deployment rate limits and concurrency, as transitions over plain data.

* ``rpm``: at most this many admissions in any 60-second sliding window (an exact log of the
  admission times, never longer than ``rpm`` entries).
* ``tpm``: tokens the responses reported (``usage``) over the last 60 seconds, in 1-second
  buckets. Tokens are only known after a call, so the limit stops *new* calls once the
  window holds ``tpm`` tokens; it cannot stop the call that crosses it.
* ``max_concurrency``: calls admitted and not yet settled. Each holds a lease that expires
  after ``Policy.lease`` seconds, so a process that dies mid-call cannot hold a slot forever.

A deployment at a limit is *skipped* for this call (no request that would only earn a 429),
with the time it is expected to have room again when that is knowable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from msgflux.models.gateway.state import DeploymentState, Policy

__all__ = [
    "REASON_CONCURRENCY",
    "REASON_RPM",
    "REASON_TPM",
    "TPM_BUCKETS",
    "limits_check",
    "limits_release",
    "limits_take",
    "tokens_used",
]

MINUTE = 60.0
TPM_BUCKETS = 60
REASON_RPM = "rpm limit"
REASON_TPM = "tpm limit"
REASON_CONCURRENCY = "max_concurrency reached"


def _purge_requests(st: DeploymentState, now: float) -> None:
    requests = st.requests
    cutoff = now - MINUTE
    while requests and requests[0] <= cutoff:
        requests.popleft()


def _purge_leases(st: DeploymentState, now: float) -> None:
    if st.leases and min(st.leases) <= now:
        st.leases = [t for t in st.leases if t > now]


def tokens_used(st: DeploymentState, now: float) -> int:
    """Tokens reported in the last 60 seconds (the current second included)."""
    if not st.tok_ids:
        return 0
    current = int(now)
    return sum(st.tok_vals[i] for i in range(TPM_BUCKETS) if current - st.tok_ids[i] < TPM_BUCKETS)


def _tpm_retry_at(st: DeploymentState, policy: Policy, now: float) -> float:
    """When enough 1-second buckets age out for the window to drop below ``tpm``."""
    assert policy.tpm is not None
    current = int(now)
    live = sorted(
        (st.tok_ids[i], st.tok_vals[i])
        for i in range(TPM_BUCKETS)
        if current - st.tok_ids[i] < TPM_BUCKETS
    )
    total = sum(v for _, v in live)
    for second, value in live:
        total -= value
        if total < policy.tpm:
            return float(second + TPM_BUCKETS)
    return float(current + TPM_BUCKETS)


def limits_check(
    policy: Policy, st: DeploymentState, now: float
) -> tuple[str | None, float | None]:
    """Is there room for one more call? Returns (skip reason or None, retry_at)."""
    if policy.max_concurrency is not None:
        _purge_leases(st, now)
        if len(st.leases) >= policy.max_concurrency:
            return REASON_CONCURRENCY, None
    if policy.rpm is not None:
        _purge_requests(st, now)
        if len(st.requests) >= policy.rpm:
            return REASON_RPM, st.requests[0] + MINUTE
    if policy.tpm is not None and tokens_used(st, now) >= policy.tpm:
        return REASON_TPM, _tpm_retry_at(st, policy, now)
    return None, None


def limits_take(policy: Policy, st: DeploymentState, now: float) -> float:
    """Commit an admission that :func:`limits_check` allowed; returns its lease expiry (or 0)."""
    if policy.rpm is not None:
        st.requests.append(now)
    if policy.max_concurrency is not None:
        lease = now + policy.lease
        st.leases.append(lease)
        return lease
    return 0.0


def limits_release(
    policy: Policy, st: DeploymentState, lease: float, now: float, tokens: int
) -> None:
    """A call ended: free its concurrency lease and count the tokens it reported."""
    if lease and st.leases:
        try:
            st.leases.remove(lease)
        except ValueError:
            pass  # already expired and purged
    if tokens > 0 and policy.tpm is not None:
        if not st.tok_ids:
            st.tok_ids = [-(2**62)] * TPM_BUCKETS
            st.tok_vals = [0] * TPM_BUCKETS
        second = int(now)
        slot = second % TPM_BUCKETS
        if st.tok_ids[slot] != second:
            st.tok_ids[slot] = second
            st.tok_vals[slot] = 0
        st.tok_vals[slot] += tokens
