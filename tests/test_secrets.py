"""The secret mask stays cheap however many secrets a long-running process sees: registering
costs no regex compile, refreshed tokens replace the old ones, and the server's own virtual
keys are masked by their form."""

from __future__ import annotations

import secrets
import time

from msgflux import _secrets
from msgflux._secrets import MASK, forget, register, renew, scrub


def test_registering_many_secrets_compiles_nothing_until_a_scrub_needs_it() -> None:
    many = [f"sk-many-{secrets.token_hex(24)}" for _ in range(300)]
    try:
        started = time.perf_counter()
        for secret in many:
            register(secret)
        assert time.perf_counter() - started < 0.5  # was seconds: one compile per secret
        assert scrub(f"echo {many[7]} and %{ord(many[9][0]):02x}{many[9][1:]}") == (
            f"echo {MASK} and {MASK}"
        )
    finally:
        for secret in many:
            forget(secret)
    assert scrub(many[7]) == many[7]


def test_a_refreshed_token_replaces_the_old_one_in_the_mask() -> None:
    old, new = f"tok-{secrets.token_hex(16)}", f"tok-{secrets.token_hex(16)}"
    renew((), (old,))
    assert scrub(old) == MASK
    renew((old,), (new,))
    try:
        assert scrub(f"{old} {new}") == f"{old} {MASK}"
        assert old.lower() not in _secrets._lowered
    finally:
        forget(new)


def test_virtual_keys_are_masked_by_their_form_without_being_registered() -> None:
    key = "mfx-" + secrets.token_urlsafe(32)
    assert scrub(f"Bearer {key}.") == f"Bearer {MASK}."
    assert scrub("mfx-short and mfx-") == "mfx-short and mfx-"
