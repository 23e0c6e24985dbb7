"""The HTTP client cloud SDKs fetch credentials with: google-auth's token refresh (a service
account's JWT grant, a metadata server, a workload identity exchange) over urllib3, the sync
client's library, with bounded waits.

These calls are the SDK's own (google-auth is the reference for Google's auth flows); this
module only hands it a transport, so the HTTP library stays in :mod:`msgflux._transport`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import urllib3

__all__ = ["AUTH_TIMEOUT", "google_auth_request"]

AUTH_TIMEOUT = urllib3.Timeout(connect=10.0, read=30.0)
"""Bounds of each connection and read of a credential fetch."""

_lock = threading.Lock()
_request: Any = None


def google_auth_request() -> Any:
    """A ``google.auth.transport.Request`` over one shared urllib3 pool manager."""
    global _request
    if _request is None:
        with _lock:
            if _request is None:
                module = importlib.import_module("google.auth.transport.urllib3")
                http = urllib3.PoolManager(timeout=AUTH_TIMEOUT, retries=urllib3.Retry(1))
                _request = module.Request(http)
    return _request
