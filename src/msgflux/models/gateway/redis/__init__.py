"""The Redis state store: ``store.py`` (the store), ``scripts.py`` and ``lua/`` (the Lua it
runs), ``pipe.py`` (lean pipelined connections for the per-call traffic), ``url.py`` (URLs read
so that no part of a password reaches a message)."""

try:
    import hiredis  # noqa: F401  (the hot path parses replies with it)
    import redis  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        'The Redis state store needs the redis extra: pip install "msgflux-gateway[redis]"'
    ) from _exc

from msgflux.models.gateway.redis.store import RedisState

__all__ = ["RedisState"]
