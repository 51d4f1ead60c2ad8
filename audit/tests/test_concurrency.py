"""Concurrent appends form one unbroken chain."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.chain import chain_verify
from audit.models import AccessLog
from audit.services import access_log_append

THREADS = 4
APPENDS_EACH = 25


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_unbroken_chain():
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait()
            for index in range(APPENDS_EACH):
                access_log_append(
                    action="url_provider",
                    outcome="allowed",
                    identity=f"thread_{number}",
                    request_id=f"{number}-{index}",
                )
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    sequences = list(AccessLog.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, THREADS * APPENDS_EACH + 1))
    result = chain_verify()
    assert (result.ok, result.count) == (True, THREADS * APPENDS_EACH)
    per_thread = {
        number: AccessLog.objects.filter(identity=f"thread_{number}").count()
        for number in range(THREADS)
    }
    assert per_thread == dict.fromkeys(range(THREADS), APPENDS_EACH)
