"""Custody of what lets the portal read recordings: private keys, Twilio's storage and
encryption settings, subaccount credentials, and IAM policies for the buckets."""
