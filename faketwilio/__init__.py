"""A fake Twilio HTTP server for the portal's tests, benchmarks and demo.

Point ``TWILIO_API_OVERRIDE`` at :attr:`FakeTwilio.url`; see :mod:`faketwilio.server` for what
it answers and how to inject failures. Run it on its own with ``python -m faketwilio``.
"""

from faketwilio.server import (
    FakeTwilio,
    RecordedRequest,
    make_wav,
    new_sid,
    seed_demo,
    serve_forever,
)

__all__ = ["FakeTwilio", "RecordedRequest", "make_wav", "new_sid", "seed_demo", "serve_forever"]
