"""Recordings with known speech for the analysis tests: a dual-channel 8 kHz WAV whose
customer (channel 1) speaks in the first half and agent (channel 2) in the second, with an
overlap and a silent stretch, and the intervals the analysis must find."""

from __future__ import annotations

import io
import wave

import numpy as np

RATE = 8000
DURATION = 12.0
CUSTOMER_TURNS = [(0.5, 5.5)]
AGENT_TURNS = [(5.0, 8.0), (10.0, 11.5)]
# What the analysis must find (each edge within 50 ms).
EXPECTED = [
    (0.0, 0.5, "silence"),
    (0.5, 5.0, "customer"),
    (5.0, 5.5, "cross_talk"),
    (5.5, 8.0, "agent"),
    (8.0, 10.0, "silence"),
    (10.0, 11.5, "agent"),
    (11.5, 12.0, "silence"),
]


def voice(seconds: float, *, f0: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like tone: a harmonic series on a wandering pitch, with syllables (a
    4 Hz loudness swell). A pure sine is not speech to a voice detector; this is."""
    t = np.arange(round(seconds * rate)) / rate
    pitch = f0 * (1 + 0.06 * np.sin(2 * np.pi * 2.7 * t + seed))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + seed) ** 2
    signal = harmonics * envelope
    return signal / np.abs(signal).max()


def conversation_samples(
    *, duration: float = DURATION, customer=CUSTOMER_TURNS, agent=AGENT_TURNS, rate: int = RATE
) -> np.ndarray:
    """``frames x 2`` int16 samples: the turns, over a faint line hiss (about -66 dBFS)."""
    frames = round(duration * rate)
    rng = np.random.default_rng(7)
    out = rng.normal(0, 16, size=(frames, 2))
    for channel, turns, f0 in ((0, customer, 210.0), (1, agent, 120.0)):
        for number, (start, end) in enumerate(turns):
            first, last = round(start * rate), round(end * rate)
            out[first:last, channel] += 14000 * voice((last - first) / rate, f0=f0, seed=number)
    return np.clip(out, -32768, 32767).astype("<i2")


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    """A 16-bit PCM WAV file of ``frames x channels`` samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(samples.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def conversation_wav() -> bytes:
    """The test conversation as Twilio would store it (dual-channel 8 kHz WAV)."""
    return wav_bytes(conversation_samples())
