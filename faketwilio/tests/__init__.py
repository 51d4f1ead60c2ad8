"""Tests of the fake Twilio server (``faketwilio``)."""
