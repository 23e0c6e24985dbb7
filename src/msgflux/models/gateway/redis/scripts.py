"""The Lua that runs inside Redis, and the wire encoding of its calls.

``lua/common.lua``, ``lua/admit.lua`` and ``lua/settle.lua`` are a transcription of the pure
transitions in ``breaker.py``, ``limits.py`` and ``state.py``; the constants they share with
Python (state numbers, bucket counts, skip reasons) are filled in here from the Python
definitions, so the two copies cannot disagree on them. Each operation is one Lua call:
a function of a library loaded once (Redis >= 7, ``FCALL``), or the same code as a script
(``EVALSHA``) where functions are unavailable.

The per-call traffic is encoded by hand (RESP), once per deployment where it can be:
``_Compiled`` holds a policy's keys and config, ``_Shape`` a whole command minus the
operation's own arguments.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from collections.abc import Sequence
from importlib import resources
from typing import Any

from msgflux.models.gateway.breaker import (
    BUCKETS,
    CLOSED,
    HALF_OPEN,
    OPEN,
    REASON_HALF_OPEN,
    REASON_OPEN,
    Breaker,
)
from msgflux.models.gateway.limits import (
    MINUTE,
    REASON_CONCURRENCY,
    REASON_RPM,
    REASON_TPM,
    TPM_BUCKETS,
)
from msgflux.models.gateway.redis.pipe import bulk, header
from msgflux.models.gateway.state import Admission, DeploymentState, Policy, Skip

__all__ = [
    "ADMIT",
    "EMPTY_BULK",
    "INTS",
    "LIBRARY",
    "NCFG",
    "REASONS",
    "SETTLE",
    "Compiled",
    "Script",
    "Shape",
    "decode_state",
    "encode_float",
    "encode_int",
    "parse_admission",
]

REASONS = ("", REASON_OPEN, REASON_HALF_OPEN, REASON_CONCURRENCY, REASON_RPM, REASON_TPM)
"""Skip reasons by the number the Lua returns (0: none)."""
NCFG = 15
"""Config values per policy (see :func:`_config_args`)."""
EMPTY_SLOT = -(2**62)
"""An unused ring slot (a bucket number no time maps to)."""
KEY_MARGIN = 60.0
"""Extra seconds of key TTL beyond the longest time the state remembers anything."""

_CONSTANTS = {
    "CLOSED": CLOSED,
    "OPEN": OPEN,
    "HALF": HALF_OPEN,
    "BUCKETS": BUCKETS,
    "TPM_BUCKETS": TPM_BUCKETS,
    "MINUTE": repr(float(MINUTE)),
    "EMPTY": EMPTY_SLOT,
    "R_OPEN": REASONS.index(REASON_OPEN),
    "R_HALF": REASONS.index(REASON_HALF_OPEN),
    "R_CONC": REASONS.index(REASON_CONCURRENCY),
    "R_RPM": REASONS.index(REASON_RPM),
    "R_TPM": REASONS.index(REASON_TPM),
    "NCFG": NCFG,
}


def _lua(name: str) -> str:
    text = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")

    def fill(match: re.Match[str]) -> str:
        return str(_CONSTANTS[match.group(1)])

    return re.sub(r"\{([A-Z_]+)\}", fill, text)


COMMON = _lua("common")
_ADMIT_BODY = _lua("admit")
_SETTLE_BODY = _lua("settle")
_LIBRARY_BODY = COMMON + _ADMIT_BODY + _SETTLE_BODY
VERSION = hashlib.sha1(_LIBRARY_BODY.encode()).hexdigest()[:16]
LIBRARY = (
    f"#!lua name=msgflux_{VERSION}\n"
    + _LIBRARY_BODY
    + f"redis.register_function('msgflux_admit_{VERSION}', admit)\n"
    + f"redis.register_function('msgflux_settle_{VERSION}', settle)\n"
)
"""Redis >= 7: one function library, loaded once; helpers are built at load, not per call.
The name carries a hash of the code, so gateways of different versions never run each other's
logic against one Redis."""


class Script:
    """One operation, callable as a Redis function (``FCALL``) or a script (``EVALSHA``).

    Functions (Redis >= 7) skip rebuilding the helpers on every call; where FCALL is unknown
    or not allowed, the same code runs as a script, loaded the first time Redis says NOSCRIPT.
    """

    __slots__ = ("evalsha", "fcall", "source")

    def __init__(self, name: str, body: str) -> None:
        self.source = COMMON + body + f"return {name}(KEYS, ARGV)\n"
        sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.evalsha = bulk("EVALSHA") + bulk(sha)
        self.fcall = bulk("FCALL") + bulk(f"msgflux_{name}_{VERSION}")


INTS = [bulk(str(i)) for i in range(64)]
EMPTY_BULK = bulk("")


def encode_int(value: int) -> bytes:
    return INTS[value] if 0 <= value < 64 else bulk(str(value))


def encode_float(value: float) -> bytes:
    text = repr(float(value)).encode()
    return b"$%d\r\n%s\r\n" % (len(text), text)


ADMIT = Script("admit", _ADMIT_BODY)
SETTLE = Script("settle", _SETTLE_BODY)


class Shape:
    """The fixed part of one operation's command for given deployments, encoded once.

    ``FCALL name numkeys keys... m [n] ops... config...``: ``m`` operations of ``per_op``
    arguments each ride in one call and are applied in order, each atomically.
    """

    __slots__ = ("count", "middle", "per_op", "prefix", "suffix")

    def __init__(self, count: int, per_op: int, prefix: bytes, middle: bytes, suffix: bytes):
        self.count = count
        self.per_op = per_op
        self.prefix = prefix
        self.middle = middle
        self.suffix = suffix

    def frame(self, head: bytes, ops: Sequence[bytes]) -> bytes:
        m = len(ops)
        return b"".join(
            (
                header(self.count + self.per_op * m),
                head,
                self.prefix,
                encode_int(m),
                self.middle,
                *ops,
                self.suffix,
            )
        )


# -- configuration ------------------------------------------------------------------------------
def _num(value: float | int | None) -> str:
    return "-1" if value is None else repr(value)


def _ttl_ms(policy: Policy) -> int:
    """Longer than anything the state remembers, so expiry only forgets forgotten things."""
    longest = 60.0  # the rpm and tpm windows
    cfg = policy.breaker
    if cfg is not None:
        longest = max(longest, cfg.window, cfg.max_open_for, cfg.probe_timeout)
    if policy.max_concurrency is not None:
        longest = max(longest, policy.lease)
    return math.ceil((longest + KEY_MARGIN) * 1000)


def _config_args(policy: Policy) -> list[str]:
    cfg = policy.breaker or Breaker()
    return [
        "1" if policy.breaker is not None else "0",
        _num(cfg.failure_threshold),
        _num(cfg.failure_rate),
        _num(cfg.minimum_calls),
        _num(cfg.window),
        _num(cfg.open_for),
        _num(cfg.max_open_for),
        _num(cfg.half_open_probes),
        _num(cfg.slow_call_duration),
        _num(cfg.probe_timeout),
        _num(policy.rpm),
        _num(policy.tpm),
        _num(policy.max_concurrency),
        _num(policy.lease),
        str(_ttl_ms(policy)),
    ]


class Compiled:
    """What a policy sends with every call, encoded once: keys and config, in wire format."""

    __slots__ = ("admit_keys", "cfg", "keys", "needs_token", "settle")

    def __init__(self, prefix: str, policy: Policy) -> None:
        self.keys = (
            f"{prefix}s:{policy.key}",
            f"{prefix}r:{policy.key}",
            f"{prefix}l:{policy.key}",
        )
        self.admit_keys = b"".join(bulk(k) for k in self.keys)
        args = _config_args(policy)
        assert len(args) == NCFG
        self.cfg = b"".join(bulk(a) for a in args)
        self.needs_token = policy.rpm is not None or policy.max_concurrency is not None
        settle_keys = INTS[2] + bulk(self.keys[0]) + bulk(self.keys[2])
        self.settle = Shape(2 + 1 + 2 + 1 + NCFG, 7, settle_keys, b"", self.cfg)


def parse_admission(raw: list[Any], token: str) -> Admission:
    index, probe, leased = int(raw[0]), raw[1] == 1, raw[2] == 1
    skips = tuple(
        Skip(int(raw[k]), REASONS[int(raw[k + 1])], float(raw[k + 2]) if raw[k + 2] else None)
        for k in range(3, len(raw), 3)
    )
    return Admission(index, probe, skips, token if leased else "")


def decode_state(
    fields: dict[bytes, bytes],
    requests: list[tuple[bytes, float]],
    leases: list[tuple[bytes, float]],
) -> DeploymentState:
    """The stored data as the :class:`DeploymentState` the pure functions work on."""

    def num(name: bytes) -> float:
        value = fields.get(name)
        return float(value) if value is not None else 0.0

    def ring(name: bytes) -> list[int]:
        value = fields.get(name)
        return [int(v) for v in value.split(b",")] if value else []

    win_ids: list[int] = []
    win_calls: list[int] = []
    win_fails: list[int] = []
    if any(b"wi%d" % i in fields for i in range(BUCKETS)):
        for i in range(BUCKETS):
            bucket = fields.get(b"wi%d" % i)
            win_ids.append(int(bucket) if bucket is not None else EMPTY_SLOT)
            win_calls.append(int(fields.get(b"wc%d" % i, 0)))
            win_fails.append(int(fields.get(b"wf%d" % i, 0)))
    return DeploymentState(
        state=int(num(b"s")),
        consecutive=int(num(b"c")),
        open_until=num(b"ou"),
        open_for=num(b"of"),
        probes=int(num(b"p")),
        probe_until=num(b"pu"),
        win_ids=win_ids,
        win_calls=win_calls,
        win_fails=win_fails,
        requests=deque(score for _, score in requests),
        tok_ids=ring(b"ti"),
        tok_vals=ring(b"tv"),
        leases=[score for _, score in leases],
    )
