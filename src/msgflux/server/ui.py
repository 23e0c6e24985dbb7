"""``GET /ui``: the dashboard, three static files shipped in the package (``ui/``), no build step.

The page holds no data and needs no key to load: it asks for the admin key, keeps it in the
tab's ``sessionStorage`` only, and reads the admin JSON API (``/admin/dashboard``,
``/admin/keys``, ``/admin/audit``) on the same origin. A strict Content-Security-Policy lets it
run only its own script and style, talk only to its own origin and be framed by nobody; it
sends no request or answer content anywhere, and the API holds none.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from msgflux.server.asgi import Receive, Scope, Send, send_bytes
from msgflux.server.errors import HTTPError
from msgflux.server.runtime import Runtime

if TYPE_CHECKING:
    from msgflux.server.app import App

__all__ = ["CSP", "FILES", "PATHS", "serve"]

CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILES = {
    "index.html": b"text/html; charset=utf-8",
    "app.js": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
}
PATHS = {"/ui": "index.html", "/ui/": "index.html", **{f"/ui/{name}": name for name in FILES}}
"""Every path the dashboard is served on, and its file."""
_HEADERS = [
    (b"content-security-policy", CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]
_cache: dict[str, bytes] = {}


def _read(name: str) -> bytes:
    data = _cache.get(name)
    if data is None:
        folder = resources.files(__package__).joinpath("ui")
        data = _cache[name] = folder.joinpath(name).read_bytes()
    return data


async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    name = PATHS.get(scope["path"])
    if name is None:  # pragma: no cover - the handler table routes only PATHS here
        raise HTTPError(404, f"unknown path {scope['path']}", code="unknown_url")
    await send_bytes(send, 200, _read(name), FILES[name], _HEADERS)
