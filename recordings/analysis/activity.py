"""Who speaks when: voice activity per channel, frame by frame.

**Why webrtcvad (the ``webrtcvad-wheels`` build).** It is WebRTC's own voice activity detector,
made for telephone speech at 8 kHz, Twilio's recording rate; it needs no model download, runs in
C at hundreds of times real time, and ``webrtcvad-wheels`` is the maintained fork with wheels
for current Pythons (the original ``webrtcvad`` has none past 3.7 and needs a compiler). Neural
detectors (Silero, pyannote) are more accurate on noisy audio but bring torch and a model file
into the worker for a picture that needs tenth-of-a-second resolution.

**Why an energy floor as well.** The detector tells speech from noise by spectrum, not level: it
adapts to steady noise, but keeps a few frames of "speech" after speech ends (its hang-over) and
calls quiet broadband hiss speech. A frame counts as speech only when the detector says so *and*
it is louder than ``ENERGY_FLOOR_DBFS``, which cuts the hang-over at the real end of a turn.

Frames are 30 ms (the longest webrtcvad takes); mode 2 ("aggressive") suits telephone lines.
"""

from __future__ import annotations

import numpy as np
import webrtcvad

FRAME_MS = 30
VAD_MODE = 2
ENERGY_FLOOR_DBFS = -45.0
SUPPORTED_RATES = (8000, 16000, 32000, 48000)  # what webrtcvad accepts
_FULL_SCALE = 32768.0


class ActivityTracker:
    """Feeds blocks of int16 samples (``frames x channels``) to one detector per channel and
    keeps one speech flag per channel per frame (a byte per frame: an hour is 120,000)."""

    def __init__(self, *, sample_rate: int, channels: int) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"voice activity needs one of {SUPPORTED_RATES} Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self._detectors = [webrtcvad.Vad(VAD_MODE) for _ in range(channels)]
        self._carry = np.empty((0, channels), dtype=np.int16)
        self._flags = [bytearray() for _ in range(channels)]
        floor = _FULL_SCALE * 10 ** (ENERGY_FLOOR_DBFS / 20)
        self._floor_energy = floor * floor * self.frame_samples  # sum of squares at the floor

    def add(self, block: np.ndarray) -> None:
        """Take the next block of samples."""
        samples = np.concatenate([self._carry, block]) if len(self._carry) else block
        whole = len(samples) // self.frame_samples * self.frame_samples
        self._frames(samples[:whole])
        self._carry = samples[whole:].copy()

    def _frames(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        frames = samples.reshape(-1, self.frame_samples, self.channels)
        energy = np.einsum("fsc,fsc->fc", frames, frames, dtype=np.float64)
        loud = energy > self._floor_energy
        for channel in range(self.channels):
            detector = self._detectors[channel]
            # One contiguous little-endian buffer per channel, sliced per frame.
            pcm = np.ascontiguousarray(frames[:, :, channel], dtype="<i2").tobytes()
            size = self.frame_samples * 2
            flags = self._flags[channel]
            for index in range(frames.shape[0]):
                if loud[index, channel]:
                    chunk = pcm[index * size : (index + 1) * size]
                    flags.append(1 if detector.is_speech(chunk, self.sample_rate) else 0)
                else:
                    flags.append(0)

    def result(self) -> list[np.ndarray]:
        """One bool array per channel, a flag per ``FRAME_MS`` frame (a shorter last frame is
        left out: it is under 30 ms)."""
        return [np.frombuffer(bytes(flags), dtype=np.uint8).astype(bool) for flags in self._flags]
