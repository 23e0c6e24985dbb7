"""Google Cloud credentials (for Vertex AI), through google-auth (the ``[gcp]`` extra).

:class:`GCPAuth` holds one deployment's credentials, first match wins:

1. ``vertex_credentials``: a service account's JSON key (or any credentials file google-auth
   reads: an authorized user, a workload identity federation config), as a dict, a JSON text
   or a file path;
2. Application Default Credentials (``google.auth.default()``): ``GOOGLE_APPLICATION_CREDENTIALS``,
   gcloud's ADC file, or the metadata server of GCE, Cloud Run and GKE (workload identity).

The access token is cached and refreshed :data:`REFRESH_MARGIN` seconds before it expires, as
judged by the model's clock; google-auth does the refresh (the service account's signed JWT
exchanged at its ``token_uri``, or the metadata server), under a lock for sync callers and in
a thread, single-flight per event loop, for async ones (never on the event loop). The project
is ``vertex_project``, else ``VERTEXAI_PROJECT``/``GOOGLE_CLOUD_PROJECT``, else the
credentials' own. The private key and every token are registered with :mod:`msgflux._secrets`;
:meth:`GCPAuth.source` names where credentials come from without showing them.
"""

from __future__ import annotations

import importlib
import os
import threading
from datetime import timedelta, timezone
from typing import Any

import orjson

from msgflux import _secrets
from msgflux._time import Clock, as_clock
from msgflux._transport.auth_http import google_auth_request
from msgflux.exceptions import AuthenticationError
from msgflux.models.providers.refresh import Refresher

__all__ = ["PROJECT_ENVS", "REFRESH_MARGIN", "SCOPES", "GCPAuth", "google_auth_module"]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN = 300.0
"""Seconds before a token's expiry when it is refreshed (google-auth's own margin is 225)."""
PROJECT_ENVS = ("VERTEXAI_PROJECT", "VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT")


def google_auth_module() -> Any:
    """google.auth, or an ImportError naming the extra that installs it. Imported by name:
    google-auth's type information is partial."""
    try:
        return importlib.import_module("google.auth")
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ImportError('Vertex AI needs google-auth: install "msgflux-gateway[gcp]"') from None


def _info(value: Any) -> dict[str, Any] | None:
    """A credentials dict from ``vertex_credentials`` given as a dict or a JSON text (None: a
    path)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            info = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError("vertex_credentials is not valid JSON") from None
        if not isinstance(info, dict):
            raise ValueError("vertex_credentials must be a JSON object")
        return info
    return None


_LOADERS = {
    "service_account": ("google.oauth2.service_account", "Credentials.from_service_account_info"),
    "authorized_user": ("google.oauth2.credentials", "Credentials.from_authorized_user_info"),
    "impersonated_service_account": (
        "google.auth.impersonated_credentials",
        "Credentials.from_impersonated_service_account_info",
    ),
    "external_account": ("google.auth.identity_pool", "Credentials.from_info"),
}
"""A credentials JSON's ``type`` -> google-auth's loader for exactly that type (the generic
loader is deprecated: it would load any type a JSON names)."""


_KINDS = {
    "google.auth.compute_engine.credentials": "the metadata server's account",
    "google.oauth2.credentials": "authorized_user",
    "google.auth.identity_pool": "workload identity federation",
    "google.auth.aws": "workload identity federation from AWS",
    "google.auth.impersonated_credentials": "impersonated_service_account",
}
"""google-auth's credentials modules -> what ``msgflux config check`` calls them."""


def _from_info(info: dict[str, Any]) -> tuple[Any, str | None]:
    kind = info.get("type")
    if kind == "external_account" and str(
        (info.get("credential_source") or {}).get("environment_id", "")
    ).startswith("aws"):
        module, loader = "google.auth.aws", "Credentials.from_info"
    elif kind in _LOADERS:
        module, loader = _LOADERS[kind]
    else:
        raise ValueError(
            f"vertex_credentials of type {kind!r}: expected one of {', '.join(_LOADERS)}"
        )
    found: Any = importlib.import_module(module)
    for name in loader.split("."):
        found = getattr(found, name)
    creds = found(info, scopes=list(SCOPES))
    project = info.get("project_id") or info.get("quota_project_id")
    return creds, project if isinstance(project, str) else None


class GCPAuth:
    """One deployment's Google Cloud credentials (see the module docstring)."""

    def __init__(
        self,
        *,
        credentials: Any = None,
        project: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not (
            credentials is None
            or isinstance(credentials, (str, dict))
            or hasattr(credentials, "refresh")
        ):
            raise TypeError(
                "vertex_credentials must be a service account JSON (a dict, a JSON text or "
                f"a file path) or google-auth credentials, got {type(credentials).__name__}"
            )
        if isinstance(credentials, str) and not credentials.strip():
            raise ValueError("vertex_credentials must not be empty")
        if project is not None and (not isinstance(project, str) or not project):
            raise TypeError(f"vertex_project must be a non-empty str, got {project!r}")
        self._given = credentials
        self._info = _info(credentials)
        if self._info is not None:
            for key in ("private_key", "private_key_id", "client_secret", "refresh_token"):
                value = self._info.get(key)
                _secrets.register(value if isinstance(value, str) else None)
            if isinstance(credentials, str):
                _secrets.register(credentials)
        self._project = project
        self._clock = as_clock(clock)
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._found_project: str | None = None
        self._refresher = Refresher(self._fresh, self._refresh)

    def __repr__(self) -> str:
        return f"GCPAuth({self.source()!r})"

    # -- where credentials come from --------------------------------------------------------
    def source(self) -> str:
        """Where this deployment's credentials come from, without showing them."""
        given = self._given
        if self._info is not None:
            kind = self._info.get("type") or "unknown"
            email = self._info.get("client_email")
            who = f" {email}" if isinstance(email, str) else ""
            return f"vertex_credentials ({kind}{who})"
        if isinstance(given, str):
            return f"vertex_credentials (the file {given})"
        if given is not None:
            return f"vertex_credentials ({type(given).__name__})"
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            return f"Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS={path})"
        return "Application Default Credentials (gcloud's file or the metadata server)"

    def describe(self, resolve: bool = True) -> str:
        """:meth:`source`, the credentials loaded (never shown) to check they can be, when
        ``resolve`` (this may call a metadata service)."""
        if not resolve:
            return self.source()
        try:
            credentials = self.credentials()
        except AuthenticationError as exc:
            return f"{self.source()}: {exc}"
        module = type(credentials).__module__
        kind = _KINDS.get(module, module.rsplit(".", 1)[-1])
        email = getattr(credentials, "service_account_email", None)
        return f"{self.source()}: loaded ({kind}{f' {email}' if isinstance(email, str) else ''})"

    def credentials(self) -> Any:
        """google-auth's credentials (loaded once, on first use; may block)."""
        found = self._credentials
        if found is not None:
            return found
        with self._lock:
            if self._credentials is None:
                self._credentials, self._found_project = self._load()
            return self._credentials

    def _load(self) -> tuple[Any, str | None]:
        auth = google_auth_module()
        exceptions = importlib.import_module("google.auth.exceptions")
        given = self._given
        try:
            if self._info is not None:
                creds, project = _from_info(self._info)
            elif isinstance(given, str):
                with open(given, "rb") as file:
                    info = _info(file.read().decode())
                if info is None:
                    raise ValueError(f"{given} does not hold a JSON object")
                for key in ("private_key", "private_key_id", "client_secret", "refresh_token"):
                    value = info.get(key)
                    _secrets.register(value if isinstance(value, str) else None)
                creds, project = _from_info(info)
            elif given is not None:
                creds, project = given, getattr(given, "project_id", None)
            else:
                creds, project = auth.default(scopes=SCOPES)
        except (exceptions.GoogleAuthError, OSError, ValueError, KeyError) as exc:
            raise AuthenticationError(
                f"Google Cloud credentials could not be loaded from {self.source()}: "
                f"{type(exc).__name__}: {exc}",
                provider="vertex",
            ) from None
        return creds, project if isinstance(project, str) and project else None

    def project(self) -> str | None:
        """``vertex_project``, else the environment's, else the credentials' (which loads
        them)."""
        if self._project is not None:
            return self._project
        for name in PROJECT_ENVS:
            if os.environ.get(name):
                return os.environ[name]
        self.credentials()
        return self._found_project

    # -- the token --------------------------------------------------------------------------
    def _fresh(self) -> bool:
        creds = self._credentials
        if creds is None or not creds.token:
            return False
        expiry = creds.expiry
        if expiry is None:
            return True
        if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
            expiry = expiry.replace(tzinfo=timezone.utc)
        return bool(self._clock.now() < expiry - timedelta(seconds=REFRESH_MARGIN))

    def _refresh(self) -> None:
        creds = self.credentials()
        before = creds.token
        exceptions = importlib.import_module("google.auth.exceptions")
        try:
            creds.refresh(google_auth_request())
        except (exceptions.GoogleAuthError, OSError) as exc:
            raise AuthenticationError(
                f"the Google Cloud token could not be refreshed ({self.source()}): "
                f"{type(exc).__name__}: {exc}",
                provider="vertex",
            ) from None
        _secrets.renew((before,), (creds.token,))

    def prepare(self) -> None:
        """Before a sync call: credentials loaded, token fresh (refreshed here if not)."""
        self._refresher.ensure()

    async def aprepare(self) -> None:
        """Before an async call: :meth:`prepare` in a thread when a refresh is due."""
        await self._refresher.aensure()

    def token(self) -> str:
        """The access token (call :meth:`prepare` / :meth:`aprepare` first)."""
        creds = self.credentials()
        token = creds.token
        if not isinstance(token, str) or not token:
            raise AuthenticationError("no Google Cloud access token", provider="vertex")
        return token
