"""``msgflux keys create|list|rotate|revoke|usage``: virtual keys from the command line.

Two ways in, one set of operations and answers:

* ``--url http://host:4000``: the running server's admin API (:mod:`.admin_keys`), with the
  admin key read from ``MSGFLUX_ADMIN_KEY`` (never a command-line argument, which other users
  of the machine can read); works whatever the server stores keys in;
* ``--config FILE``: the store itself, the config's ``server.state`` Redis (a server without it
  keeps its keys in its own memory, which only its API reaches), through the same
  :class:`~.key_admin.KeyAdmin` the server uses; the audit names the actor ``cli``.

Both return the API's JSON shapes; :func:`render_keys` prints them as a table.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from msgflux._secrets import scrub

__all__ = [
    "ADMIN_KEY_ENV",
    "HTTPKeys",
    "Keys",
    "KeysError",
    "StoreKeys",
    "render_keys",
]

ADMIN_KEY_ENV = "MSGFLUX_ADMIN_KEY"
_T = TypeVar("_T")


class KeysError(Exception):
    """The operation failed; the message says why (the server's own words when it answered)."""


class Keys(Protocol):
    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def list(self) -> dict[str, Any]: ...

    def rotate(self, name: str, grace: float | None) -> dict[str, Any]: ...

    def revoke(self, name: str) -> dict[str, Any]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the admin key to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class HTTPKeys:
    """The admin API of the server at ``url``."""

    def __init__(self, url: str, admin_key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.admin_key = admin_key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.admin_key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise KeysError(f"{exc.code}: {scrub(str(message))}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise KeysError(f"cannot reach {self.url}: {scrub(str(exc))}") from None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", "/admin/keys", body)
        return out

    def list(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/admin/keys")
        return out

    def rotate(self, name: str, grace: float | None) -> dict[str, Any]:
        body = {} if grace is None else {"grace_seconds": grace}
        out: dict[str, Any] = self._call("POST", f"/admin/keys/{_quote(name)}/rotate", body)
        return out

    def revoke(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", f"/admin/keys/{_quote(name)}/revoke", {})
        return out


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class StoreKeys:
    """The key store of a config's ``server.state`` (see the module docstring)."""

    ACTOR = "cli"

    def __init__(self, config: Any) -> None:
        state = config.server.state
        if state is None:
            raise KeysError(
                "the config has no server.state: a server without it keeps its virtual keys in "
                "its own memory, which only its API reaches. Use --url (and MSGFLUX_ADMIN_KEY)."
            )
        self.config = config

    def _run(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        from msgflux.server.directory import Directory
        from msgflux.server.key_admin import KeyAdmin
        from msgflux.server.keystore import RedisKeyStore
        from msgflux.server.vkeys import KeyChangeError

        async def main() -> _T:
            store = RedisKeyStore(self.config.server.state)
            try:
                return await work(KeyAdmin(Directory(store)))
            finally:
                await store.aclose()

        try:
            return asyncio.run(main())
        except KeyChangeError as exc:
            raise KeysError(f"{exc.status}: {exc}") from None
        except Exception as exc:
            raise KeysError(f"the key store cannot be used: {scrub(str(exc))}") from None

    @property
    def _config_keys(self) -> list[str]:
        return [k.name for k in self.config.server.keys]

    def _issuing(self) -> None:
        """Refuse to issue a secret a server of this config would not check (as its API)."""
        if not self.config.server.keys:
            raise KeysError(
                "virtual keys need client authentication: add at least one (admin) key to "
                "server.keys, so the server checks keys at all"
            )

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._issuing()

        async def work(admin: Any) -> dict[str, Any]:
            record, secret = await admin.create(
                self.ACTOR, body, list(self.config.gateways), self._config_keys
            )
            return {"key": record.public(admin.clock.time()), "secret": secret}

        return self._run(work)

    def list(self) -> dict[str, Any]:
        async def work(admin: Any) -> dict[str, Any]:
            now = admin.clock.time()
            return {"keys": [r.public(now) for r in await admin.records()]}

        return self._run(work)

    def rotate(self, name: str, grace: float | None) -> dict[str, Any]:
        self._issuing()
        body = {} if grace is None else {"grace_seconds": grace}

        async def work(admin: Any) -> dict[str, Any]:
            record, secret, grace_s = await admin.rotate(self.ACTOR, name, body, self._config_keys)
            now = admin.clock.time()
            return {
                "key": record.public(now),
                "secret": secret,
                "previous_valid_until": now + grace_s,
            }

        return self._run(work)

    def revoke(self, name: str) -> dict[str, Any]:
        async def work(admin: Any) -> dict[str, Any]:
            record = await admin.revoke(self.ACTOR, name, self._config_keys)
            out: dict[str, Any] = record.public(admin.clock.time())
            return out

        return self._run(work)


def _limit(used: Any, limit: Any) -> str:
    if limit is None:
        return "-"
    return f"{used if used is not None else '?'}/{limit}"


def render_keys(keys: list[dict[str, Any]]) -> str:
    """A plain-text table of keys as the API lists them (no secret is ever in them)."""
    header = ("key", "source", "status", "models", "rpm", "tpm", "in flight", "budget", "expires")
    lines = [header]
    for k in keys:
        usage = k.get("usage") or {}
        budget = k.get("budget")
        spent = usage.get("spent_usd")
        lines.append(
            (
                k["name"],
                k.get("source", "api"),
                k.get("status", "-"),
                k["models"] if isinstance(k["models"], str) else ",".join(k["models"]),
                _limit(usage.get("requests_last_minute"), k.get("rpm")),
                _limit(usage.get("tokens_last_minute"), k.get("tpm")),
                _limit(usage.get("in_flight"), k.get("max_concurrency")),
                "-"
                if not budget
                else f"${spent or 0:,.4f}/${budget['usd']:,.2f} per {budget['period']}",
                k.get("expires_at_utc") or "-",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )
