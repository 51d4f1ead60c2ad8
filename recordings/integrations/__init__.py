"""The only modules that talk to the outside: Twilio's APIs (``twilio_api``) and storage,
S3 or the local folder (``storage``)."""
