"""Benchmark settings: production settings plus a bare DRF view to measure the ceiling."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
