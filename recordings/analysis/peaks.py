"""Min/max peaks per channel in the BBC audiowaveform v2 JSON format.

**Why audiowaveform's format.** peaks.js, waveform-data.js and wavesurfer.js all read it, so a
Flex plugin or any other player draws the portal's peaks without a converter:
``{"version": 2, "channels": N, "sample_rate": R, "samples_per_pixel": S, "bits": 8,
"length": L, "data": [...]}`` where ``data`` holds, for each of the ``L`` pixels, the minimum and
maximum of each channel in turn (``ch0 min, ch0 max, ch1 min, ch1 max, ...``).

**Why 100 pixels per second and 8 bits.** A tenth of a second is finer than anyone clicks on a
call's timeline, and 8-bit values (the 16-bit samples shifted by 8, as audiowaveform's ``-b 8``
does) draw the same on any screen at half the size: an hour of dual-channel audio is 1.44 million
values. They are kept as int8 arrays while computing: the only thing that grows with the
recording, at 1/40 of the audio's own size.
"""

from __future__ import annotations

import numpy as np

PIXELS_PER_SECOND = 100
BITS = 8


class PeakAccumulator:
    """Reduces blocks of int16 samples (``frames x channels``) to min/max per pixel, carrying
    the samples of an unfinished pixel over to the next block."""

    def __init__(self, *, sample_rate: int, channels: int) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_per_pixel = max(sample_rate // PIXELS_PER_SECOND, 1)
        self._carry = np.empty((0, channels), dtype=np.int16)
        self._parts: list[np.ndarray] = []  # each: pixels x channels x 2 (min, max), int8

    def add(self, block: np.ndarray) -> None:
        """Take the next block of samples."""
        samples = np.concatenate([self._carry, block]) if len(self._carry) else block
        whole = len(samples) // self.samples_per_pixel * self.samples_per_pixel
        self._reduce(samples[:whole])
        self._carry = samples[whole:].copy()

    def _reduce(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        pixels = samples.reshape(-1, self.samples_per_pixel, self.channels)
        # Shift by 8 bits, rounding towards minus infinity as audiowaveform does.
        low = (pixels.min(axis=1) >> 8).astype(np.int8)
        high = (pixels.max(axis=1) >> 8).astype(np.int8)
        self._parts.append(np.stack([low, high], axis=2))

    def result(self) -> dict:
        """The audiowaveform v2 document (the last, shorter pixel included)."""
        self._reduce_last()
        data = (
            np.concatenate(self._parts)
            if self._parts
            else np.empty((0, self.channels, 2), dtype=np.int8)
        )
        return {
            "version": 2,
            "channels": self.channels,
            "sample_rate": self.sample_rate,
            "samples_per_pixel": self.samples_per_pixel,
            "bits": BITS,
            "length": int(data.shape[0]),
            "data": data.reshape(-1).tolist(),
        }

    def _reduce_last(self) -> None:
        if len(self._carry):
            low = (self._carry.min(axis=0) >> 8).astype(np.int8)
            high = (self._carry.max(axis=0) >> 8).astype(np.int8)
            self._parts.append(np.stack([low, high], axis=1)[np.newaxis])
            self._carry = self._carry[:0]


def peaks_reduce(peaks: dict, *, max_length: int) -> dict:
    """The same waveform in at most ``max_length`` pixels (min of the minima and max of the
    maxima of neighbouring pixels, as audiowaveform's zoom does): what a page a few thousand
    pixels wide needs of an hour's 360,000."""
    length, channels = peaks["length"], peaks["channels"]
    factor = -(-length // max_length) if length > max_length else 1
    if factor == 1:
        return peaks
    data = np.asarray(peaks["data"], dtype=np.int16).reshape(length, channels, 2)
    padded = -(-length // factor) * factor
    if padded != length:
        # Repeat the last pixel: it changes neither a minimum nor a maximum.
        data = np.concatenate([data, np.repeat(data[-1:], padded - length, axis=0)])
    grouped = data.reshape(-1, factor, channels, 2)
    merged = np.stack([grouped[..., 0].min(axis=1), grouped[..., 1].max(axis=1)], axis=2)
    return {
        **peaks,
        "samples_per_pixel": peaks["samples_per_pixel"] * factor,
        "length": int(merged.shape[0]),
        "data": merged.reshape(-1).tolist(),
    }
