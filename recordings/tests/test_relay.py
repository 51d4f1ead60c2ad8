"""The relay that hands stored callbacks to the broker in batches (real Redis broker)."""

from __future__ import annotations

import base64
import json
import time

import redis
from django.conf import settings

from recordings.tasks import RELAY_BATCH_SIZE, EventRelay


def queued_batches() -> list[list[int]]:
    batches = []
    for raw in redis.Redis.from_url(settings.REDIS_URL).lrange("celery", 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        batches.append(args[0])
    return batches


def test_a_burst_leaves_in_few_messages_with_every_id():
    relay = EventRelay(window=60)  # the background thread will not fire during the test
    ids = list(range(1, 251))
    for event_id in ids:
        relay.submit(event_id)
    assert relay.flush() == 250
    batches = queued_batches()
    assert len(batches) == 3
    assert all(len(batch) <= RELAY_BATCH_SIZE for batch in batches)
    assert sorted(event_id for batch in batches for event_id in batch) == ids


def test_a_single_id_leaves_soon_without_being_flushed():
    relay = EventRelay(window=0.01)
    relay.submit(42)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not queued_batches():
        time.sleep(0.01)
    assert queued_batches() == [[42]]
