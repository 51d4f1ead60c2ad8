"""Django's Redis cache backend, keeping one ``redis.Redis`` client per connection pool.

Django's backend builds a new ``redis.Redis`` object for every cache call; with redis-py 8 that
object's constructor (its table of response callbacks) costs more CPU than the GET it is made
for, on every url_provider request. A client object is only a handle on its connection pool,
which is thread-safe and re-creates its connections after a fork, so one per pool is enough.
"""

from __future__ import annotations

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    """The same client, handing out one ``redis.Redis`` per connection pool."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        """The ``redis.Redis`` for the pool this call uses, made once."""
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with :class:`RedisCacheClient`."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
