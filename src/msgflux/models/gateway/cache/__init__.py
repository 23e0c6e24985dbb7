"""The response cache: exact-match answers from memory or Redis, streamed back faithfully,
priced at zero, controlled per call.

::

    gateway = ModelGateway(models, cache=True)                       # this process's memory
    gateway = ModelGateway(models, cache="redis://localhost:6379/0")  # shared by every process
    gateway = ModelGateway(models, cache={"ttl": 600, "store": "memory", "max_bytes": 256 << 20})
    gateway = ModelGateway(models, cache=ResponseCache(RedisCache(url), cache_sampled=True))

    gateway(messages="hi", temperature=0).metadata.gateway["cache"]   # "miss", then "hit"
    gateway(messages="hi", temperature=0, cache=False)                 # "bypass"
    gateway.complete(body, cache_control="max-age=60")                 # HTTP's vocabulary

The parts, one concern each: :mod:`.key` (which requests are cached and under which key),
:mod:`.control` (the per-call options), :mod:`.entry` (an entry's bytes), :mod:`.capture`
(an answer or a stream made canonical), :mod:`.stores` and :mod:`.redis_store` (where entries
live) and :mod:`.wrapper` (the call wrapper tying them together).
"""

from msgflux.models.gateway.cache.control import OPTIONS, Controls, NotCached
from msgflux.models.gateway.cache.redis_store import CacheUnavailable, RedisCache
from msgflux.models.gateway.cache.stores import DEFAULT_MAX_BYTES, CacheStore, MemoryCache
from msgflux.models.gateway.cache.wrapper import (
    DEFAULT_MAX_ENTRY_BYTES,
    DEFAULT_TTL,
    ResponseCache,
    as_cache,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRY_BYTES",
    "DEFAULT_TTL",
    "OPTIONS",
    "CacheStore",
    "CacheUnavailable",
    "Controls",
    "MemoryCache",
    "NotCached",
    "RedisCache",
    "ResponseCache",
    "as_cache",
]
