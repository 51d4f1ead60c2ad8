"""The Redis cache backend: Django's, with one client object per connection pool."""

from __future__ import annotations

from django.core.cache import cache, caches

from portal.cache import RedisCache


def test_the_portal_caches_in_redis_with_its_own_backend():
    assert isinstance(caches["default"], RedisCache)


def test_one_client_serves_every_call_and_values_round_trip():
    client = cache._cache.get_client()
    cache.set("portal-cache-test", {"roles": ["supervisor"]}, 30)
    assert cache.get("portal-cache-test") == {"roles": ["supervisor"]}
    assert cache._cache.get_client(write=True) is client
    assert cache.delete("portal-cache-test")
    assert cache.get("portal-cache-test") is None
