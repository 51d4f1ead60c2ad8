"""Recordings from Twilio as they arrive: webhook signatures, stored status callbacks, syncs
from Twilio's REST API, and reconciliation of what callbacks missed."""
