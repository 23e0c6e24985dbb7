"""AWS credentials and request signing (for Bedrock), through botocore (the ``[aws]`` extra).

:class:`AWSAuth` says how one deployment authenticates, first match wins:

1. ``api_key=``: a Bedrock API key, sent as ``Authorization: Bearer``;
2. ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``): static keys;
   ``aws_profile``: a profile of the shared config and credentials files; ``aws_credentials``:
   any botocore credentials object (a custom refreshable provider);
3. ``AWS_BEARER_TOKEN_BEDROCK``: a Bedrock API key from the environment (read at call time);
4. botocore's own chain: the environment, the shared files' default profile, SSO, web
   identity, container (ECS/EKS) and instance (EC2) roles, resolved on the first call.

Requests are signed with SigV4 by botocore's signer (no crypto of ours): the signed headers
are ``host``, ``content-type``, ``accept`` and the ``x-amz*`` ones, so the rest may change on
the way without breaking the signature. Credentials that expire (roles, SSO, a refreshable
provider) are botocore's refreshable credentials: they are refreshed before they expire, in a
thread for async callers (:class:`~msgflux.models.providers.refresh.Refresher`), never on the
event loop. The secret key, the session token and the API key are registered with
:mod:`msgflux._secrets`; :meth:`AWSAuth.source` names where credentials come from without
showing them.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from msgflux import _secrets
from msgflux._transport import Endpoint
from msgflux.exceptions import AuthenticationError
from msgflux.models.providers.refresh import Refresher

__all__ = ["BEARER_ENV", "AWSAuth", "botocore_module"]

BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"
_SIGNED = ("content-type", "accept")
"""Headers signed besides ``host`` and the ``x-amz*`` ones."""


def botocore_module() -> Any:
    """botocore (its submodules this module uses imported), or an ImportError naming the extra
    that installs it. Imported by name: botocore ships no type information."""
    try:
        for name in ("auth", "awsrequest", "credentials", "exceptions", "session"):
            importlib.import_module(f"botocore.{name}")
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ImportError('AWS Bedrock needs botocore: install "msgflux-gateway[aws]"') from None
    _scrub_botocore_logs()
    return importlib.import_module("botocore")


class _Scrubbed(logging.Filter):
    """botocore's signer logs the canonical request (the session token in it) at debug level:
    every secret the process knows is masked from those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = _secrets.scrub(record.msg)
        return True


_filtered = False


def _scrub_botocore_logs() -> None:
    global _filtered
    if not _filtered:
        _filtered = True
        logging.getLogger("botocore").addFilter(_Scrubbed())
        logging.getLogger("botocore.auth").addFilter(_Scrubbed())


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {type(value).__name__}")
    return value


class AWSAuth:
    """One deployment's AWS authentication (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        credentials: Any = None,
        service: str = "bedrock",
    ) -> None:
        self.api_key = _text("api_key", api_key)
        self.access_key_id = _text("aws_access_key_id", access_key_id)
        self._secret_access_key = _text("aws_secret_access_key", secret_access_key)
        self._session_token = _text("aws_session_token", session_token)
        self.profile = _text("aws_profile", profile)
        self.service = service
        if (self.access_key_id is None) != (self._secret_access_key is None):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together: pass both")
        if self._session_token is not None and self.access_key_id is None:
            raise ValueError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
        given = [
            n
            for n, v in (
                ("aws_access_key_id", self.access_key_id),
                ("aws_profile", self.profile),
                ("aws_credentials", credentials),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(f"pass one of {', '.join(given)}, not several")
        if credentials is not None and not hasattr(credentials, "get_frozen_credentials"):
            raise TypeError(
                "aws_credentials must be a botocore credentials object "
                f"(with get_frozen_credentials()), got {type(credentials).__name__}"
            )
        for secret in (self.api_key, self._secret_access_key, self._session_token):
            _secrets.register(secret)
        self._given = credentials
        self._credentials: Any = credentials
        self._lock = threading.Lock()
        self._session: Any = None
        self._latest: Any = None
        """The credentials the last refresh froze (what requests are signed with until the
        next one: botocore would refresh again for credentials issued short-lived)."""
        self._region = _text("aws_region_name", region)
        self._region_found = self._region is not None
        self._refresher = Refresher(self._fresh, self._refresh)

    def __repr__(self) -> str:
        return f"AWSAuth({self.source()!r}, region={self._region!r})"

    @property
    def region(self) -> str | None:
        """``aws_region_name``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the
        profile's (read from the shared config once, when first asked)."""
        if not self._region_found:
            self._region = self._default_region()
            self._region_found = True
        return self._region

    # -- where credentials come from --------------------------------------------------------
    def _botocore_session(self) -> Any:
        if self._session is None:
            botocore = botocore_module()
            self._session = botocore.session.Session(profile=self.profile)
        return self._session

    def _default_region(self) -> str | None:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(name):
                return os.environ[name]
        botocore = botocore_module()
        try:
            region = self._botocore_session().get_config_variable("region")
        except botocore.exceptions.ProfileNotFound:
            raise ValueError(
                f"aws_profile {self.profile!r} is not in the shared config or credentials files"
            ) from None
        return region if isinstance(region, str) and region else None

    def bearer(self) -> str | None:
        """The Bedrock API key in force now (None: SigV4)."""
        if self.api_key is not None:
            return self.api_key
        if self.access_key_id or self.profile or self._given is not None:
            return None
        token = os.environ.get(BEARER_ENV) or None
        _secrets.register(token)
        return token

    def source(self) -> str:
        """Where this deployment's credentials come from, without showing them."""
        if self.api_key is not None:
            return "api_key (a Bedrock API key, sent as Bearer)"
        if self.access_key_id is not None:
            token = " and aws_session_token" if self._session_token else ""
            return f"aws_access_key_id/aws_secret_access_key{token} (static keys)"
        if self.profile is not None:
            return f"aws_profile {self.profile!r} (shared config and credentials files)"
        if self._given is not None:
            method = getattr(self._given, "method", None)
            return (
                f"aws_credentials (a botocore credentials object{f': {method}' if method else ''})"
            )
        if os.environ.get(BEARER_ENV):
            return f"{BEARER_ENV} (a Bedrock API key, sent as Bearer)"
        return (
            "botocore's default chain (environment, shared files, SSO, container or instance role)"
        )

    def describe(self, resolve: bool = True) -> str:
        """:meth:`source`, the chain resolved to the provider it found when ``resolve`` (this
        may call a metadata service), never the credentials themselves."""
        if not resolve:
            return self.source()
        if self.bearer() is not None or self.access_key_id is not None or self._given is not None:
            return self.source()
        try:
            method = getattr(self.credentials(), "method", None) or "unknown"
        except AuthenticationError as exc:
            return f"{self.source()}: {exc}"
        if self.profile is not None:
            return f"{self.source()}: {method}"
        return f"botocore's default chain: {method}"

    def credentials(self) -> Any:
        """The botocore credentials (resolved once, on first use; blocking)."""
        found = self._credentials
        if found is not None:
            return found
        with self._lock:
            if self._credentials is None:
                if self.access_key_id is not None:
                    botocore = botocore_module()
                    self._credentials = botocore.credentials.Credentials(
                        self.access_key_id,
                        self._secret_access_key,
                        self._session_token,
                        method="explicit",
                    )
                else:
                    self._credentials = self._resolved()
                if self._credentials is None:
                    raise AuthenticationError(
                        "no AWS credentials: pass aws_access_key_id/aws_secret_access_key, "
                        f"aws_profile or api_key=, set {BEARER_ENV}, or configure botocore's "
                        "chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, a role)",
                        provider="bedrock",
                    )
            return self._credentials

    def _resolved(self) -> Any:
        botocore = botocore_module()
        try:
            return self._botocore_session().get_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failed("resolved", exc) from None

    def _failed(self, what: str, exc: BaseException) -> AuthenticationError:
        return AuthenticationError(
            f"AWS credentials could not be {what}: {type(exc).__name__}: {exc}",
            provider="bedrock",
        )

    # -- keeping them fresh -----------------------------------------------------------------
    def _fresh(self) -> bool:
        found = self._credentials
        if found is None or self._latest is None:  # resolved elsewhere: never frozen here
            return False
        needed = getattr(found, "refresh_needed", None)
        return needed is None or not needed()

    def _refresh(self) -> None:
        self._latest = self._frozen()

    def _frozen(self) -> Any:
        """The credentials of this request (botocore refreshes them first when needed)."""
        botocore = botocore_module()
        try:
            frozen = self.credentials().get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failed("refreshed", exc) from None
        before = self._latest
        _secrets.renew(
            () if before is None else (before.secret_key, before.token),
            (frozen.secret_key, frozen.token),
        )
        return frozen

    def prepare(self) -> None:
        """Before a sync call: credentials resolved and fresh (nothing for a bearer key)."""
        if self.bearer() is None:
            self._refresher.ensure()

    async def aprepare(self) -> None:
        """Before an async call: :meth:`prepare` without blocking the event loop."""
        if self.bearer() is None:
            await self._refresher.aensure()

    # -- signing ----------------------------------------------------------------------------
    def sign(self, ep: Endpoint, body: bytes) -> Mapping[str, str]:
        """The SigV4 headers of one request (an :data:`~msgflux._transport.Sign` hook)."""
        botocore = botocore_module()
        frozen = self._latest or self._frozen()
        signed = {
            k: v
            for k, v in ep.headers.items()
            if k.lower() in _SIGNED or k.lower().startswith("x-amz")
        }
        request = botocore.awsrequest.AWSRequest(
            method="POST", url=ep.url, data=body, headers=signed
        )
        botocore.auth.SigV4Auth(frozen, self.service, self.region).add_auth(request)
        out = {"X-Amz-Date": request.headers["X-Amz-Date"]}
        out["Authorization"] = request.headers["Authorization"]
        if frozen.token:
            out["X-Amz-Security-Token"] = frozen.token
        return out
