"""The cache is Django's own Redis backend, on the Redis the tests run against."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def test_the_portal_caches_in_redis_with_djangos_backend():
    assert isinstance(caches["default"], RedisCache)
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL


def test_values_round_trip_and_expire_on_delete():
    cache.set("portal-cache-test", {"roles": ["supervisor"]}, 30)
    assert cache.get("portal-cache-test") == {"roles": ["supervisor"]}
    assert cache.delete("portal-cache-test")
    assert cache.get("portal-cache-test") is None
