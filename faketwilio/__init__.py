"""A fake Twilio HTTP server for the portal's tests, benchmarks and demo.

Point ``TWILIO_API_OVERRIDE`` at :attr:`FakeTwilio.url`; see :mod:`faketwilio.server` for what
it answers, how it is split into modules, and how to inject failures. Run it on its own with
``python -m faketwilio``.
"""

from faketwilio.demo import (
    DEMO_WORKSPACE_SID,
    demo_flex_sids,
    demo_sid,
    seed_demo,
    serve_forever,
)
from faketwilio.recording_formats import make_wav
from faketwilio.requestlog import RecordedRequest
from faketwilio.server import FakeTwilio
from faketwilio.state import new_sid

__all__ = [
    "DEMO_WORKSPACE_SID",
    "FakeTwilio",
    "RecordedRequest",
    "demo_flex_sids",
    "demo_sid",
    "make_wav",
    "new_sid",
    "seed_demo",
    "serve_forever",
]
