"""Recordings: what Twilio reports, where the media lives, and how it reaches the player."""
