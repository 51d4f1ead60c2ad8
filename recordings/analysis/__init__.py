"""Waveform and speech activity of recordings: what Flex Insights cannot draw for recordings kept
outside Twilio (the blue, green, red and orange bars of its Conversation Screen).

``decoding`` streams a recording's audio (decrypted in memory when encrypted), ``peaks`` and
``activity`` reduce it block by block, ``segments`` turns speech activity into talk, silence and
cross-talk intervals and their summary, ``store`` keeps the results as derived files keyed by the
media's SHA-256, and ``service`` ties it together for the task, the command, the API and the
admin player.
"""
