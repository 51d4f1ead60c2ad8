"""The facade (:mod:`faketwilio.server`): the constructor checks its credentials, and the
package's documented imports work without loading Django or any of the project's apps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faketwilio import FakeTwilio, new_sid
from faketwilio.tests.helpers import ACCOUNT_SID


def test_constructor_validates_credentials() -> None:
    """A malformed account SID or an empty auth token is refused at once."""
    with pytest.raises(ValueError, match="account_sid"):
        FakeTwilio(account_sid="ACshort", auth_token="x")
    with pytest.raises(ValueError, match="auth_token"):
        FakeTwilio(account_sid=ACCOUNT_SID, auth_token="")
    assert new_sid("RE").startswith("RE")
    assert len(new_sid("RE")) == 34


def test_public_imports_load_nothing_of_the_project() -> None:
    """``faketwilio`` and ``faketwilio.server`` export the same objects; a fresh interpreter
    that imports them has loaded neither Django nor ``recordings``, ``audit`` or ``portal``."""
    code = "\n".join(
        [
            "import sys",
            "from faketwilio import (",
            "    FakeTwilio, RecordedRequest, make_wav, new_sid, seed_demo, serve_forever,",
            ")",
            "import faketwilio.server as server",
            "assert server.FakeTwilio is FakeTwilio and server.serve_forever is serve_forever",
            "assert server.RecordedRequest is RecordedRequest and server.seed_demo is seed_demo",
            "assert server.make_wav is make_wav and server.new_sid is new_sid",
            "loaded = {name.split('.')[0] for name in sys.modules}",
            "print(sorted(loaded & {'django', 'recordings', 'audit', 'portal'}))",
        ]
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
