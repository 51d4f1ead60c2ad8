"""``python -m faketwilio``: run the fake Twilio in the foreground until Ctrl-C.

Used by the demo and by benchmarks that need a fake in its own process (driven over HTTP
through ``/_fake/``). ``--demo`` seeds a few recordings, Flex tokens and a Flex workspace, and
prints them.
"""

from __future__ import annotations

import argparse
import os
import sys

from faketwilio.demo import serve_forever
from faketwilio.server import FakeTwilio


def build_parser() -> argparse.ArgumentParser:
    """The command line: where to listen, which account to impersonate, whether to seed."""
    parser = argparse.ArgumentParser(
        prog="python -m faketwilio", description="Run a fake Twilio REST API on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8799, help="port (0: any free port)")
    parser.add_argument(
        "--account-sid",
        default=os.environ.get("TWILIO_ACCOUNT_SID", ""),
        help="main account SID (default: $TWILIO_ACCOUNT_SID)",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN", ""),
        help="main account auth token (default: $TWILIO_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--api-key-sid",
        default=os.environ.get("TWILIO_API_KEY_SID", ""),
        help="an API key (SK…) of the main account that authenticates too, with "
        "--api-key-secret (default: $TWILIO_API_KEY_SID)",
    )
    parser.add_argument(
        "--api-key-secret",
        default=os.environ.get("TWILIO_API_KEY_SECRET", ""),
        help="the API key's secret (default: $TWILIO_API_KEY_SECRET)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="seed demo recordings, Flex tokens and a Flex workspace"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, start the fake and serve until interrupted; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fake = FakeTwilio(
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            host=args.host,
            port=args.port,
            verbose=args.verbose,
        )
        if args.api_key_sid or args.api_key_secret:
            if not (args.api_key_sid and args.api_key_secret):
                raise ValueError("--api-key-sid and --api-key-secret go together")
            fake.add_api_key(args.api_key_sid, args.api_key_secret, main=True)
    except ValueError as exc:
        parser.error(str(exc))
    serve_forever(fake, demo=args.demo, out=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
