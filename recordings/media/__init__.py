"""A recording's bytes as the player receives them: shared types and Range parsing, plain and
encrypted readers, the pure cryptography of Twilio's formats, and the opener that picks one."""
