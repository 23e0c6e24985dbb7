"""Every secret the process knows, and the one function that removes them from text.

An upstream may echo the caller's key back (in a header, an error message, a JSON body with
each character ``\\u``-escaped, a URL), and a Redis URL may carry a password. Whatever leaves
the library as a string (exception messages and attributes, ``stats()``, ``health()``, logs,
the CLI) goes through :func:`scrub` first.

Keys are registered when they are used (:func:`register`). The mask matches each character
of a key in any form an upstream could write it (literal, percent-encoded, JSON ``\\uXXXX``
or ``\\/``, hex in either case, mixed freely), so an echo is masked however it was encoded.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["MASK", "forget", "register", "renew", "scrub", "scrub_value"]

MASK = "***"
_MIN_LENGTH = 4
"""Shorter values are not treated as secrets: masking "ab" everywhere would garble text."""

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None
"""The mask of every known secret; built when a scrub first needs it after a change."""
_stale = False
_lowered: tuple[str, ...] = ()
"""The known secrets in lower case: what a plain-text look for their literal forms compares."""

_OWN_KEYS = re.compile(r"mfx-[A-Za-z0-9_-]{20,}")
"""The server's virtual keys (``mfx-`` and 256 random bits): masked by their form, so
issuing and rotating them never grows the mask (they never go upstream, so no encoded echo)."""


def _char(c: str) -> str:
    """A regex matching one character of a secret as an upstream may have written it:
    literally, percent-encoded, JSON ``\\u``-escaped (and ``\\/`` for a slash)."""
    code = ord(c)
    forms = [re.escape(c), f"%{code:02x}", f"\\\\u{code:04x}"]
    if c == "/":
        forms.append(r"\\/")
    return "(?:" + "|".join(forms) + ")"


def register(secret: str | None) -> None:
    """Remember ``secret`` so that :func:`scrub` masks it from now on (cheap: the mask is
    rebuilt when a scrub next needs it)."""
    global _stale, _lowered
    if not secret or len(secret) < _MIN_LENGTH or secret in _known:
        return
    with _lock:
        if secret in _known:
            return
        _known.add(secret)
        _lowered = tuple(known.lower() for known in _known)
        _stale = True


def forget(secret: str | None) -> None:
    """Stop masking ``secret`` (a token that expired and was replaced)."""
    global _stale, _lowered
    if not secret or secret not in _known:
        return
    with _lock:
        _known.discard(secret)
        _lowered = tuple(known.lower() for known in _known)
        _stale = True


def renew(old: tuple[str | None, ...], new: tuple[str | None, ...]) -> None:
    """Mask the ``new`` values of refreshed credentials and forget the ``old`` ones no longer
    among them: a process that refreshes tokens for months keeps a mask of today's."""
    for secret in new:
        register(secret)
    for secret in old:
        if secret not in new:
            forget(secret)


def _mask() -> re.Pattern[str] | None:
    global _pattern, _stale
    if _stale:
        with _lock:
            if _stale:
                # Longest first, so a secret that contains another is masked whole. Hex
                # digits and escapes match in either case (IGNORECASE); masking a case
                # variant of a key is fine.
                alternatives = [
                    "".join(_char(c) for c in known)
                    for known in sorted(_known, key=len, reverse=True)
                ]
                _pattern = re.compile("|".join(alternatives), re.IGNORECASE) if _known else None
                _stale = False
    return _pattern


def scrub(text: str) -> str:
    """``text`` with every known secret (in any registered form) replaced by ``***``.

    The mask's regex is costly (tens of microseconds on an access-log line), so text that can
    only hold a secret literally (ASCII with no ``%`` and no backslash: no encoded form is
    possible) is first searched for the secrets as plain lower-case substrings, and returned as
    it is when none is there: the same result, at a microsecond."""
    if not text:
        return text
    if "mfx-" in text:
        text = _OWN_KEYS.sub(MASK, text)
    if not _lowered:
        return text
    if "%" not in text and "\\" not in text and text.isascii():
        lowered = text.lower()
        if not any(secret in lowered for secret in _lowered):
            return text
    pattern = _mask()
    return text if pattern is None else pattern.sub(MASK, text)


def scrub_value(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like value (str, dict, list, tuple) with secrets scrubbed from every
    string in it, keys included. Other values are returned as they are."""
    if isinstance(value, str):
        return scrub(value)
    if _depth > 64:
        return value
    if isinstance(value, dict):
        return {
            (scrub(k) if isinstance(k, str) else k): scrub_value(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        items = [scrub_value(v, _depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (bytes, bytearray)):
        return scrub(bytes(value).decode("utf-8", "replace")).encode()
    return value
